-- WhatsApp/SMS conversations (DESIGN §13): raw inbound messages (stored before anything is
-- done with them), one conversation row per phone (pending draft, awaited clarification,
-- with a TTL), and the outbox every reply and notification is written to.

CREATE TABLE inbound_messages (
    id                  BLOB PRIMARY KEY,
    provider            text NOT NULL,                -- twilio
    provider_message_id text NOT NULL,                -- Twilio's MessageSid: a retried webhook is a no-op
    channel             text NOT NULL,                -- whatsapp | sms
    from_phone          text NOT NULL,                -- the sender, normalised to E.164 when possible
    to_address          text,
    body                text NOT NULL,
    num_media           integer NOT NULL DEFAULT 0,
    params              TEXT NOT NULL,                -- every form parameter as received (JSON object)
    status              text NOT NULL DEFAULT 'received', -- received | processed | failed (its handling went dead)
    received_at_ms      bigint NOT NULL,
    processed_at_ms     bigint,
    CONSTRAINT inbound_messages_provider_id_key UNIQUE (provider, provider_message_id)
);
CREATE INDEX inbound_messages_phone_idx ON inbound_messages (from_phone, received_at_ms);
-- A phone's messages not handled yet, in arrival order (handled oldest first).
CREATE INDEX inbound_messages_unhandled_idx ON inbound_messages (from_phone, id) WHERE status = 'received';

CREATE TABLE conversations (
    phone                 text PRIMARY KEY,           -- E.164
    language              text NOT NULL DEFAULT 'en', -- en | ne: the language replies are written in
    state                 TEXT,                       -- JSON: the pending draft and its open questions; NULL when idle
    expires_at_ms         bigint,                     -- the state is void after this (clock of the app)
    unknown_alerted_at_ms bigint,                     -- an unknown number raised its one operator alert
    updated_at_ms         bigint NOT NULL
);

CREATE TABLE outbound_messages (
    id                 BLOB PRIMARY KEY,
    recipient          text NOT NULL,                 -- E.164
    channel            text NOT NULL,                 -- whatsapp | sms
    template           text NOT NULL,                 -- file under templates/{en,ne}/
    vars               TEXT NOT NULL,                 -- JSON object the template was rendered with
    language           text NOT NULL,                 -- en | ne
    body               text NOT NULL,                 -- the rendered text
    status             text NOT NULL DEFAULT 'queued', -- queued | sending | sent | delivered | failed | dead
    attempts           integer NOT NULL DEFAULT 0,
    next_attempt_at_ms bigint NOT NULL,
    last_attempt_at_ms bigint,
    last_error         text,
    provider_sid       text,                          -- Twilio's message SID once accepted
    inbound_id         BLOB,                          -- the inbound message this answers, if any
    created_at_ms      bigint NOT NULL,
    updated_at_ms      bigint NOT NULL,
    CONSTRAINT outbound_messages_status_check CHECK (status IN ('queued', 'sending', 'sent', 'delivered', 'failed', 'dead'))
);
CREATE INDEX outbound_messages_due_idx ON outbound_messages (status, next_attempt_at_ms);
CREATE INDEX outbound_messages_recipient_idx ON outbound_messages (recipient, created_at_ms);
CREATE INDEX outbound_messages_sid_idx ON outbound_messages (provider_sid);
