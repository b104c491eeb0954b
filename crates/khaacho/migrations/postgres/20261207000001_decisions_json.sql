-- A routing decision is written once per order and read back whole (the order's detail, the
-- decisions list): nothing queries inside it. As `jsonb` the server parsed every ~5 KB decision
-- into its binary form on the way in (~65 µs of the ~100 µs its insert took, measured on 1,500
-- real decisions; bench/README.md, "The intake in one statement; the decision as json"); `json`
-- keeps the text as the server serialized it, checked for being JSON. The type change drops the
-- column's compression setting, so lz4 is set again (as in 20261205000002, where it is available).
ALTER TABLE routing_decisions ALTER COLUMN decision TYPE json USING decision::json;
DO $$
BEGIN
    ALTER TABLE routing_decisions ALTER COLUMN decision SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'lz4 is not available here: routing decisions stay pglz-compressed';
END $$;
