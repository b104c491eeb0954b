-- Orders per retailer per Nepal day, kept by the transition service as orders are created
-- (orders/transition.rs), so the risk step's "orders in the last 7 days" reads a handful of
-- rows per retailer instead of counting the retailer's orders on every batch.
-- `day` = (created_at_ms + 5 h 45 min) / 86 400 000, the Nepal calendar day since the epoch.
CREATE TABLE retailer_order_days (
    retailer_id blob NOT NULL,
    day         integer NOT NULL,
    n           integer NOT NULL,
    CONSTRAINT retailer_order_days_pkey PRIMARY KEY (retailer_id, day)
) WITHOUT ROWID;
INSERT INTO retailer_order_days (retailer_id, day, n)
SELECT retailer_id, (created_at_ms + 20700000) / 86400000, COUNT(*)
FROM orders
WHERE created_at_ms >= CAST(strftime('%s', 'now') AS integer) * 1000 - 8 * 86400000
GROUP BY 1, 2;
-- The risk step's payment history of a batch's retailers.
CREATE INDEX ledger_entries_debits_idx ON ledger_entries (retailer_id, due_at_ms) WHERE kind = 'order_debit';
