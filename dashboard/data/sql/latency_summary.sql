-- A stage pair over the whole window: percentiles, breaches, and transactions
-- still waiting for the second stage past the SLA (stuck between the two).
WITH pairs AS (/*@pair_base*/)
SELECT
    countIf(has_to) AS completed,
    quantilesIf(0.5, 0.95, 0.99)(seconds, has_to) AS q,
    q[1] AS p50,
    q[2] AS p95,
    q[3] AS p99,
    countIf(has_to AND seconds > {sla:Float64}) AS breaches,
    countIf(NOT has_to AND t_from < {now:DateTime64(9)} - toIntervalMillisecond(toUInt64({sla:Float64} * 1000))) AS waiting_past_sla,
    countIf(NOT has_to) AS waiting
FROM pairs
