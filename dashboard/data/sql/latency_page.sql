-- Everything the latency page shows about one stage pair, in one pass:
-- part = 'bucket' (percentile bands over time, by when the second stage ended),
-- 'entity', 'vendor', 'bin' (the distribution; bins of {bin} seconds, the last
-- one open-ended) and 'total' (with the worst transactions: completed past the
-- SLA, or still waiting past it).
WITH pairs AS (
    SELECT
        *,
        if(has_to, seconds,
           (toUnixTimestamp64Nano({now:DateTime64(9)}) - toUnixTimestamp64Nano(t_from)) / 1e9) AS age_s,
        (has_to AND seconds > {sla:Float64}) OR (NOT has_to AND age_s > {sla:Float64}) AS late
    FROM (/*@pair_base*/)
)
SELECT
    multiIf(grouping(bucket, entity, vendor, bin) = 7, 'bucket',
            grouping(bucket, entity, vendor, bin) = 11, 'entity',
            grouping(bucket, entity, vendor, bin) = 13, 'vendor',
            grouping(bucket, entity, vendor, bin) = 14, 'bin',
            'total') AS part,
    if(has_to, toStartOfInterval(t_to, toIntervalSecond({step:UInt32})), toDateTime64(0, 9)) AS bucket,
    entity,
    vendor,
    if(has_to, least(toUInt32(floor(seconds / {bin:Float64})), {max_bin:UInt32}), 4294967295) AS bin,
    countIf(has_to) AS completed,
    quantilesIf(0.5, 0.95, 0.99)(seconds, has_to) AS q,
    q[1] AS p50,
    q[2] AS p95,
    q[3] AS p99,
    maxIf(seconds, has_to) AS worst,
    countIf(has_to AND seconds > {sla:Float64}) AS breaches,
    countIf(NOT has_to) AS waiting,
    countIf(NOT has_to AND age_s > {sla:Float64}) AS waiting_past_sla,
    arraySlice(
        arrayReverseSort(x -> x.6, groupArrayIf(
            (correlation_id, entity, vendor, t_from, if(has_to, 'breached', 'waiting'), age_s), late)),
        1, {limit:UInt32}) AS late_list
FROM pairs
GROUP BY GROUPING SETS ((bucket), (entity), (vendor), (bin), ())
ORDER BY part, bucket, entity, vendor, bin
