-- Vendor scores (hourly, history kept; the latest is also `vendors.score`, which routing reads
-- as reliability) and price-intelligence snapshots (every 4 hours), one row per subject per run.
-- A run repeated at the same `at_ms` (a retried job) writes nothing twice.
CREATE TABLE vendor_scores (
    id              BLOB PRIMARY KEY,
    vendor_id       BLOB NOT NULL,
    score           integer NOT NULL,                  -- 0..100
    grade           text NOT NULL,                     -- A+ | A | B | C | D | F
    needs_attention INTEGER NOT NULL,
    factors         TEXT NOT NULL,                     -- {activity, factors: [{factor, weight, points, measured}]}
    at_ms           bigint NOT NULL,
    CONSTRAINT vendor_scores_vendor_at_key UNIQUE (vendor_id, at_ms)
);

CREATE TABLE price_snapshots (
    id             BLOB PRIMARY KEY,
    product_id     BLOB NOT NULL,
    average_paisa  bigint NOT NULL,
    min_paisa      bigint NOT NULL,
    max_paisa      bigint NOT NULL,
    median_paisa   bigint NOT NULL,
    change_30d_pct REAL,                               -- NULL without a price 30 days ago
    volatility     integer NOT NULL,                   -- 0..100
    trend          text NOT NULL,                      -- stable | rising | falling
    at_ms          bigint NOT NULL,
    CONSTRAINT price_snapshots_product_at_key UNIQUE (product_id, at_ms)
);
