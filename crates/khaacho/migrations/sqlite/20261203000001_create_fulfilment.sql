-- Fulfilment (DESIGN.md §12): an order's vendor parts, the offers each part was sent with,
-- the routing decisions behind them, and the operators' alert inbox.

-- One part per vendor. `vendor_id` is the vendor the part is offered to or accepted by;
-- `tried` lists every vendor it was offered to, so a reassignment never asks one twice.
CREATE TABLE fulfilments (
    id                  BLOB PRIMARY KEY,
    order_id            BLOB NOT NULL,
    order_created_at_ms bigint NOT NULL,
    retailer_id         BLOB NOT NULL,
    vendor_id           BLOB,                        -- NULL once no vendor is left (unassigned)
    status              text NOT NULL,               -- offered | accepted | dispatched | delivered | unassigned | cancelled
    offer_id            BLOB,                        -- the open or accepted offer
    deadline_ms         bigint,                      -- of the open offer
    reassignments       integer NOT NULL DEFAULT 0,
    tried               TEXT NOT NULL DEFAULT '[]',
    total_paisa         bigint NOT NULL,             -- at the order's prices, VAT included
    delivered_paisa     bigint,                      -- what was handed over, VAT included
    accepted_at_ms      bigint,
    dispatched_at_ms    bigint,
    delivered_at_ms     bigint,
    created_at_ms       bigint NOT NULL,
    updated_at_ms       bigint NOT NULL
);
CREATE INDEX fulfilments_order_idx ON fulfilments (order_id);
-- Workload per vendor (open parts) and a vendor's own list.
CREATE INDEX fulfilments_vendor_idx ON fulfilments (vendor_id, status, created_at_ms);
-- Lists by status, newest first (a vendor's inbox across vendors, operators' views).
CREATE INDEX fulfilments_status_idx ON fulfilments (status, id);
-- The expiry sweep: open offers by deadline.
CREATE INDEX fulfilments_deadline_idx ON fulfilments (deadline_ms) WHERE status = 'offered';

CREATE TABLE fulfilment_lines (
    fulfilment_id    BLOB NOT NULL,
    line_no          integer NOT NULL,                -- the order line
    product_id       BLOB NOT NULL,
    qty_milli        bigint NOT NULL,                 -- base units
    unit             text NOT NULL,                   -- base unit
    unit_price_paisa bigint NOT NULL,                 -- the retailer's price per base unit
    reserved_milli   bigint NOT NULL DEFAULT 0,       -- taken from the vendor's stock at accept
    delivered_milli  bigint,
    CONSTRAINT fulfilment_lines_pkey PRIMARY KEY (fulfilment_id, line_no)
);

-- Every offer of a part to a vendor, with its answer.
CREATE TABLE fulfilment_offers (
    id              BLOB PRIMARY KEY,
    fulfilment_id   BLOB NOT NULL,
    order_id        BLOB NOT NULL,
    vendor_id       BLOB NOT NULL,
    status          text NOT NULL,                    -- offered | accepted | rejected | expired | cancelled
    offered_at_ms   bigint NOT NULL,
    deadline_ms     bigint NOT NULL,
    responded_at_ms bigint,
    reason          text
);
CREATE INDEX fulfilment_offers_fulfilment_idx ON fulfilment_offers (fulfilment_id, offered_at_ms);
CREATE INDEX fulfilment_offers_vendor_idx ON fulfilment_offers (vendor_id, offered_at_ms);

-- Every routing decision: the candidates with their scores, the plan and why.
CREATE TABLE routing_decisions (
    id            BLOB PRIMARY KEY,
    order_id      BLOB NOT NULL,
    fulfilment_id BLOB,                               -- set for a reassignment
    outcome       text NOT NULL,                      -- routed | reassigned | no_vendor
    reason        text NOT NULL,
    decision      TEXT NOT NULL,
    at_ms         bigint NOT NULL
);
CREATE INDEX routing_decisions_order_idx ON routing_decisions (order_id, at_ms);

-- What operators must look at (no vendor left for an order, …), until acknowledged.
CREATE TABLE alerts (
    id                 BLOB PRIMARY KEY,
    kind               text NOT NULL,                 -- vendor_unavailable | …
    severity           text NOT NULL,                 -- info | warning | critical
    subject            text NOT NULL,                 -- order | vendor | product
    subject_id         BLOB NOT NULL,
    message            text NOT NULL,
    detail             TEXT NOT NULL,
    created_at_ms      bigint NOT NULL,
    acknowledged_by    text,
    acknowledged_at_ms bigint
);
CREATE INDEX alerts_open_idx ON alerts (created_at_ms) WHERE acknowledged_at_ms IS NULL;
CREATE INDEX alerts_subject_idx ON alerts (subject_id);
