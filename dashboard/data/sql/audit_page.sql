-- A page of the audit log in chain order (for verification and listing).
SELECT Seq, At, Actor, Role, Action, CorrelationId, Note, Details, Record, PrevHash, Hash
FROM revtrace_audit_log
WHERE Seq > {after:UInt64}
ORDER BY Seq
LIMIT {limit:UInt32}
