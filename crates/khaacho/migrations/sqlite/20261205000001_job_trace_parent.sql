-- The W3C traceparent of the span that enqueued a job (set only while traces are exported),
-- so the worker's span continues the request's trace.
ALTER TABLE jobs ADD COLUMN trace_parent TEXT;
