-- Credit scores with their factor breakdown (history kept), and risk/credit alerts that
-- operators list and acknowledge. Written by the daily scoring and the hourly controls.
CREATE TABLE credit_scores (
    id            BLOB PRIMARY KEY,
    retailer_id   BLOB NOT NULL,
    score         integer NOT NULL,                 -- 300..900
    band          text NOT NULL,
    has_history   INTEGER NOT NULL,                   -- false: a new retailer scored on neutral factors
    factors       TEXT NOT NULL,                      -- [{name, weight_pct, points_0_100, detail}]
    at_ms         bigint NOT NULL
);
CREATE INDEX credit_scores_retailer_idx ON credit_scores (retailer_id, at_ms);

CREATE TABLE risk_alerts (
    id                 BLOB PRIMARY KEY,
    retailer_id        BLOB NOT NULL,
    kind               text NOT NULL,               -- overdue_warning | overdue_block | late_payment_cut | high_risk | order_spike
    severity           text NOT NULL,               -- info | warning | critical
    detail             TEXT NOT NULL,
    created_at_ms      bigint NOT NULL,
    acknowledged_by    text,
    acknowledged_at_ms bigint
);
CREATE INDEX risk_alerts_retailer_kind_idx ON risk_alerts (retailer_id, kind, created_at_ms);
CREATE INDEX risk_alerts_created_idx ON risk_alerts (created_at_ms);
