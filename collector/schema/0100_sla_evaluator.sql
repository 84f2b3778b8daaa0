-- The SLA evaluator's tables (owned by sla_rules; documented in docs/evaluator.md).
-- revtrace_transactions and revtrace_alerts are a contract with the dashboard:
-- add columns, never rename or drop one.

-- The evaluator's verdict per transaction; the newest evaluation wins (read with FINAL).
CREATE TABLE IF NOT EXISTS revtrace_transactions ${ON_CLUSTER} (
    CorrelationId String CODEC(ZSTD(1)),
    Process LowCardinality(String) CODEC(ZSTD(1)),
    LegalEntity LowCardinality(String) CODEC(ZSTD(1)),
    Region LowCardinality(String) CODEC(ZSTD(1)),
    Status LowCardinality(String) CODEC(ZSTD(1)),
    Category LowCardinality(String) CODEC(ZSTD(1)),
    Severity LowCardinality(String) CODEC(ZSTD(1)),
    Reason String CODEC(ZSTD(1)),
    Evidence String CODEC(ZSTD(3)),
    FirstSeen DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    LastSeen DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    LastStage LowCardinality(String) CODEC(ZSTD(1)),
    Amount Nullable(Decimal(18, 4)) CODEC(ZSTD(1)),
    Currency LowCardinality(String) CODEC(ZSTD(1)),
    Rules Array(String) CODEC(ZSTD(1)),
    EvaluatedAt DateTime64(3) CODEC(Delta(8), ZSTD(1)),
    Stage LowCardinality(String) CODEC(ZSTD(1)),
    Vendor LowCardinality(String) CODEC(ZSTD(1)),
    Objects Array(String) CODEC(ZSTD(1)),
    INDEX idx_status Status TYPE set(16) GRANULARITY 4,
    INDEX idx_last_seen LastSeen TYPE minmax GRANULARITY 1
) ENGINE = ${ENGINE:ReplacingMergeTree(EvaluatedAt)}
ORDER BY CorrelationId
${TTL:toDateTime(LastSeen)}
SETTINGS index_granularity = 8192;

-- Alert lifecycle: one row per alert (fingerprint); the newest update wins.
CREATE TABLE IF NOT EXISTS revtrace_alerts ${ON_CLUSTER} (
    Fingerprint String CODEC(ZSTD(1)),
    AlertName String CODEC(ZSTD(1)),
    Category LowCardinality(String) CODEC(ZSTD(1)),
    Severity LowCardinality(String) CODEC(ZSTD(1)),
    Status LowCardinality(String) CODEC(ZSTD(1)),
    Labels Map(String, String) CODEC(ZSTD(1)),
    Annotations Map(String, String) CODEC(ZSTD(1)),
    StartsAt DateTime64(3) CODEC(ZSTD(1)),
    EndsAt Nullable(DateTime64(3)) CODEC(ZSTD(1)),
    UpdatedAt DateTime64(3) CODEC(ZSTD(1)),
    CorrelationIds Array(String) CODEC(ZSTD(1)),
    Value Float64 CODEC(ZSTD(1)),
    Rule LowCardinality(String) CODEC(ZSTD(1)),
    SuppressedBy Array(String) CODEC(ZSTD(1))
) ENGINE = ${ENGINE:ReplacingMergeTree(UpdatedAt)}
ORDER BY Fingerprint
SETTINGS index_granularity = 8192;

-- Silences: alerts whose labels match every matcher are suppressed until EndsAt.
CREATE TABLE IF NOT EXISTS revtrace_silences ${ON_CLUSTER} (
    Id String,
    Matchers Map(String, String),
    MatchersRe Map(String, String),
    StartsAt DateTime64(3),
    EndsAt DateTime64(3),
    CreatedBy String,
    Comment String,
    UpdatedAt DateTime64(3)
) ENGINE = ${ENGINE:ReplacingMergeTree(UpdatedAt)}
ORDER BY Id;

-- Aggregation groups: when each (receiver, route, group) was last notified and
-- which firing alerts that notification carried.
CREATE TABLE IF NOT EXISTS revtrace_alert_groups ${ON_CLUSTER} (
    GroupKey String,
    Receiver LowCardinality(String),
    Labels Map(String, String),
    FirstSeenAt DateTime64(3),
    LastNotifiedAt Nullable(DateTime64(3)),
    Notified Array(String),
    Sequence UInt32,
    UpdatedAt DateTime64(3)
) ENGINE = ${ENGINE:ReplacingMergeTree(UpdatedAt)}
ORDER BY GroupKey;

-- The notification outbox: every notification is written here before it is
-- sent, and retried from here until its receiver takes it.
CREATE TABLE IF NOT EXISTS revtrace_notifications ${ON_CLUSTER} (
    Id String,
    GroupKey String,
    Receiver LowCardinality(String),
    Integration LowCardinality(String),
    Kind LowCardinality(String),
    AlertStatus LowCardinality(String),
    Status LowCardinality(String),
    Attempts UInt16,
    NextAttemptAt DateTime64(3),
    LastError String,
    Payload String CODEC(ZSTD(3)),
    Fingerprints Array(String),
    CreatedAt DateTime64(3),
    SentAt Nullable(DateTime64(3)),
    UpdatedAt DateTime64(3)
) ENGINE = ${ENGINE:ReplacingMergeTree(UpdatedAt)}
ORDER BY Id
${TTL:toDateTime(CreatedAt)};

