-- Core schema: parties, catalogue, offers, orders (partitioned by month), job queue.
-- Conventions: ids are UUIDv7; times are UTC epoch milliseconds (BIGINT, *_ms); money is
-- integer paisa (*_paisa); quantities are integer milli-units (*_milli, 1 kg = 1000).

CREATE TABLE retailers (
    id            uuid PRIMARY KEY,
    name          text NOT NULL,
    phone         text NOT NULL CONSTRAINT retailers_phone_key UNIQUE, -- E.164, WhatsApp identity
    district      text NOT NULL,
    address       text,
    lat           double precision,
    lng           double precision,
    active        boolean NOT NULL DEFAULT true,
    created_at_ms bigint NOT NULL
);

CREATE TABLE vendors (
    id            uuid PRIMARY KEY,
    name          text NOT NULL,
    phone         text NOT NULL CONSTRAINT vendors_phone_key UNIQUE,
    districts     jsonb NOT NULL,                  -- JSON array of district names served
    lat           double precision,
    lng           double precision,
    opens_at_min  integer NOT NULL DEFAULT 540,    -- minutes after midnight, Nepal time
    closes_at_min integer NOT NULL DEFAULT 1080,
    max_active    integer NOT NULL DEFAULT 10,     -- capacity: active orders at once
    max_awaiting  integer NOT NULL DEFAULT 5,      -- capacity: offers awaiting a response
    score         integer NOT NULL DEFAULT 50,     -- 0..100, new vendors start at 50
    active        boolean NOT NULL DEFAULT true,
    created_at_ms bigint NOT NULL
);

CREATE TABLE products (
    id               uuid PRIMARY KEY,
    sku              text NOT NULL CONSTRAINT products_sku_key UNIQUE,
    name             text NOT NULL,
    aliases          jsonb NOT NULL DEFAULT '[]',  -- JSON array of strings
    unit             text NOT NULL,                -- base unit: kg, litre, packet, piece, bottle
    pack_size_milli  bigint,                       -- base units in one outer pack (carton, sack, crate)
    list_price_paisa bigint,                       -- reference price per base unit from the catalogue
    category         text NOT NULL,
    min_order_milli  bigint,                       -- in base units
    max_order_milli  bigint,
    active           boolean NOT NULL DEFAULT true,
    created_at_ms    bigint NOT NULL,
    updated_at_ms    bigint NOT NULL
);

CREATE TABLE offers (
    id              uuid PRIMARY KEY,
    vendor_id       uuid NOT NULL CONSTRAINT offers_vendor_fk REFERENCES vendors (id),
    product_id      uuid NOT NULL CONSTRAINT offers_product_fk REFERENCES products (id),
    price_paisa     bigint NOT NULL CONSTRAINT offers_price_positive CHECK (price_paisa > 0), -- per base unit
    tiers           jsonb NOT NULL DEFAULT '[]',   -- [{"min_qty_milli", "price_paisa"}], from that quantity on
    valid_from_ms   bigint NOT NULL,
    valid_to_ms     bigint,                        -- NULL: open-ended
    promotional     boolean NOT NULL DEFAULT false,
    stock_milli     bigint NOT NULL DEFAULT 0,
    lead_time_hours integer NOT NULL DEFAULT 24,
    updated_at_ms   bigint NOT NULL,
    CONSTRAINT offers_vendor_product_key UNIQUE (vendor_id, product_id)
);
CREATE INDEX offers_product_idx ON offers (product_id);

CREATE TABLE price_history (
    id            uuid PRIMARY KEY,
    offer_id      uuid NOT NULL CONSTRAINT price_history_offer_fk REFERENCES offers (id),
    price_paisa   bigint NOT NULL,
    tiers         jsonb NOT NULL,
    changed_at_ms bigint NOT NULL
);
CREATE INDEX price_history_offer_idx ON price_history (offer_id, changed_at_ms);

-- Orders, their lines and events are range-partitioned by month on the order's creation
-- time. The id is UUIDv7, so created_at_ms is derivable from it and every lookup prunes.
-- Monthly partitions are created ahead by the maintenance job; the DEFAULT partition only
-- catches rows whose month was somehow not created, so no accepted order is ever refused.
CREATE TABLE orders (
    id             uuid NOT NULL,
    created_at_ms  bigint NOT NULL,
    retailer_id    uuid NOT NULL CONSTRAINT orders_retailer_fk REFERENCES retailers (id),
    status         text NOT NULL,
    priority       text NOT NULL DEFAULT 'normal',
    channel        text NOT NULL DEFAULT 'api',
    note           text,
    source_text    text,                           -- free text as sent, for text orders
    subtotal_paisa bigint,
    vat_paisa      bigint,
    total_paisa    bigint,
    hold_reason    text,
    held_from      text,                           -- the state an on_hold order continues to
    reject_reason  text,
    correlation_id text,                           -- request id of the intake, followed into jobs
    updated_at_ms  bigint NOT NULL,
    CONSTRAINT orders_pkey PRIMARY KEY (id, created_at_ms)
) PARTITION BY RANGE (created_at_ms);
CREATE INDEX orders_retailer_idx ON orders (retailer_id, created_at_ms DESC, id DESC);
CREATE INDEX orders_status_idx ON orders (status, created_at_ms DESC, id DESC);
CREATE INDEX orders_created_idx ON orders (created_at_ms DESC, id DESC);
CREATE TABLE orders_default PARTITION OF orders DEFAULT;

