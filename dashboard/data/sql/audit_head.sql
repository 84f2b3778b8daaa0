-- The audit chain's last link.
SELECT Seq AS seq, Hash AS hash
FROM revtrace_audit_log
ORDER BY Seq DESC
LIMIT 1
