-- Live updates (/api/v1/ws). The order events are the source of truth; this feed numbers
-- them in commit order so that a WebSocket can be resumed without a gap or a duplicate.
-- Event ids (UUIDv7) are made before their transaction commits, and transactions commit out
-- of id order, so "id > last seen" can skip an event committed late. The consumer of
-- order.changed (orders::transition::consume) takes the next numbers from the one counter
-- row below, last in its transaction: the row lock is held to the commit, so a later number
-- is always committed later, and "seq > last seen" misses nothing (see ARCHITECTURE.md).
CREATE TABLE live_feed_counter (
    id   integer PRIMARY KEY,                   -- always 1
    last bigint NOT NULL
);
INSERT INTO live_feed_counter (id, last) VALUES (1, 0);

CREATE TABLE order_event_feed (
    seq                 bigint PRIMARY KEY,
    event_id            uuid NOT NULL,
    order_id            uuid NOT NULL,
    order_created_at_ms bigint NOT NULL,        -- with order_id and event_id: the event's key
    at_ms               bigint NOT NULL         -- when it was numbered (for pruning)
);
CREATE UNIQUE INDEX order_event_feed_event_idx ON order_event_feed (event_id);

-- WebSocket tickets: browsers cannot send headers with a WebSocket, so an authenticated
-- client first asks POST /api/v1/ws/tickets for a short-lived, single-use ticket and opens
-- /api/v1/ws?ticket=... Only the SHA-256 of the ticket is stored; using it is one
-- conditional UPDATE, so a ticket is used once however many API processes there are.
CREATE TABLE ws_tickets (
    ticket_hash    text PRIMARY KEY,
    principal_kind text NOT NULL,              -- user | apikey
    principal_id   uuid NOT NULL,
    role           text NOT NULL,
    tenant_id      uuid,
    created_at_ms  bigint NOT NULL,
    expires_at_ms  bigint NOT NULL,
    used_at_ms     bigint
);
CREATE INDEX ws_tickets_expires_idx ON ws_tickets (expires_at_ms);
