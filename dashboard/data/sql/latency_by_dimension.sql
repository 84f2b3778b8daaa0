-- A stage pair per legal entity or per vendor of the second stage.
WITH pairs AS (/*@pair_base*/)
SELECT
    if({dimension:String} = 'vendor', vendor, entity) AS key,
    countIf(has_to) AS completed,
    quantilesIf(0.5, 0.95, 0.99)(seconds, has_to) AS q,
    q[1] AS p50,
    q[2] AS p95,
    q[3] AS p99,
    countIf(has_to AND seconds > {sla:Float64}) AS breaches,
    countIf(NOT has_to) AS waiting
FROM pairs
GROUP BY key
ORDER BY breaches DESC, p95 DESC
LIMIT 100
