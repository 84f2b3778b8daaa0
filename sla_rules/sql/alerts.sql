-- Alert lifecycle and notification queries. Sections are named with "-- name:".

-- name: verdict_groups
-- Transactions that need a human, grouped the way alerts are: one alert per
-- deciding rule (or the failure), category, process, legal entity and stage.
SELECT
    if(JSONExtractString(Evidence, 'rule') != '', JSONExtractString(Evidence, 'rule'), {default_name:String}) AS AlertName,
    Status, Category, Severity, Process, LegalEntity, Stage,
    count() AS n,
    arraySlice(groupArray(CorrelationId), 1, {max_ids:UInt32}) AS ids,
    any(Reason) AS reason,
    min(FirstSeen) AS first_seen
FROM revtrace_transactions FINAL
WHERE Status IN /*@BAD_STATUSES@*/ AND LastSeen >= {start:DateTime64(9)}
GROUP BY AlertName, Status, Category, Severity, Process, LegalEntity, Stage
ORDER BY AlertName, Category, Process, LegalEntity, Stage

-- name: open_alerts
-- Alerts not resolved yet (firing or suppressed).
SELECT Fingerprint, AlertName, Category, Severity, Status, Labels, Annotations,
       toUnixTimestamp64Milli(StartsAt) AS StartsMs, Value, CorrelationIds, Rule, SuppressedBy
FROM revtrace_alerts FINAL
WHERE Status != 'resolved'

-- name: recent_alerts
-- Open alerts and those resolved since {since}: what notifications are built from.
SELECT Fingerprint, AlertName, Category, Severity, Status, Labels, Annotations,
       toUnixTimestamp64Milli(StartsAt) AS StartsMs,
       if(EndsAt IS NULL, 0, toUnixTimestamp64Milli(assumeNotNull(EndsAt))) AS EndsMs,
       Value, CorrelationIds, Rule, SuppressedBy
FROM revtrace_alerts FINAL
WHERE Status != 'resolved' OR EndsAt >= {since:DateTime64(3)}

-- name: silences
-- Silences in force at {now}.
SELECT Id, Matchers, MatchersRe, toUnixTimestamp64Milli(EndsAt) AS EndsMs, CreatedBy, Comment
FROM revtrace_silences FINAL
WHERE StartsAt <= {now:DateTime64(3)} AND EndsAt > {now:DateTime64(3)}

-- name: groups
SELECT GroupKey, Receiver, Labels, toUnixTimestamp64Milli(FirstSeenAt) AS FirstMs,
       if(LastNotifiedAt IS NULL, 0, toUnixTimestamp64Milli(assumeNotNull(LastNotifiedAt))) AS LastMs,
       Notified, Sequence
FROM revtrace_alert_groups FINAL

-- name: outbox_ids
SELECT Id FROM revtrace_notifications FINAL WHERE has({ids:Array(String)}, Id)

-- name: outbox_due
-- Notifications not yet delivered, oldest first.
SELECT Id, GroupKey, Receiver, Integration, Kind, AlertStatus, Attempts,
       toUnixTimestamp64Milli(NextAttemptAt) AS NextMs, Payload, Fingerprints,
       toUnixTimestamp64Milli(CreatedAt) AS CreatedMs
FROM revtrace_notifications FINAL
WHERE Status = 'pending'
ORDER BY CreatedAt, Id
LIMIT {limit:UInt32}
