-- Window statistics for the SLA rules. Sections are named with "-- name:";
-- /*@DIMS@*/ is the rule's grouping columns (from a fixed list, never input),
-- /*@GROUP@*/ the same names for GROUP BY; values are bound parameters.

-- name: scope
-- The steps a rule looks at.
Timestamp >= {start:DateTime64(9)} AND Timestamp <= {until:DateTime64(9)}
AND ({process:String} = '' OR Process = {process:String})
AND ({stage:String} = '' OR Stage = {stage:String})
AND ({system:String} = '' OR System = {system:String})
AND ({vendor:String} = '' OR Vendor = {vendor:String})

-- name: latency_transaction
-- Stage-to-stage seconds per transaction that started within the window.
SELECT /*@DIMS@*/, count() AS n,
       quantilesExactExclusive(/*@LEVELS@*/)(seconds) AS q,
       arraySlice(arrayReverseSort(x -> x.1, groupArray((seconds, CorrelationId))).2, 1, 5) AS worst
FROM (
    SELECT CorrelationId,
           anyIf(Process, Process != '') AS Process,
           anyIf(LegalEntity, LegalEntity != '') AS LegalEntity,
           anyIf(Region, Region != '') AS Region,
           anyIf(Vendor, Stage = {to_stage:String}) AS Vendor,
           minIf(EndTimestamp, Stage = {from_stage:String} AND /*@OK@*/) AS t0,
           minIf(EndTimestamp, Stage = {to_stage:String} AND /*@OK@*/) AS t1,
           (toUnixTimestamp64Milli(t1) - toUnixTimestamp64Milli(t0)) / 1000.0 AS seconds
    FROM revtrace_spans
    WHERE Timestamp >= {start:DateTime64(9)} AND Timestamp <= {until:DateTime64(9)}
      AND Stage IN ({from_stage:String}, {to_stage:String})
      AND ({process:String} = '' OR Process = {process:String})
    GROUP BY CorrelationId
    HAVING t0 >= {start:DateTime64(9)} AND t1 > toDateTime64(0, 9)
)
GROUP BY /*@GROUP@*/

-- name: latency_object
-- Stage-to-stage seconds per object: the from-stage's object, found again in
-- the to-stage's references (biz.object.refs) or id.
SELECT /*@DIMS@*/, count() AS n,
       quantilesExactExclusive(/*@LEVELS@*/)(seconds) AS q,
       arraySlice(arrayReverseSort(x -> x.1, groupArray((seconds, ObjectKey))).2, 1, 5) AS worst
FROM (
    SELECT ObjectKey,
           anyIf(Process, Process != '') AS Process,
           anyIf(LegalEntity, LegalEntity != '') AS LegalEntity,
           anyIf(Region, Region != '') AS Region,
           anyIf(Vendor, Stage = {to_stage:String}) AS Vendor,
           minIf(EndTimestamp, Stage = {from_stage:String}) AS t0,
           minIf(EndTimestamp, Stage = {to_stage:String}) AS t1,
           (toUnixTimestamp64Milli(t1) - toUnixTimestamp64Milli(t0)) / 1000.0 AS seconds
    FROM revtrace_spans
    ARRAY JOIN arrayConcat([concat(System, ':', ObjectType, '/', ObjectId)], ObjectRefs) AS ObjectKey
    WHERE Timestamp >= {start:DateTime64(9)} AND Timestamp <= {until:DateTime64(9)}
      AND Stage IN ({from_stage:String}, {to_stage:String}) AND ObjectId != '' AND /*@OK@*/
      AND ({process:String} = '' OR Process = {process:String})
    GROUP BY ObjectKey
    HAVING t0 >= {start:DateTime64(9)} AND t1 > toDateTime64(0, 9)
)
GROUP BY /*@GROUP@*/

-- name: rate_steps
-- Steps (a stage of a transaction): good when an attempt succeeded, bad when
-- the last attempt failed for good; steps still retrying are not counted.
SELECT /*@DIMS@*/, countIf(good) AS good, countIf(good OR bad) AS total,
       arraySlice(groupArrayIf(CorrelationId, bad), 1, 10) AS examples
FROM (
    SELECT CorrelationId, Stage,
           any(Process) AS Process, any(LegalEntity) AS LegalEntity, any(Region) AS Region, any(Vendor) AS Vendor,
           max(/*@OK@*/) AS good,
           argMax(/*@FINAL_FAILURE@*/, (EndTimestamp, Attempt)) AS bad
    FROM revtrace_spans
    WHERE /*@SCOPE@*/
    GROUP BY CorrelationId, Stage
)
GROUP BY /*@GROUP@*/

-- name: rate_attempts
-- Every attempt counts: what an outage looks like.
SELECT /*@DIMS@*/, countIf(/*@OK@*/) AS good, count() AS total,
       arraySlice(groupUniqArrayIf(10)(CorrelationId, NOT /*@OK@*/), 1, 10) AS examples
FROM revtrace_spans
WHERE /*@SCOPE@*/
GROUP BY /*@GROUP@*/

