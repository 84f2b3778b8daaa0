-- The evaluator's per-transaction facts (owned by sla_rules; see docs/evaluator.md):
-- what a transactions pass needs to know of every span of a transaction, kept
-- up to date at ingest time by a materialized view on revtrace_spans, so a
-- cycle reads one row per transaction instead of aggregating all its spans.
--
-- One row per correlation id and insert (AggregatingMergeTree: the rows of one
-- transaction merge in the background; a reader merges what is left with
-- FINAL). Every fact is a min, max, argMin, argMax or a concatenation read
-- back with min/max, so inserting the same spans twice changes no fact: the
-- evaluator's back-fill of the spans written before this view existed may
-- overlap the view and may be re-run. (Effects, a count, only says whether a
-- stage took effect more than once; the evaluator then reads the spans.)
--
-- The outcome expressions are sla_rules._queries' OK, EFFECT, FINAL_FAILURE
-- and RETRYING markers, spelled out (tests/sla_rules/test_facts.py checks).
CREATE TABLE IF NOT EXISTS revtrace_eval_facts ${ON_CLUSTER} (
    CorrelationId String CODEC(ZSTD(1)),
    Start SimpleAggregateFunction(min, DateTime64(9)) CODEC(Delta(8), ZSTD(1)),
    LastStart SimpleAggregateFunction(max, DateTime64(9)) CODEC(Delta(8), ZSTD(1)),
    End SimpleAggregateFunction(max, DateTime64(9)) CODEC(Delta(8), ZSTD(1)),
    LastStage AggregateFunction(argMax, String, DateTime64(9)) CODEC(ZSTD(1)),
    Process SimpleAggregateFunction(max, String) CODEC(ZSTD(1)),
    LegalEntity SimpleAggregateFunction(max, String) CODEC(ZSTD(1)),
    Region SimpleAggregateFunction(max, String) CODEC(ZSTD(1)),
    Currency SimpleAggregateFunction(max, String) CODEC(ZSTD(1)),
    Amount AggregateFunction(argMin, Nullable(Decimal(18, 4)), DateTime64(9)) CODEC(ZSTD(1)),
    NotOk SimpleAggregateFunction(max, UInt8) CODEC(ZSTD(1)),
    LastRetry SimpleAggregateFunction(max, DateTime64(9)) CODEC(ZSTD(1)),
    LastOk SimpleAggregateFunction(max, DateTime64(9)) CODEC(ZSTD(1)),
    Stages SimpleAggregateFunction(groupArrayArray, Array(String)) CODEC(ZSTD(1)),
    FirstEffects SimpleAggregateFunction(groupArrayArray, Array(DateTime64(9))) CODEC(ZSTD(1)),
    Effects SimpleAggregateFunction(groupArrayArray, Array(UInt32)) CODEC(ZSTD(1)),
    FirstOks SimpleAggregateFunction(groupArrayArray, Array(DateTime64(9))) CODEC(ZSTD(1)),
    LastOks SimpleAggregateFunction(groupArrayArray, Array(DateTime64(9))) CODEC(ZSTD(1)),
    FirstFailures SimpleAggregateFunction(groupArrayArray, Array(DateTime64(9))) CODEC(ZSTD(1)),
    Vendors SimpleAggregateFunction(groupArrayArray, Array(String)) CODEC(ZSTD(1)),
    ObjectMins SimpleAggregateFunction(groupArrayArray, Array(UInt64)) CODEC(ZSTD(1)),
    ObjectMaxs SimpleAggregateFunction(groupArrayArray, Array(UInt64)) CODEC(ZSTD(1)),
    AmountAts SimpleAggregateFunction(groupArrayArray, Array(DateTime64(9))) CODEC(ZSTD(1)),
    Amounts SimpleAggregateFunction(groupArrayArray, Array(Decimal(18, 4))) CODEC(ZSTD(1))
) ENGINE = ${ENGINE:AggregatingMergeTree}
PARTITION BY toDate(LastStart)
ORDER BY CorrelationId
${TTL:toDateTime(LastStart)}
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1, non_replicated_deduplication_window = 10000;

