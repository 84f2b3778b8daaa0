-- Alerts per category and status in the window, for the overview and the alerts page.
SELECT Category AS category, Status AS status, count() AS alerts, sum(length(CorrelationIds)) AS affected
FROM revtrace_alerts FINAL
WHERE StartsAt < {end:DateTime64(9)}
  AND (EndsAt IS NULL OR EndsAt >= {start:DateTime64(9)})
  AND ({entity:String} = '' OR Labels[{label_entity:String}] = {entity:String})
GROUP BY category, status
ORDER BY category, status