-- name: burn_steps
-- Good and total steps per window length, for burn rates (windows end at {until}).
SELECT /*@DIMS@*/,
       sumForEach(arrayMap(w -> toUInt64(good AND t >= subtractMilliseconds({until:DateTime64(9)}, w)), {windows_ms:Array(Int64)})) AS goods,
       sumForEach(arrayMap(w -> toUInt64((good OR bad) AND t >= subtractMilliseconds({until:DateTime64(9)}, w)), {windows_ms:Array(Int64)})) AS totals,
       arraySlice(groupArrayIf(CorrelationId, bad), 1, 10) AS examples
FROM (
    SELECT CorrelationId, Stage, max(EndTimestamp) AS t,
           any(Process) AS Process, any(LegalEntity) AS LegalEntity, any(Region) AS Region, any(Vendor) AS Vendor,
           max(/*@OK@*/) AS good,
           argMax(/*@FINAL_FAILURE@*/, (EndTimestamp, Attempt)) AS bad
    FROM revtrace_spans
    WHERE /*@SCOPE@*/
    GROUP BY CorrelationId, Stage
)
GROUP BY /*@GROUP@*/

-- name: mttr
-- Steps that failed for good (dead-lettered, failed, parked) within the window
-- and later succeeded: seconds from the failure to the success. /*@FAILED@*/
-- is mttr_failed or mttr_failed_facts.
SELECT /*@DIMS@*/, countIf(resolved) AS n, avgIf(seconds, resolved) AS mean, countIf(NOT resolved) AS open
FROM (
    SELECT CorrelationId, Stage,
           any(Process) AS Process, any(LegalEntity) AS LegalEntity, any(Region) AS Region, any(Vendor) AS Vendor,
           minIf(EndTimestamp, /*@FINAL_FAILURE@*/) AS failed_at,
           maxIf(EndTimestamp, /*@OK@*/) AS ok_at,
           ok_at > failed_at AS resolved,
           (toUnixTimestamp64Milli(ok_at) - toUnixTimestamp64Milli(failed_at)) / 1000.0 AS seconds
    FROM revtrace_spans
    WHERE Timestamp >= {start:DateTime64(9)} AND Timestamp <= {until:DateTime64(9)}
      AND CorrelationId IN (/*@FAILED@*/)
    GROUP BY CorrelationId, Stage
    HAVING failed_at > toDateTime64(0, 9)
)
GROUP BY /*@GROUP@*/

-- name: mttr_failed
-- The transactions with a span that failed for good in the window.
SELECT CorrelationId FROM revtrace_spans
WHERE Timestamp >= {start:DateTime64(9)} AND Timestamp <= {until:DateTime64(9)} AND /*@FINAL_FAILURE@*/

-- name: mttr_failed_facts
-- mttr_failed from revtrace_eval_facts (when it holds every span of the
-- window): the transactions with a row in the window where a step did not
-- succeed (NotOk: a final failure, or any other outcome that is no success).
-- A superset; mttr's HAVING keeps the steps that failed for good.
SELECT CorrelationId FROM revtrace_eval_facts
WHERE NotOk > 0 AND LastStart >= {start:DateTime64(9)} AND Start <= {until:DateTime64(9)}

-- name: recon_snapshots
-- The latest snapshot of each system for each object type, period and legal entity.
SELECT System, ObjectType, Period, LegalEntity,
       argMax(Count, Timestamp) AS Count, argMax(Amount, Timestamp) AS Amount,
       argMax(Statuses, Timestamp) AS Statuses, argMax(CorrelationId, Timestamp) AS CorrelationId
FROM revtrace_recon_snapshots
WHERE Timestamp >= {start:DateTime64(9)} AND Timestamp <= {until:DateTime64(9)}
  AND ({object_type:String} = '' OR ObjectType = {object_type:String})
GROUP BY System, ObjectType, Period, LegalEntity
ORDER BY Period, ObjectType, LegalEntity, System

-- name: verdict_share
-- Transactions seen in the window of each of several rules, and those whose
-- verdict has the rule's category: one pass over the verdicts for them all
-- (/*@COUNTS@*/ holds a verdict_share_counts per rule), grouped by every
-- dimension any of them groups by (/*@DIMS@*/; each rule's groups are summed
-- from these).
SELECT /*@DIMS@*/ /*@COUNTS@*/
FROM revtrace_transactions FINAL
WHERE LastSeen >= {start:DateTime64(9)} AND FirstSeen <= {until:DateTime64(9)}
GROUP BY /*@GROUP@*/

-- name: verdict_share_counts
, countIf(LastSeen >= {start_@k@:DateTime64(9)} AND ({process_@k@:String} = '' OR Process = {process_@k@:String})) AS total_@k@
, countIf(LastSeen >= {start_@k@:DateTime64(9)} AND ({process_@k@:String} = '' OR Process = {process_@k@:String})
          AND Category = {category_@k@:String}) AS bad_@k@
, groupArrayIf(10)(CorrelationId, LastSeen >= {start_@k@:DateTime64(9)}
          AND ({process_@k@:String} = '' OR Process = {process_@k@:String}) AND Category = {category_@k@:String}) AS examples_@k@
