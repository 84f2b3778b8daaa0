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
-- One row per transaction of /*@SCOPE@*/, from its spans: its dimensions and
-- what the rules need. Read straight from the table (a wrapping subquery costs
-- a third more); /*@OK@*/ and /*@EFFECT@*/ are the per-span success
-- expressions. max() of a dimension is its non-empty value when one span
-- leaves it empty. The scope is the candidates (scope_candidates) when
-- revtrace_eval_facts does not cover the window, else the candidates it
-- could not answer for (scope_from_spans).
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
  AND /*@SCOPE@*/
GROUP BY CorrelationId

-- name: scope_candidates
-- On a cold start every transaction in the lookback is a candidate
-- ({everything} = 1): no IN list. GLOBAL: on a cluster the candidates are
-- collected once and sent to every shard.
({everything:UInt8} = 1 OR CorrelationId GLOBAL IN (/*@CANDIDATES@*/))

-- name: scope_from_spans
CorrelationId GLOBAL IN (SELECT CorrelationId FROM /*@SCRATCH@*/ WHERE FromSpans)

-- name: facts_rows
-- revtrace_eval_facts (kept by a materialized view at ingest time) for the
-- transactions of /*@SCOPE@*/ with a span in [{horizon}, {until}]: one row
-- each. Rows of one transaction's inserts that the background merges have not
-- combined yet are combined here (FINAL would pass every row through the
-- merge and costs three times as much). A row whose spans all lie before
-- {horizon}, or all after {until}, is left out: a transaction left with only
-- rows inside the window has exactly its spans in the window, and one with a
-- row reaching out of it is read from its spans (FromSpans in facts_fast).
-- Unused columns cost nothing: the reader names the ones it needs.
SELECT CorrelationId, Start, LastStart, End, finalizeAggregation(LastStage) AS LastStage,
       Process, LegalEntity, Region, Currency, finalizeAggregation(Amount) AS Amount,
       NotOk, LastRetry, LastOk, Stages, FirstEffects, Effects, FirstOks, LastOks, FirstFailures, Vendors,
       ObjectMins, ObjectMaxs, AmountAts, Amounts
FROM revtrace_eval_facts
WHERE LastStart >= {horizon:DateTime64(9)} AND Start <= {until:DateTime64(9)} AND /*@SCOPE@*/
  AND CorrelationId NOT IN (/*@SPLIT@*/)
UNION ALL
SELECT CorrelationId, min(Start), max(LastStart), max(End), argMaxMerge(LastStage),
       max(Process), max(LegalEntity), max(Region), max(Currency), argMinMerge(Amount),
       max(NotOk), max(LastRetry), max(LastOk), groupArrayArray(Stages), groupArrayArray(FirstEffects),
       groupArrayArray(Effects), groupArrayArray(FirstOks), groupArrayArray(LastOks),
       groupArrayArray(FirstFailures), groupArrayArray(Vendors), groupArrayArray(ObjectMins),
       groupArrayArray(ObjectMaxs), groupArrayArray(AmountAts), groupArrayArray(Amounts)
FROM revtrace_eval_facts
WHERE LastStart >= {horizon:DateTime64(9)} AND Start <= {until:DateTime64(9)} AND /*@SCOPE@*/
  AND CorrelationId IN (/*@SPLIT@*/)
GROUP BY CorrelationId

-- name: facts_split
SELECT CorrelationId FROM revtrace_eval_facts
WHERE LastStart >= {horizon:DateTime64(9)} AND Start <= {until:DateTime64(9)} AND /*@SCOPE@*/
GROUP BY CorrelationId
HAVING count() > 1

-- name: facts_fast
-- The facts of facts_rows' transactions whose every span lies in the window.
-- The others are marked FromSpans and their facts are read from the spans
-- (facts, scope_from_spans): those with a span before the horizon or after
-- {until}, and those the table cannot answer for (/*@AMBIGUOUS@*/: a stage of
-- a key-duplicate rule took effect twice). Stages and the arrays aligned with
-- it hold an entry per stage and insert; Repeats says a stage has more than
-- one, and the per-stage columns then take the min or max over them.
SELECT
    CorrelationId, Process, LegalEntity, Region, Amount, Currency,
    Start AS FirstSeen, End AS LastSeen, LastStage, NotOk, LastRetry, LastOk,
    length(Stages) > length(arrayDistinct(Stages)) AS Repeats,
    (Start < {horizon:DateTime64(9)} OR LastStart > {until:DateTime64(9)} /*@AMBIGUOUS@*/) AS FromSpans
    /*@COLUMNS@*/
FROM (/*@ROWS@*/)

-- name: fast_first_ok
, if(Repeats,
     arrayMin(arrayFilter((t, s) -> s = {st_@i@:String} AND t > toDateTime64(0, 9), FirstEffects, Stages)),
     FirstEffects[indexOf(Stages, {st_@i@:String})]) AS ok_@i@

-- name: fast_amount
-- The end and amount of the stage's first effect with an amount (1970: none).
, if(Repeats,
     arrayMin(arrayFilter((x, s) -> s = {st_@i@:String} AND x.1 > toDateTime64(0, 9), arrayZip(AmountAts, Amounts), Stages)),
     (AmountAts[indexOf(Stages, {st_@i@:String})], Amounts[indexOf(Stages, {st_@i@:String})])) AS amt_at_@i@
    , if(amt_at_@i@.1 > toDateTime64(0, 9), amt_at_@i@.2, NULL) AS amt_@i@

