-- Failed and stuck transactions from the evaluator, with their workbench state.
-- A transaction resolved before it was last seen failing is open again.
SELECT
    t.CorrelationId AS correlation_id,
    t.Process AS process,
    t.LegalEntity AS entity,
    t.Status AS status,
    t.Category AS category,
    t.Severity AS severity,
    t.Reason AS reason,
    t.FirstSeen AS first_seen,
    t.LastSeen AS last_seen,
    t.LastStage AS last_stage,
    toString(t.Amount) AS amount,
    t.Currency AS currency,
    w.assignee AS assignee,
    w.replays AS replays,
    w.resolved_at > toDateTime64(0, 6) AND w.resolved_at >= t.LastSeen AS resolved,
    w.resolved_by AS resolved_by,
    w.last_note AS last_note
FROM (
    SELECT *
    FROM revtrace_transactions FINAL
    WHERE Status IN {statuses:Array(String)}
      AND ({entity:String} = '' OR LegalEntity = {entity:String})
      AND ({category:String} = '' OR Category = {category:String})
      AND FirstSeen <= {seen_before:DateTime64(9)}
      AND LastSeen >= {start:DateTime64(9)}
) AS t
LEFT JOIN (/*@workbench_state*/) AS w ON w.CorrelationId = t.CorrelationId
WHERE {include_resolved:Bool} OR NOT resolved
ORDER BY t.FirstSeen ASC
LIMIT {limit:UInt32}
