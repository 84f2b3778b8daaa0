-- Alerts active at some point of the window (the evaluator's revtrace_alerts).
SELECT
    Fingerprint AS fingerprint,
    AlertName AS alert,
    Category AS category,
    Severity AS severity,
    Status AS status,
    Labels AS labels,
    Annotations AS annotations,
    StartsAt AS starts_at,
    EndsAt AS ends_at,
    UpdatedAt AS updated_at,
    CorrelationIds AS correlation_ids,
    length(CorrelationIds) AS affected,
    Value AS value
FROM revtrace_alerts FINAL
WHERE StartsAt < {end:DateTime64(9)}
  AND (EndsAt IS NULL OR EndsAt >= {start:DateTime64(9)})
  AND ({category:String} = '' OR Category = {category:String})
  AND ({status:String} = '' OR Status = {status:String})
  AND ({entity:String} = '' OR Labels[{label_entity:String}] = {entity:String})
ORDER BY StartsAt DESC
LIMIT {limit:UInt32}
