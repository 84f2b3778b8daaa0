-- Duplicate transactions per bucket of their first span. A transaction is
-- duplicated when one idempotency key produced more than one distinct object
-- in a stage (a retry created a second customer), or a span says so
-- (biz.error.category = duplicate). Only transactions with a retried span or
-- such a category can be duplicated, so only those are examined.
SELECT
    toStartOfInterval(first_seen, toIntervalSecond({step:UInt32})) AS bucket,
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
          AND CorrelationId IN (
              SELECT CorrelationId FROM revtrace_spans
              WHERE /*@window*/ AND (Attempt > 1 OR ErrorCategory = {category_duplicate:String})
          )
        GROUP BY CorrelationId, Stage, IdempotencyKey
    )
    GROUP BY CorrelationId
)
WHERE {entity:String} = '' OR entity = {entity:String}
GROUP BY bucket
ORDER BY bucket
