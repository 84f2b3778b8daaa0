-- Business tables, filled by materialized views on otel_traces, so they fill
-- whoever writes the spans (revtrace's collector or the official one).
-- ${attr:NAME} is the value of tracer.semconv.NAME: the attribute names are
-- spelled once, in Python.

-- One row per business span: the typed biz.* attributes.
-- Sorted by correlation id: fetching one transaction is a primary-key lookup
-- per partition, and per-transaction aggregation reads in key order.
CREATE TABLE IF NOT EXISTS revtrace_spans ${ON_CLUSTER} (
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    EndTimestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    ParentSpanId String CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    SpanName LowCardinality(String) CODEC(ZSTD(1)),
    SpanKind LowCardinality(String) CODEC(ZSTD(1)),
    CorrelationId String CODEC(ZSTD(1)),
    Process LowCardinality(String) CODEC(ZSTD(1)),
    Stage LowCardinality(String) CODEC(ZSTD(1)),
    System LowCardinality(String) CODEC(ZSTD(1)),
    Vendor LowCardinality(String) CODEC(ZSTD(1)),
    ObjectType LowCardinality(String) CODEC(ZSTD(1)),
    ObjectId String CODEC(ZSTD(1)),
    ObjectRefs Array(String) CODEC(ZSTD(1)),
    LegalEntity LowCardinality(String) CODEC(ZSTD(1)),
    Region LowCardinality(String) CODEC(ZSTD(1)),
    Amount Nullable(Decimal(18, 4)) CODEC(ZSTD(1)),
    Currency LowCardinality(String) CODEC(ZSTD(1)),
    IdempotencyKey String CODEC(ZSTD(1)),
    Attempt UInt16 CODEC(ZSTD(1)),
    EventId String CODEC(ZSTD(1)),
    EventSequence Nullable(Int64) CODEC(ZSTD(1)),
    EventOccurredAt Nullable(DateTime64(3)) CODEC(ZSTD(1)),
    Outcome LowCardinality(String) CODEC(ZSTD(1)),
    ErrorCategory LowCardinality(String) CODEC(ZSTD(1)),
    ErrorCode String CODEC(ZSTD(1)),
    ErrorType String CODEC(ZSTD(1)),
    HttpStatusCode UInt16 CODEC(ZSTD(1)),
    StatusCode LowCardinality(String) CODEC(ZSTD(1)),
    StatusMessage String CODEC(ZSTD(1)),
    Duration UInt64 CODEC(T64, ZSTD(1)),
    PayloadCount UInt16 CODEC(ZSTD(1)),
    INDEX idx_object_id ObjectId TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_idempotency IdempotencyKey TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_stage Stage TYPE set(256) GRANULARITY 4
) ENGINE = ${ENGINE:MergeTree}
PARTITION BY toDate(Timestamp)
ORDER BY (CorrelationId, Timestamp)
${TTL:toDateTime(Timestamp)}
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1, non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS revtrace_spans_mv ${ON_CLUSTER}
TO revtrace_spans
AS SELECT
    Timestamp,
    fromUnixTimestamp64Nano(toUnixTimestamp64Nano(Timestamp) + toInt64(Duration)) AS EndTimestamp,
    TraceId,
    SpanId,
    ParentSpanId,
    ServiceName,
    SpanName,
    SpanKind,
    SpanAttributes['${attr:BIZ_CORRELATION_ID}'] AS CorrelationId,
    SpanAttributes['${attr:BIZ_PROCESS}'] AS Process,
    SpanAttributes['${attr:BIZ_STAGE}'] AS Stage,
    if(SpanAttributes['${attr:BIZ_SYSTEM}'] != '', SpanAttributes['${attr:BIZ_SYSTEM}'],
       splitByChar('.', SpanAttributes['${attr:BIZ_STAGE}'])[1]) AS System,
    SpanAttributes['${attr:BIZ_SYSTEM_VENDOR}'] AS Vendor,
    if(SpanAttributes['${attr:BIZ_OBJECT_TYPE}'] != '', SpanAttributes['${attr:BIZ_OBJECT_TYPE}'],
       if(length(splitByChar('.', SpanAttributes['${attr:BIZ_STAGE}'])) = 3,
          splitByChar('.', SpanAttributes['${attr:BIZ_STAGE}'])[2], '')) AS ObjectType,
    SpanAttributes['${attr:BIZ_OBJECT_ID}'] AS ObjectId,
    if(isValidJSON(SpanAttributes['${attr:BIZ_OBJECT_REFS}']),
       JSONExtract(SpanAttributes['${attr:BIZ_OBJECT_REFS}'], 'Array(String)'),
       arrayFilter(x -> x != '', [SpanAttributes['${attr:BIZ_OBJECT_REFS}']])) AS ObjectRefs,
    SpanAttributes['${attr:BIZ_LEGAL_ENTITY}'] AS LegalEntity,
    SpanAttributes['${attr:BIZ_REGION}'] AS Region,
    toDecimal64OrNull(SpanAttributes['${attr:BIZ_AMOUNT}'], 4) AS Amount,
    SpanAttributes['${attr:BIZ_CURRENCY}'] AS Currency,
    SpanAttributes['${attr:BIZ_IDEMPOTENCY_KEY}'] AS IdempotencyKey,
    toUInt16OrZero(SpanAttributes['${attr:BIZ_ATTEMPT}']) AS Attempt,
    SpanAttributes['${attr:BIZ_EVENT_ID}'] AS EventId,
    toInt64OrNull(SpanAttributes['${attr:BIZ_EVENT_SEQUENCE}']) AS EventSequence,
    parseDateTime64BestEffortOrNull(SpanAttributes['${attr:BIZ_EVENT_OCCURRED_AT}'], 3, 'UTC') AS EventOccurredAt,
    SpanAttributes['${attr:BIZ_OUTCOME}'] AS Outcome,
    SpanAttributes['${attr:BIZ_ERROR_CATEGORY}'] AS ErrorCategory,
    SpanAttributes['${attr:BIZ_ERROR_CODE}'] AS ErrorCode,
    SpanAttributes['error.type'] AS ErrorType,
    toUInt16OrZero(if(SpanAttributes['http.response.status_code'] != '',
                      SpanAttributes['http.response.status_code'],
                      SpanAttributes['http.status_code'])) AS HttpStatusCode,
    StatusCode,
    StatusMessage,
    Duration,
    toUInt16(countEqual(Events.Name, '${attr:EVENT_PAYLOAD}')) AS PayloadCount
FROM otel_traces
WHERE SpanAttributes['${attr:BIZ_CORRELATION_ID}'] != '';

-- Correlation id → time range and a summary, like otel_traces_trace_id_ts:
-- the first hop of every trace lookup and the transaction list.
CREATE TABLE IF NOT EXISTS revtrace_correlations ${ON_CLUSTER} (
    CorrelationId String CODEC(ZSTD(1)),
    Start SimpleAggregateFunction(min, DateTime64(9)) CODEC(ZSTD(1)),
    End SimpleAggregateFunction(max, DateTime64(9)) CODEC(ZSTD(1)),
    Process SimpleAggregateFunction(max, String) CODEC(ZSTD(1)),
    LegalEntity SimpleAggregateFunction(max, String) CODEC(ZSTD(1)),
    Spans SimpleAggregateFunction(sum, UInt64) CODEC(ZSTD(1)),
    FailedSpans SimpleAggregateFunction(sum, UInt64) CODEC(ZSTD(1)),
    Stages SimpleAggregateFunction(groupUniqArrayArray, Array(String)) CODEC(ZSTD(1))
) ENGINE = ${ENGINE:AggregatingMergeTree}
PARTITION BY toStartOfWeek(Start)
ORDER BY (CorrelationId)
${TTL:toDateTime(Start)}
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1, non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS revtrace_correlations_mv ${ON_CLUSTER}
TO revtrace_correlations
AS SELECT
    CorrelationId,
    min(Timestamp) AS Start,
    max(EndTimestamp) AS End,
    toString(max(Process)) AS Process,
    toString(max(LegalEntity)) AS LegalEntity,
    toUInt64(count()) AS Spans,
    toUInt64(countIf(Outcome = 'failed' OR StatusCode = 'Error')) AS FailedSpans,
    groupUniqArray(toString(Stage)) AS Stages
FROM revtrace_spans
GROUP BY CorrelationId;

-- Object references for identity stitching: every id a business object has in
-- any system (`crm:opportunity/006…`, `billing:invoice/in_…`) → the
-- correlation ids that touched it.
CREATE TABLE IF NOT EXISTS revtrace_object_refs ${ON_CLUSTER} (
    Ref String CODEC(ZSTD(1)),
    CorrelationId String CODEC(ZSTD(1)),
    FirstSeen SimpleAggregateFunction(min, DateTime64(9)) CODEC(ZSTD(1)),
    LastSeen SimpleAggregateFunction(max, DateTime64(9)) CODEC(ZSTD(1))
) ENGINE = ${ENGINE:AggregatingMergeTree}
PARTITION BY toStartOfMonth(FirstSeen)
ORDER BY (Ref, CorrelationId)
${TTL:toDateTime(FirstSeen)}
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1, non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS revtrace_object_refs_mv ${ON_CLUSTER}
TO revtrace_object_refs
AS SELECT
    Ref,
    CorrelationId,
    min(Timestamp) AS FirstSeen,
    max(Timestamp) AS LastSeen
FROM revtrace_spans
ARRAY JOIN arrayDistinct(arrayConcat(
    if(ObjectId != '' AND ObjectType != '', [concat(System, ':', ObjectType, '/', ObjectId)], []),
    ObjectRefs)) AS Ref
WHERE Ref != ''
GROUP BY Ref, CorrelationId;
