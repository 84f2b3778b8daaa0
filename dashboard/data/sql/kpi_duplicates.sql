-- Duplicate transactions: a transaction is duplicated when one idempotency key
-- produced more than one distinct object (a retry created a second customer), or
-- a span says so (biz.error.category = duplicate). Bucketed by first span.
SELECT
    toStartOfInterval(first_seen, toIntervalSecond({step:UInt32})) AS bucket,
    count() AS transactions,
    countIf(duplicated) AS duplicated
FROM (
    SELECT CorrelationId, min(first) AS first_seen, max(dup) AS duplicated, max(entity) AS entity
    FROM (
        SELECT
            CorrelationId,
            min(Timestamp) AS first,
            max(LegalEntity) AS entity,
            (IdempotencyKey != ''
                AND uniqExactIf(ObjectId, ObjectId != '' AND /*@outcome*/ = {outcome_ok:String}) > 1)
            OR countIf(ErrorCategory = {category_duplicate:String}) > 0 AS dup
        FROM revtrace_spans
        WHERE /*@window*/
        GROUP BY CorrelationId, Stage, IdempotencyKey
    )
    GROUP BY CorrelationId
)
WHERE {entity:String} = '' OR entity = {entity:String}
GROUP BY bucket
ORDER BY bucket