-- name: fast_dup_objects
-- Two different objects for one stage: its smallest object id hash is below
-- its largest (an entry that saw no object has 0 for both).
, if(Repeats,
     arrayExists(st -> arrayMin(arrayFilter((lo, hi, s) -> s = st AND hi > 0, ObjectMins, ObjectMaxs, Stages))
                       < arrayMax(arrayFilter((hi, s) -> s = st, ObjectMaxs, Stages)),
                 {dup_stages:Array(String)}),
     arrayExists((s, lo, hi) -> lo < hi AND has({dup_stages:Array(String)}, s), Stages, ObjectMins, ObjectMaxs)) AS dup_objects

-- name: fast_dup_key
-- A key applied twice needs two effects of the stage; with two, the spans decide.
, false AS dup_@i@

-- name: fast_ambiguous_key
OR if(Repeats,
      arraySum(arrayFilter((n, s) -> s = {dup_@i@:String}, Effects, Stages)),
      Effects[indexOf(Stages, {dup_@i@:String})]) > 1

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
-- (/*@SCRATCH@*/, Memory engine, dropped after the pass, on the node this
-- session talks to: every query that reads it from the shards says GLOBAL),
-- with Dirty saying whether something may be wrong with it. A FromSpans row
-- holds no facts: its transaction's row is added by insert_from_spans. Facts
-- keeps what decided Dirty; computing it for the table first also makes
-- ClickHouse compute each fact once (a fact used only inside the lazily
-- evaluated OR would be computed again for every condition naming it).
CREATE TABLE /*@SCRATCH@*/ ENGINE = Memory AS
SELECT CorrelationId, Process, LegalEntity, Region, Amount, Currency, FirstSeen, LastSeen, LastStage,
       ((/*@DIRTY@*/) OR has({extra:Array(String)}, CorrelationId)) AS Dirty,
       toUInt8(/*@FROM_SPANS@*/) AS FromSpans,
       tuple(/*@NAMES@*/) AS Facts
FROM (/*@FACTS@*/)

-- name: facts_schema
-- When the span table (0003) and the facts table (0102) were created.
SELECT version, max(applied_at) FROM revtrace_schema_migrations
WHERE version IN ({spans_version:String}, {facts_version:String})
GROUP BY version

-- name: count_from_spans
SELECT count() FROM /*@SCRATCH@*/ WHERE FromSpans

-- name: insert_from_spans
-- The facts of the FromSpans candidates, from their spans.
INSERT INTO /*@SCRATCH@*/
    (CorrelationId, Process, LegalEntity, Region, Amount, Currency, FirstSeen, LastSeen, LastStage, Dirty, FromSpans, Facts)
SELECT CorrelationId, Process, LegalEntity, Region, Amount, Currency, FirstSeen, LastSeen, LastStage,
       ((/*@DIRTY@*/) OR has({extra:Array(String)}, CorrelationId)) AS Dirty,
       toUInt8(0) AS FromSpans,
       tuple(/*@NAMES@*/) AS Facts
FROM (/*@FACTS@*/)

-- name: insert_clean
-- Transactions nothing is wrong with and nothing is pending for: ok, written
-- server-side without a round trip. One row per transaction: the
-- ReplacingMergeTree has nothing to replace within the insert, so it skips
-- the merge on insert (a third of the insert's time on a cold start).
INSERT INTO revtrace_transactions
    (CorrelationId, Process, LegalEntity, Region, Status, Category, Severity, Reason, Evidence,
     FirstSeen, LastSeen, LastStage, Amount, Currency, Rules, EvaluatedAt)
SETTINGS optimize_on_insert = 0
SELECT CorrelationId, Process, LegalEntity, Region, /*@STATUS_OK@*/, '', '', '', '{}',
       FirstSeen, LastSeen, LastStage, Amount, Currency, [], {now:DateTime64(3)}
FROM /*@SCRATCH@*/
WHERE NOT Dirty AND NOT FromSpans

-- name: count_clean
SELECT countIf(NOT Dirty AND NOT FromSpans) FROM /*@SCRATCH@*/

-- name: dirty_spans
-- Every span of the transactions something may be wrong with (GLOBAL: the
-- scratch table is on this node only). /*@KEYS@*/ is IdempotencyKey, or ''
-- when no rule compares idempotency keys (the column is the widest to read).
SELECT
    CorrelationId, Process, LegalEntity, Region, Stage, System, Vendor,
    toUnixTimestamp64Nano(Timestamp) AS StartNs, toUnixTimestamp64Nano(EndTimestamp) AS EndNs,
    Outcome, StatusCode, ErrorCategory, ErrorCode, ErrorType, HttpStatusCode, Attempt,
    ObjectType, ObjectId, /*@KEYS@*/, EventId, EventSequence, Amount, Currency, SpanId
FROM revtrace_spans
WHERE Timestamp >= {horizon:DateTime64(9)}
  AND Timestamp <= {until:DateTime64(9)}
  AND CorrelationId GLOBAL IN (
      SELECT CorrelationId FROM /*@SCRATCH@*/ WHERE Dirty AND NOT FromSpans
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
