-- Other transactions that touched the same business objects (identity stitching
-- through object references).
SELECT
    CorrelationId AS correlation_id,
    groupUniqArray(Ref) AS shared_refs,
    min(FirstSeen) AS first_seen,
    max(LastSeen) AS last_seen
FROM revtrace_object_refs
WHERE Ref IN {refs:Array(String)}
  AND CorrelationId != {correlation_id:String}
GROUP BY CorrelationId
ORDER BY first_seen
LIMIT {limit:UInt32}