-- Evaluator state: watermarks and per-rule last runs (name → value).
CREATE TABLE IF NOT EXISTS revtrace_evaluator_state ${ON_CLUSTER} (
    Name String,
    Value String,
    UpdatedAt DateTime64(3)
) ENGINE = ${ENGINE:ReplacingMergeTree(UpdatedAt)}
ORDER BY Name;

-- SLO / KPI series: per rule, measure and group, the measured value against its objective.
CREATE TABLE IF NOT EXISTS revtrace_sla_points ${ON_CLUSTER} (
    Time DateTime64(3) CODEC(Delta(8), ZSTD(1)),
    Rule LowCardinality(String),
    Kind LowCardinality(String),
    Measure LowCardinality(String),
    WindowSeconds UInt32,
    Labels Map(String, String),
    Process LowCardinality(String),
    LegalEntity LowCardinality(String),
    Region LowCardinality(String),
    Vendor LowCardinality(String),
    Value Float64,
    Objective Float64,
    Unit LowCardinality(String),
    Good UInt64,
    Total UInt64,
    Breached UInt8
) ENGINE = ${ENGINE:MergeTree}
PARTITION BY toYYYYMM(Time)
ORDER BY (Rule, Measure, Time)
${TTL:toDateTime(Time)};

-- Reconciliation snapshots, typed from the snapshot spans (biz.recon.*).
CREATE TABLE IF NOT EXISTS revtrace_recon_snapshots ${ON_CLUSTER} (
    Timestamp DateTime64(9),
    CorrelationId String,
    Stage LowCardinality(String),
    System LowCardinality(String),
    Vendor LowCardinality(String),
    ObjectType LowCardinality(String),
    Period String,
    LegalEntity LowCardinality(String),
    Currency LowCardinality(String),
    Count Nullable(Int64),
    Amount Nullable(Decimal(18, 4)),
    Statuses Map(String, Int64)
) ENGINE = ${ENGINE:MergeTree}
PARTITION BY toYYYYMM(Timestamp)
ORDER BY (ObjectType, Period, System, Timestamp)
${TTL:toDateTime(Timestamp)};

CREATE MATERIALIZED VIEW IF NOT EXISTS revtrace_recon_snapshots_mv ${ON_CLUSTER}
TO revtrace_recon_snapshots
AS SELECT
    Timestamp,
    SpanAttributes['${attr:BIZ_CORRELATION_ID}'] AS CorrelationId,
    SpanAttributes['${attr:BIZ_STAGE}'] AS Stage,
    if(SpanAttributes['${attr:BIZ_SYSTEM}'] != '', SpanAttributes['${attr:BIZ_SYSTEM}'],
       splitByChar('.', SpanAttributes['${attr:BIZ_STAGE}'])[1]) AS System,
    SpanAttributes['${attr:BIZ_SYSTEM_VENDOR}'] AS Vendor,
    SpanAttributes['${attr:BIZ_OBJECT_TYPE}'] AS ObjectType,
    SpanAttributes['${attr:BIZ_RECON_PERIOD}'] AS Period,
    SpanAttributes['${attr:BIZ_LEGAL_ENTITY}'] AS LegalEntity,
    SpanAttributes['${attr:BIZ_CURRENCY}'] AS Currency,
    toInt64OrNull(SpanAttributes['${attr:BIZ_RECON_COUNT}']) AS Count,
    toDecimal64OrNull(SpanAttributes['${attr:BIZ_RECON_AMOUNT}'], 4) AS Amount,
    if(isValidJSON(SpanAttributes['${attr:BIZ_RECON_STATUSES}']),
       JSONExtract(SpanAttributes['${attr:BIZ_RECON_STATUSES}'], 'Map(String, Int64)'),
       map()) AS Statuses
FROM otel_traces
WHERE SpanAttributes['${attr:BIZ_RECON_PERIOD}'] != '';

-- Reconciliation runs and their items (one per period, object type and measure).
CREATE TABLE IF NOT EXISTS revtrace_recon_runs ${ON_CLUSTER} (
    RunId String,
    Rule LowCardinality(String),
    StartedAt DateTime64(3),
    FinishedAt DateTime64(3),
    Periods Array(String),
    Status LowCardinality(String),
    Items UInt32,
    Exceptions UInt32,
    Error String
) ENGINE = ${ENGINE:MergeTree}
ORDER BY (StartedAt, RunId)
${TTL:toDateTime(StartedAt)};

CREATE TABLE IF NOT EXISTS revtrace_recon_items ${ON_CLUSTER} (
    RunId String,
    Rule LowCardinality(String),
    CheckedAt DateTime64(3),
    Period String,
    ObjectType LowCardinality(String),
    LegalEntity LowCardinality(String),
    Measure LowCardinality(String),
    Systems Array(String),
    Values Array(Float64),
    Difference Float64,
    Status LowCardinality(String),
    CorrelationIds Array(String)
) ENGINE = ${ENGINE:MergeTree}
ORDER BY (Rule, Period, Measure, CheckedAt)
${TTL:toDateTime(CheckedAt)};
