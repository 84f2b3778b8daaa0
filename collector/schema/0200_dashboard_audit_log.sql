-- The dashboard workbench's audit log: append-only and hash-chained
-- (dashboard/audit.py). One row per operator action (replay, resolve, assign)
-- or audit export. Record is the canonical JSON the hash covers; the typed
-- columns beside it are for querying and are checked against it by
-- `revtrace audit verify`. No TTL: the trail is kept as long as the database.
CREATE TABLE IF NOT EXISTS revtrace_audit_log ${ON_CLUSTER} (
    Seq UInt64,
    At DateTime64(6, 'UTC'),
    Actor String,
    Role LowCardinality(String),
    Action LowCardinality(String),
    CorrelationId String,
    Note String,
    Details String,
    Record String,
    PrevHash String,
    Hash String,
    INDEX idx_correlation CorrelationId TYPE bloom_filter(0.01) GRANULARITY 1
) ENGINE = ${ENGINE:MergeTree}
ORDER BY Seq
SETTINGS index_granularity = 1024;