CREATE TABLE order_lines (
    order_id            uuid NOT NULL,
    order_created_at_ms bigint NOT NULL,
    line_no             integer NOT NULL,
    sku                 text NOT NULL,
    qty_milli           bigint NOT NULL,           -- as requested, in `unit`
    unit                text NOT NULL,
    product_id          uuid,                      -- snapshot once validated
    product_name        text,
    base_qty_milli      bigint,
    base_unit           text,
    unit_price_paisa    bigint,                    -- per base unit, from the chosen offer
    subtotal_paisa      bigint,
    vat_paisa           bigint,
    total_paisa         bigint,
    offer_id            uuid,
    vendor_id           uuid,
    price_reason        text,
    reject_code         text,                      -- why this line was refused
    reject_detail       text,
    -- No foreign key to orders: lines are written only with their order, in the same
    -- transaction (orders::repo), and a per-row FK trigger would cost the intake dearly.
    CONSTRAINT order_lines_pkey PRIMARY KEY (order_id, order_created_at_ms, line_no)
) PARTITION BY RANGE (order_created_at_ms);
CREATE TABLE order_lines_default PARTITION OF order_lines DEFAULT;

CREATE TABLE order_events (
    id                  uuid NOT NULL,
    order_id            uuid NOT NULL,
    order_created_at_ms bigint NOT NULL,
    from_status         text,                      -- NULL for the intake event
    to_status           text NOT NULL,
    actor               text NOT NULL,
    role                text NOT NULL,
    reason              text,
    detail              jsonb,
    at_ms               bigint NOT NULL,
    -- Keyed by order first so an order's history is one index range; no foreign key, for
    -- the same reason as order_lines.
    CONSTRAINT order_events_pkey PRIMARY KEY (order_id, order_created_at_ms, id)
) PARTITION BY RANGE (order_created_at_ms);
CREATE TABLE order_events_default PARTITION OF order_events DEFAULT;

-- First answer of a creating POST, replayed for a repeated Idempotency-Key.
CREATE TABLE idempotency_keys (
    scope           text NOT NULL,                 -- who sent it (the retailer for now)
    key             text NOT NULL,
    request_hash    text NOT NULL,                 -- SHA-256 of the body: a different body is refused
    response_status integer NOT NULL,
    response_body   jsonb NOT NULL,
    created_at_ms   bigint NOT NULL,
    CONSTRAINT idempotency_keys_pkey PRIMARY KEY (scope, key)
);

-- The job queue. Succeeded jobs are deleted; dead ones stay for the admin API.
CREATE TABLE jobs (
    id              uuid PRIMARY KEY,
    queue           text NOT NULL,
    kind            text NOT NULL,
    payload         jsonb NOT NULL,
    priority        integer NOT NULL DEFAULT 1,    -- 2 high, 1 normal, 0 low
    run_at_ms       bigint NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,    -- claims so far
    max_attempts    integer NOT NULL,
    status          text NOT NULL DEFAULT 'queued'
        CONSTRAINT jobs_status_check CHECK (status IN ('queued', 'running', 'dead')),
    locked_by       text,                          -- worker id holding the lease
    locked_until_ms bigint,                        -- lease end, extended by heartbeats
    last_error      text,
    errors          jsonb NOT NULL DEFAULT '[]',   -- [{"attempt", "at_ms", "error"}]
    dedupe_key      text CONSTRAINT jobs_dedupe_key UNIQUE,
    correlation_id  text,
    created_at_ms   bigint NOT NULL,
    updated_at_ms   bigint NOT NULL
);
CREATE INDEX jobs_ready_idx ON jobs (queue, priority DESC, run_at_ms) WHERE status = 'queued';
CREATE INDEX jobs_lease_idx ON jobs (locked_until_ms) WHERE status = 'running';
-- The dead-letter view; queued jobs are found through jobs_ready_idx.
CREATE INDEX jobs_dead_idx ON jobs (kind, updated_at_ms) WHERE status = 'dead';

-- One row per fired tick of a recurring schedule: the primary key makes a tick fire once
-- however many nodes run the scheduler.
CREATE TABLE schedule_ticks (
    name       text NOT NULL,
    fire_at_ms bigint NOT NULL,
    job_id     uuid NOT NULL,
    done_at_ms bigint,                             -- set when the job succeeded
    CONSTRAINT schedule_ticks_pkey PRIMARY KEY (name, fire_at_ms)
);
