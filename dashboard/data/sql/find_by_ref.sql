-- Correlation ids for an object reference (crm:opportunity/006…) or, failing
-- that, for an object id seen on a span in the window.
SELECT correlation_id, max(seen) AS last_seen
FROM (
    SELECT CorrelationId AS correlation_id, max(LastSeen) AS seen
    FROM revtrace_object_refs
    WHERE Ref = {query:String}
    GROUP BY CorrelationId
    UNION ALL
    SELECT CorrelationId AS correlation_id, max(Timestamp) AS seen
    FROM revtrace_spans
    WHERE (ObjectId = {query:String} OR IdempotencyKey = {query:String})
      AND /*@window*/
    GROUP BY CorrelationId
)
GROUP BY correlation_id
ORDER BY last_seen DESC
LIMIT {limit:UInt32}
