-- One transaction's operator actions, in order.
SELECT Seq AS seq, At AS at, Actor AS actor, Role AS role, Action AS action, Note AS note,
       Details AS details, Hash AS hash
FROM revtrace_audit_log
WHERE CorrelationId = {correlation_id:String}
ORDER BY Seq
LIMIT {limit:UInt32}
