-- The evaluator's change feed (owned by sla_rules; see docs/evaluator.md): every
-- correlation id written to revtrace_spans, with the store's time of the write.
-- A tick re-evaluates what was written since its last run, so a span that
-- arrives late (its own timestamp long past) is still seen.
CREATE TABLE IF NOT EXISTS revtrace_eval_changes ${ON_CLUSTER} (
    IngestedAt DateTime64(3) CODEC(Delta(8), ZSTD(1)),
    CorrelationId String CODEC(ZSTD(1)),
    Start DateTime64(9) CODEC(Delta(8), ZSTD(1))
) ENGINE = ${ENGINE:MergeTree}
PARTITION BY toDate(IngestedAt)
ORDER BY (IngestedAt, CorrelationId)
TTL toDateTime(IngestedAt) + INTERVAL 3 DAY
SETTINGS ttl_only_drop_parts = 1;

CREATE MATERIALIZED VIEW IF NOT EXISTS revtrace_eval_changes_mv ${ON_CLUSTER}
TO revtrace_eval_changes
AS SELECT
    now64(3) AS IngestedAt,
    CorrelationId,
    min(Timestamp) AS Start
FROM revtrace_spans
GROUP BY CorrelationId;
