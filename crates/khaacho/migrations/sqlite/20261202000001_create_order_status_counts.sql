-- Orders per status, kept by the consumer of `order.changed` jobs (orders/counts.rs), so the
-- `khaacho_orders{state}` gauge does not count every order on each scrape.
CREATE TABLE order_status_counts (
    status text NOT NULL,
    n      bigint NOT NULL,   -- may briefly lag the orders table by the pending order.changed jobs
    CONSTRAINT order_status_counts_pkey PRIMARY KEY (status)
);
INSERT INTO order_status_counts (status, n) SELECT status, COUNT(*) FROM orders GROUP BY status;
