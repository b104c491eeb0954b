-- What each vendor was given of each product per day (UTC, the day its part was created), in
-- the part lines' base milli-units, delivered quantity once delivered; parts cancelled or left
-- unassigned count nothing. Kept by the transactions that move parts (fulfilment/repo.rs,
-- `Workloads`) for routing's 30-day volume-share rule, which read it by summing every part
-- line of the product ever written: a scan that grows with the business's history. Rows older
-- than the window are deleted by the maintenance job, which also recounts the window.
CREATE TABLE vendor_volumes (
    product_id uuid NOT NULL,
    day        bigint NOT NULL,                    -- created_at_ms / 86,400,000
    vendor_id  uuid NOT NULL,
    qty_milli  bigint NOT NULL,
    CONSTRAINT vendor_volumes_pkey PRIMARY KEY (product_id, day, vendor_id)
);
INSERT INTO vendor_volumes (product_id, day, vendor_id, qty_milli)
    SELECT l.product_id, f.created_at_ms / 86400000, f.vendor_id, SUM(COALESCE(l.delivered_milli, l.qty_milli))
    FROM fulfilment_lines l JOIN fulfilments f ON f.id = l.fulfilment_id
    WHERE f.vendor_id IS NOT NULL AND f.status NOT IN ('cancelled', 'unassigned')
    GROUP BY l.product_id, f.created_at_ms / 86400000, f.vendor_id;
