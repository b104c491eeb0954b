-- Open parts per vendor (offered, accepted or dispatched: what counts against its capacity,
-- `max_active`) and, of those, the offers it has not answered (`max_awaiting`), kept by the
-- transactions that move parts (fulfilment/repo.rs, `Workloads`) instead of counted when
-- routing reads them: a COUNT(*) over a vendor's open parts grows with the offers it leaves
-- unanswered, and routing reads it for every batch.
CREATE TABLE vendor_workloads (
    vendor_id  uuid NOT NULL,
    open_parts bigint NOT NULL,
    awaiting_parts bigint NOT NULL,
    CONSTRAINT vendor_workloads_pkey PRIMARY KEY (vendor_id)
);
INSERT INTO vendor_workloads (vendor_id, open_parts, awaiting_parts)
    SELECT vendor_id, COUNT(*), SUM(CASE WHEN status = 'offered' THEN 1 ELSE 0 END) FROM fulfilments
    WHERE status IN ('offered', 'accepted', 'dispatched') AND vendor_id IS NOT NULL
    GROUP BY vendor_id;

-- A routing decision is ~5 KB of JSON (every candidate with its scores per line), written for
-- every order: lz4 compresses it several times faster than pglz. Where the server was built without
-- lz4 the column keeps the default.
DO $$
BEGIN
    ALTER TABLE routing_decisions ALTER COLUMN decision SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'lz4 is not available here: routing decisions stay pglz-compressed';
END $$;
