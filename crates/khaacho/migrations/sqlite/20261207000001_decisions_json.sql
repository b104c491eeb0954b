-- PostgreSQL's routing_decisions.decision became `json` (text kept as written) in this version;
-- here it has always been TEXT. Nothing to change: the file keeps both backends' versions alike.
SELECT 1;
