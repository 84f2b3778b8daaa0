-- Customer sync: the final outcome of every customer upsert (one per transaction
-- and stage), bucketed by when it started. Still-retrying upserts are pending.
SELECT
    bucket,
    countIf(final IN {ok_outcomes:Array(String)}) AS ok,
    countIf(final IN {failed_outcomes:Array(String)}) AS failed,
    count() - ok - failed AS pending
FROM (
    SELECT
        CorrelationId,
        Stage,
        toStartOfInterval(min(Timestamp), toIntervalSecond({step:UInt32})) AS bucket,
        argMax(/*@outcome*/, Timestamp) AS final,
        max(LegalEntity) AS entity
    FROM revtrace_spans
    WHERE /*@window*/
      AND Stage IN {customer_stages:Array(String)}
    GROUP BY CorrelationId, Stage
)
WHERE {entity:String} = '' OR entity = {entity:String}
GROUP BY bucket
ORDER BY bucket
