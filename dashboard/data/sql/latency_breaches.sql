-- A stage pair's worst transactions: completed past the SLA, or still waiting past it.
WITH pairs AS (/*@pair_base*/)
SELECT
    CorrelationId AS correlation_id,
    entity,
    vendor,
    t_from,
    if(has_to, t_to, NULL) AS t_to,
    if(has_to, seconds,
       (toUnixTimestamp64Nano({now:DateTime64(9)}) - toUnixTimestamp64Nano(t_from)) / 1e9) AS seconds,
    if(has_to, 'breached', 'waiting') AS state
FROM pairs
WHERE (has_to AND seconds > {sla:Float64})
   OR (NOT has_to AND t_from < {now:DateTime64(9)} - toIntervalMillisecond(toUInt64({sla:Float64} * 1000)))
ORDER BY seconds DESC
LIMIT {limit:UInt32}
