-- A stage pair over time: percentile bands and breaches per bucket of the second stage.
WITH pairs AS (/*@pair_base*/)
SELECT
    toStartOfInterval(t_to, toIntervalSecond({step:UInt32})) AS bucket,
    count() AS completed,
    quantiles(0.5, 0.95, 0.99)(seconds) AS q,
    q[1] AS p50,
    q[2] AS p95,
    q[3] AS p99,
    max(seconds) AS worst,
    countIf(seconds > {sla:Float64}) AS breaches
FROM pairs
WHERE has_to
GROUP BY bucket
ORDER BY bucket
