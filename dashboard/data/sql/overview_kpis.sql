-- Overview: one pass over the window's spans, one row per transaction, then the
-- KPI ingredients per bucket of the transaction's first span and for the whole
-- window (part = 'total'). Transactions are grouped by a 64-bit hash of the
-- correlation id: hashing a number is several times faster than hashing the
-- string, and 64 bits do not collide at these sizes.
WITH tx AS (
    SELECT
        min(Timestamp) AS first_seen,
        max(Timestamp) AS last_span,
        max(LegalEntity) AS entity,
        count() AS spans,
        countIf(/*@outcome*/ IN {failed_outcomes:Array(String)}) AS failed_spans,
        argMaxIf(/*@outcome*/, Timestamp, Stage = {customer_billing:String}) AS cs_billing,
        argMaxIf(/*@outcome*/, Timestamp, Stage = {customer_erp:String}) AS cs_erp,
        countIf(Stage = {inv_from:String} AND /*@outcome*/ = {outcome_ok:String}) > 0 AS inv_has_from,
        countIf(Stage = {inv_to:String} AND /*@outcome*/ = {outcome_ok:String}) > 0 AS inv_has_to,
        minIf(EndTimestamp, Stage = {inv_from:String} AND /*@outcome*/ = {outcome_ok:String}) AS inv_from_at,
        minIf(EndTimestamp, Stage = {inv_to:String} AND /*@outcome*/ = {outcome_ok:String}) AS inv_to_at,
        (toUnixTimestamp64Nano(inv_to_at) - toUnixTimestamp64Nano(inv_from_at)) / 1e9 AS inv_s,
        countIf(Stage = {pay_from:String} AND /*@outcome*/ = {outcome_ok:String}) > 0 AS pay_has_from,
        countIf(Stage = {pay_to:String} AND /*@outcome*/ = {outcome_ok:String}) > 0 AS pay_has_to,
        minIf(EndTimestamp, Stage = {pay_from:String} AND /*@outcome*/ = {outcome_ok:String}) AS pay_from_at,
        minIf(EndTimestamp, Stage = {pay_to:String} AND /*@outcome*/ = {outcome_ok:String}) AS pay_to_at,
        (toUnixTimestamp64Nano(pay_to_at) - toUnixTimestamp64Nano(pay_from_at)) / 1e9 AS pay_s
    FROM revtrace_spans
    WHERE /*@window*/
    GROUP BY cityHash64(CorrelationId)
    HAVING {entity:String} = '' OR entity = {entity:String}
)
SELECT
    if(grouping(bucket) = 1, 'total', 'bucket') AS part,
    toStartOfInterval(first_seen, toIntervalSecond({step:UInt32})) AS bucket,
    count() AS transactions,
    sum(spans) AS spans,
    sum(failed_spans) AS failed_spans,
    max(last_span) AS last_span,
    countIf(cs_billing IN {ok_outcomes:Array(String)}) + countIf(cs_erp IN {ok_outcomes:Array(String)}) AS sync_ok,
    countIf(cs_billing IN {failed_outcomes:Array(String)})
        + countIf(cs_erp IN {failed_outcomes:Array(String)}) AS sync_failed,
    countIf(inv_has_from AND inv_has_to) AS inv_completed,
    quantilesIf(0.5, 0.95, 0.99)(inv_s, inv_has_from AND inv_has_to) AS inv_q,
    inv_q[1] AS inv_p50,
    inv_q[2] AS inv_p95,
    inv_q[3] AS inv_p99,
    countIf(inv_has_from AND inv_has_to AND inv_s > {inv_sla:Float64}) AS inv_breaches,
    countIf(inv_has_from AND NOT inv_has_to
            AND inv_from_at < {now:DateTime64(9)} - toIntervalMillisecond(toUInt64({inv_sla:Float64} * 1000)))
        AS inv_waiting_past_sla,
    countIf(pay_has_from AND pay_has_to) AS pay_completed,
    quantilesIf(0.5, 0.95, 0.99)(pay_s, pay_has_from AND pay_has_to) AS pay_q,
    pay_q[2] AS pay_p95
FROM tx
GROUP BY GROUPING SETS ((bucket), ())
ORDER BY part, bucket
