-- Per-transaction evaluation. Sections are named with "-- name:"; /*@X@*/ markers
-- are filled by sla_rules._queries with SQL built from this file's fragments
-- (never from input); every value is a bound {name:Type} parameter.
-- @i@ in a fragment is the index of the stage or rule it serves.

-- name: candidates
-- Transactions to (re)evaluate: those written to since the last tick (the
-- change feed, by the store's clock), plus those in progress (time alone can
-- make them stuck or late).
SELECT DISTINCT CorrelationId FROM revtrace_eval_changes
WHERE IngestedAt >= {since:DateTime64(3)}
  AND Start >= {horizon:DateTime64(9)}
  AND Start <= {until:DateTime64(9)}
UNION DISTINCT
SELECT CorrelationId FROM revtrace_transactions FINAL
WHERE {use_open:UInt8} = 1 AND Status IN /*@OPEN_STATUSES@*/ AND LastSeen >= {horizon:DateTime64(9)}

-- name: facts
-- One row per candidate transaction: its dimensions and what the rules need.
-- Read straight from the table (a wrapping subquery costs a third more);
-- /*@OK@*/ and /*@EFFECT@*/ are the per-span success expressions. On a cold
-- start every transaction in the lookback is a candidate ({everything} = 1):
-- no IN list. max() of a dimension is its non-empty value when one span
-- leaves it empty.
SELECT
    CorrelationId,
    max(Process) AS Process,
    max(LegalEntity) AS LegalEntity,
    max(Region) AS Region,
    any(Amount) AS Amount,
    max(Currency) AS Currency,
    min(Timestamp) AS FirstSeen,
    max(EndTimestamp) AS LastSeen,
    argMax(Stage, EndTimestamp) AS LastStage,
    countIf(NOT /*@OK@*/ AND Outcome != /*@RETRYING@*/) AS NotOk,
    maxIf(EndTimestamp, Outcome = /*@RETRYING@*/) AS LastRetry,
    maxIf(EndTimestamp, /*@OK@*/) AS LastOk
    /*@COLUMNS@*/
FROM revtrace_spans
WHERE Timestamp >= {horizon:DateTime64(9)}
  AND Timestamp <= {until:DateTime64(9)}
  AND ({everything:UInt8} = 1 OR CorrelationId IN (/*@CANDIDATES@*/))
GROUP BY CorrelationId

-- name: col_first_ok
, minIf(EndTimestamp, Stage = {st_@i@:String} AND /*@EFFECT@*/) AS ok_@i@

-- name: col_amount
, anyIf(Amount, Stage = {st_@i@:String} AND Amount IS NOT NULL AND /*@EFFECT@*/) AS amt_@i@

-- name: col_dup_objects
-- Some stage of the duplicate rules (key: object) created two different objects:
-- more distinct (stage, object) pairs than distinct stages. uniqCombined is
-- exact at these sizes (a handful per transaction) and far cheaper than a
-- pair of aggregates per stage; which rule and stage is decided in Python.
, uniqCombinedIf(cityHash64(Stage, ObjectId), Stage IN {dup_stages:Array(String)} AND ObjectId != '' AND /*@EFFECT@*/)
  > uniqCombinedIf(Stage, Stage IN {dup_stages:Array(String)} AND ObjectId != '' AND /*@EFFECT@*/) AS dup_objects

-- name: cond_dup_objects
dup_objects

-- name: col_dup_idempotency_key
, countIf(Stage = {dup_@i@:String} AND IdempotencyKey != '' AND /*@EFFECT@*/)
  > uniqExactIf(IdempotencyKey, Stage = {dup_@i@:String} AND IdempotencyKey != '' AND /*@EFFECT@*/) AS dup_@i@

-- name: col_dup_event_id
, countIf(Stage = {dup_@i@:String} AND EventId != '' AND /*@EFFECT@*/)
  > uniqExactIf(EventId, Stage = {dup_@i@:String} AND EventId != '' AND /*@EFFECT@*/) AS dup_@i@

-- name: cond_not_ok
-- A step failed, parked or errored; or a retry is the latest thing that
-- happened (pending). A retry followed by more progress was absorbed.
(NotOk > 0 OR (LastRetry > toDateTime64(0, 9) AND LastRetry >= LastOk))

-- name: cond_expectation
-- Completeness or latency deadline: the start happened, and the end is missing or late.
(({proc_@i@:String} = '' OR Process = {proc_@i@:String})
 AND ok_@a@ > toDateTime64(0, 9)
 AND (ok_@b@ = toDateTime64(0, 9) OR ok_@b@ > addMilliseconds(ok_@a@, {limit_@i@:Int64})))

-- name: cond_dup
dup_@i@

