-- Failed transactions straight from the spans, for when the evaluator has not
-- written verdicts: a transaction fails when a stage's last outcome failed.
-- (Stuck transactions need the evaluator's deadlines and are not found here.)
SELECT
    t.CorrelationId AS correlation_id,
    t.process AS process,
    t.entity AS entity,
    {status_failed:String} AS status,
    t.category AS category,
    '' AS severity,
    t.reason AS reason,
    t.first_seen AS first_seen,
    t.last_seen AS last_seen,
    t.last_stage AS last_stage,
    t.amount AS amount,
    t.currency AS currency,
    w.assignee AS assignee,
    w.replays AS replays,
    w.resolved_at > toDateTime64(0, 6) AND w.resolved_at >= t.last_seen AS resolved,
    w.resolved_by AS resolved_by,
    w.last_note AS last_note
FROM (
    SELECT
        CorrelationId,
        max(s_process) AS process,
        max(s_entity) AS entity,
        argMaxIf(s_category, s_last, s_failed) AS category,
        argMaxIf(s_reason, s_last, s_failed) AS reason,
        min(s_first) AS first_seen,
        max(s_last) AS last_seen,
        argMax(Stage, s_last) AS last_stage,
        toString(max(s_amount)) AS amount,
        max(s_currency) AS currency
    FROM (
        SELECT
            CorrelationId,
            Stage,
            max(Process) AS s_process,
            max(LegalEntity) AS s_entity,
            min(Timestamp) AS s_first,
            max(EndTimestamp) AS s_last,
            argMax(/*@outcome*/, Timestamp) IN {failed_outcomes:Array(String)} AS s_failed,
            argMax(ErrorCategory, Timestamp) AS s_category,
            argMax(concat(Stage, ': ', if(ErrorCode != '', ErrorCode, StatusMessage)), Timestamp) AS s_reason,
            max(Amount) AS s_amount,
            max(Currency) AS s_currency
        FROM revtrace_spans
        WHERE /*@window*/ AND CorrelationId IN (/*@suspects*/)
        GROUP BY CorrelationId, Stage
    )
    GROUP BY CorrelationId
    HAVING max(s_failed)
       AND ({entity:String} = '' OR entity = {entity:String})
       AND ({category:String} = '' OR category = {category:String})
       AND first_seen <= {seen_before:DateTime64(9)}
) AS t
LEFT JOIN (/*@workbench_state*/) AS w ON w.CorrelationId = t.CorrelationId
WHERE {include_resolved:Bool} OR NOT resolved
ORDER BY t.first_seen ASC
LIMIT {limit:UInt32}
