-- Workbench state per transaction, derived from the audit log.
SELECT
    CorrelationId,
    argMaxIf(JSONExtractString(Details, 'assignee'), Seq, Action = {action_assign:String}) AS assignee,
    maxIf(At, Action = {action_resolve:String}) AS resolved_at,
    argMaxIf(Actor, Seq, Action = {action_resolve:String}) AS resolved_by,
    argMax(Note, Seq) AS last_note,
    countIf(Action = {action_replay:String}) AS replays,
    max(At) AS last_action_at
FROM revtrace_audit_log
GROUP BY CorrelationId
