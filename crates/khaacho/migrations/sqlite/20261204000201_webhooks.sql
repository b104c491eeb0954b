-- Signed outbound webhooks for vendor systems (issue 11): subscriptions (a vendor's own, or
-- staff-wide when vendor_id is NULL) and their deliveries, written in the transaction of the
-- change by the order.changed consumer and sent by a job (retries 1/5/15/30/60 min, then dead).
CREATE TABLE webhook_subscriptions (
    id            BLOB PRIMARY KEY,
    vendor_id     BLOB REFERENCES vendors (id),  -- NULL: staff-wide (every order)
    url           text NOT NULL,
    events        TEXT NOT NULL,                -- JSON array of event types, or ["*"]
    secret        text NOT NULL,                 -- the signing secret (shown once at creation)
    active        INTEGER NOT NULL DEFAULT 1,
    created_by    text NOT NULL,
    created_at_ms bigint NOT NULL,
    deleted_at_ms bigint                         -- DELETE: kept for its delivery log
);
CREATE INDEX webhook_subscriptions_vendor_idx ON webhook_subscriptions (vendor_id);

CREATE TABLE webhook_deliveries (
    id                 BLOB PRIMARY KEY,
    subscription_id    BLOB NOT NULL REFERENCES webhook_subscriptions (id),
    event_id           BLOB NOT NULL,            -- Khaacho-Event-Id (the order event)
    event_type         text NOT NULL,
    payload            text NOT NULL,            -- the exact JSON body that is signed
    status             text NOT NULL DEFAULT 'queued', -- queued | sending | delivered | dead
    attempts           integer NOT NULL DEFAULT 0,
    next_attempt_at_ms bigint NOT NULL,
    last_attempt_at_ms bigint,
    last_status_code   integer,
    last_latency_ms    bigint,
    last_error         text,
    created_at_ms      bigint NOT NULL,
    updated_at_ms      bigint NOT NULL,
    CONSTRAINT webhook_deliveries_once UNIQUE (subscription_id, event_id),
    CONSTRAINT webhook_deliveries_status_check CHECK (status IN ('queued', 'sending', 'delivered', 'dead'))
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (status, next_attempt_at_ms);
CREATE INDEX webhook_deliveries_subscription_idx ON webhook_deliveries (subscription_id, id);

-- The delivery log: one row per attempt.
CREATE TABLE webhook_attempts (
    id          BLOB PRIMARY KEY,
    delivery_id BLOB NOT NULL REFERENCES webhook_deliveries (id),
    attempt     integer NOT NULL,
    at_ms       bigint NOT NULL,
    status_code integer,                         -- the receiver's answer, if any
    latency_ms  bigint NOT NULL,
    error       text                             -- NULL: delivered (2xx)
);
CREATE INDEX webhook_attempts_delivery_idx ON webhook_attempts (delivery_id, attempt);