-- name: cond_order
(ok_@a@ > toDateTime64(0, 9) AND ok_@b@ > toDateTime64(0, 9) AND ok_@b@ < ok_@a@)

-- name: cond_amount
(amt_@a@ IS NOT NULL AND amt_@b@ IS NOT NULL AND abs(toFloat64(amt_@a@) - toFloat64(amt_@b@)) > {tol_@i@:Float64})

-- name: stage_facts
-- The facts of every candidate, computed once per pass into a scratch table
-- (/*@SCRATCH@*/, Memory engine, dropped after the pass), with Dirty saying
-- whether something may be wrong with it.
CREATE TABLE /*@SCRATCH@*/ ENGINE = Memory AS
SELECT CorrelationId, Process, LegalEntity, Region, Amount, Currency, FirstSeen, LastSeen, LastStage,
       ((/*@DIRTY@*/) OR has({extra:Array(String)}, CorrelationId)) AS Dirty
FROM (/*@FACTS@*/)

-- name: insert_clean
-- Transactions nothing is wrong with and nothing is pending for: ok, written
-- server-side without a round trip.
INSERT INTO revtrace_transactions
    (CorrelationId, Process, LegalEntity, Region, Status, Category, Severity, Reason, Evidence,
     FirstSeen, LastSeen, LastStage, Amount, Currency, Rules, EvaluatedAt)
SELECT CorrelationId, Process, LegalEntity, Region, /*@STATUS_OK@*/, '', '', '', '{}',
       FirstSeen, LastSeen, LastStage, Amount, Currency, [], {now:DateTime64(3)}
FROM /*@SCRATCH@*/
WHERE NOT Dirty

-- name: count_clean
SELECT countIf(NOT Dirty) FROM /*@SCRATCH@*/

-- name: dirty_spans
-- Every span of the transactions something may be wrong with.
SELECT
    CorrelationId, Process, LegalEntity, Region, Stage, System, Vendor,
    toUnixTimestamp64Nano(Timestamp) AS StartNs, toUnixTimestamp64Nano(EndTimestamp) AS EndNs,
    Outcome, StatusCode, ErrorCategory, ErrorCode, ErrorType, HttpStatusCode, Attempt,
    ObjectType, ObjectId, IdempotencyKey, EventId, EventSequence, Amount, Currency, SpanId
FROM revtrace_spans
WHERE Timestamp >= {horizon:DateTime64(9)}
  AND Timestamp <= {until:DateTime64(9)}
  AND CorrelationId IN (
      SELECT CorrelationId FROM /*@SCRATCH@*/ WHERE Dirty
      UNION ALL
      SELECT arrayJoin({extra:Array(String)}))

-- name: sequence_violations
-- Objects whose events were applied out of their sequence: for each applied
-- event, the highest sequence applied before it.
SELECT CorrelationId, ObjectType, ObjectId, Stage, Seq, PrevMax, SpanId
FROM (
    SELECT ObjectType, ObjectId,
           arraySort(x -> x.1, groupArray((EndTimestamp, assumeNotNull(EventSequence), CorrelationId, Stage, SpanId))) AS applied
    FROM revtrace_spans
    WHERE Timestamp >= {start:DateTime64(9)} AND Timestamp <= {until:DateTime64(9)}
      AND EventSequence IS NOT NULL AND ObjectId != '' AND /*@EFFECT@*/
      AND (empty({stages:Array(String)}) OR has({stages:Array(String)}, Stage))
    GROUP BY ObjectType, ObjectId
    HAVING count() > 1
)
ARRAY JOIN
    applied.3 AS CorrelationId, applied.4 AS Stage, applied.2 AS Seq, applied.5 AS SpanId,
    arrayMap((x, i) -> if(i = 1, -1, arrayMax(arraySlice(applied.2, 1, i - 1))), applied.2, arrayEnumerate(applied.2)) AS PrevMax
WHERE PrevMax > Seq

-- name: duplicate_keys
-- Keys (idempotency or event id) applied by more than one transaction: every
-- transaction after the first applied a duplicate.
SELECT Key, arraySort(x -> x.1, groupArray((EndTimestamp, CorrelationId))).2 AS Cids
FROM (
    SELECT if({key:String} = 'event_id', EventId, IdempotencyKey) AS Key, CorrelationId, min(EndTimestamp) AS EndTimestamp
    FROM revtrace_spans
    WHERE Timestamp >= {start:DateTime64(9)} AND Timestamp <= {until:DateTime64(9)}
      AND has({stages:Array(String)}, Stage) AND /*@EFFECT@*/
      AND if({key:String} = 'event_id', EventId, IdempotencyKey) != ''
    GROUP BY Key, CorrelationId
)
GROUP BY Key
HAVING count() > 1