-- Stages has one entry per stage of an insert, in stage order; the other
-- arrays are aligned with it (a merged row has the entries of every insert
-- it merged, so a stage may have several). Per entry: the end of the stage's
-- first span that took effect (1970: none) and how many did; the end of its
-- first and last span that did not fail, of its first that failed for good;
-- its vendor; the smallest and largest hash of the object ids its effects
-- named (two objects when they differ; 0: none); the end and amount of its
-- first effect with an amount (1970: none). A span of `steps` is (stage, end,
-- effect, ok, final failure, vendor, object id hash or 0, amount).
CREATE MATERIALIZED VIEW IF NOT EXISTS revtrace_eval_facts_mv ${ON_CLUSTER}
TO revtrace_eval_facts
AS SELECT
    CorrelationId, Start, LastStart, End, LastStage, Process, LegalEntity, Region, Currency,
    FirstAmount AS Amount, NotOk, LastRetry, LastOk,
    arrayMap(g -> g[1].1, steps) AS Stages,
    arrayMap(g -> arrayMin(arrayFilter(x -> x.3, g).2), steps) AS FirstEffects,
    arrayMap(g -> toUInt32(arrayCount(x -> x.3, g)), steps) AS Effects,
    arrayMap(g -> arrayMin(arrayFilter(x -> x.4, g).2), steps) AS FirstOks,
    arrayMap(g -> arrayMax(arrayFilter(x -> x.4, g).2), steps) AS LastOks,
    arrayMap(g -> arrayMin(arrayFilter(x -> x.5, g).2), steps) AS FirstFailures,
    arrayMap(g -> arrayMax(g.6), steps) AS Vendors,
    arrayMap(g -> arrayMin(arrayFilter(x -> x.3 AND x.7 != 0, g).7), steps) AS ObjectMins,
    arrayMap(g -> arrayMax(arrayFilter(x -> x.3, g).7), steps) AS ObjectMaxs,
    arrayMap(g -> arrayMin(arrayFilter(x -> x.3 AND x.8 IS NOT NULL, g).2), steps) AS AmountAts,
    arrayMap(g -> assumeNotNull(arrayMin(arrayMap(x -> (x.2, x.8), arrayFilter(x -> x.3 AND x.8 IS NOT NULL, g))).2), steps) AS Amounts
FROM (
    SELECT
        CorrelationId,
        min(Timestamp) AS Start,
        max(Timestamp) AS LastStart,
        max(EndTimestamp) AS End,
        argMaxState(toString(Stage), EndTimestamp) AS LastStage,
        max(toString(Process)) AS Process,
        max(toString(LegalEntity)) AS LegalEntity,
        max(toString(Region)) AS Region,
        max(toString(Currency)) AS Currency,
        argMinState(Amount, Timestamp) AS FirstAmount,
        max(NOT (Outcome IN ('ok', '', 'skipped_duplicate', 'compensated') AND NOT (Outcome = '' AND StatusCode = 'Error')) AND Outcome != 'retrying') AS NotOk,
        maxIf(EndTimestamp, Outcome = 'retrying') AS LastRetry,
        maxIf(EndTimestamp, (Outcome IN ('ok', '', 'skipped_duplicate', 'compensated') AND NOT (Outcome = '' AND StatusCode = 'Error'))) AS LastOk,
        arraySort(groupArray((
            toString(Stage),
            EndTimestamp,
            (Outcome IN ('ok', '') AND StatusCode != 'Error'),
            (Outcome IN ('ok', '', 'skipped_duplicate', 'compensated') AND NOT (Outcome = '' AND StatusCode = 'Error')),
            (Outcome IN ('failed', 'dead_lettered', 'parked') OR (Outcome = '' AND StatusCode = 'Error')),
            toString(Vendor),
            if(ObjectId = '', 0, cityHash64(ObjectId)),
            Amount))) AS spans,
        arraySplit((x, first) -> first, spans, arrayMap((x, i) -> i = 1 OR x.1 != spans[i - 1].1, spans, arrayEnumerate(spans))) AS steps
    FROM revtrace_spans
    GROUP BY CorrelationId
);
