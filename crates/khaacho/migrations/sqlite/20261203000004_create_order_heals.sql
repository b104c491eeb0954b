-- Stuck-order healing (every 5 minutes): one row per order and the state it was found stuck
-- in. The first time, the step is retried; found stuck again in the same state, operators get
-- an alert (once). A state the order leaves and re-enters later starts afresh only when the
-- row is gone: rows are removed when the order moves on (see orders::pipeline::heal).
CREATE TABLE order_heals (
    order_id   BLOB NOT NULL,
    status     text NOT NULL,
    attempts   integer NOT NULL,            -- 1 retried, 2 alerted
    last_at_ms bigint NOT NULL,
    PRIMARY KEY (order_id, status)
);
