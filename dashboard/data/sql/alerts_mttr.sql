-- Mean time to resolve: alerts resolved in the window, from start to end.
SELECT
    count() AS resolved,
    avg(dateDiff('millisecond', StartsAt, assumeNotNull(EndsAt)) / 1000) AS mttr_s,
    toStartOfInterval(assumeNotNull(EndsAt), toIntervalSecond({step:UInt32})) AS bucket
FROM revtrace_alerts FINAL
WHERE Status = {alert_resolved:String}
  AND EndsAt IS NOT NULL
  AND EndsAt >= {start:DateTime64(9)} AND EndsAt < {end:DateTime64(9)}
  AND ({entity:String} = '' OR Labels[{label_entity:String}] = {entity:String})
GROUP BY bucket
ORDER BY bucket
