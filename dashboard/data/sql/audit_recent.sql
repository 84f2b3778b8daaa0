-- The latest operator actions.
SELECT Seq AS seq, At AS at, Actor AS actor, Role AS role, Action AS action,
       CorrelationId AS correlation_id, Note AS note, Details AS details
FROM revtrace_audit_log
ORDER BY Seq DESC
LIMIT {limit:UInt32}
