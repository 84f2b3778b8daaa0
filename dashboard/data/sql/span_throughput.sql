-- Spans per bucket and system: throughput, failures and retries from the trace data.
SELECT
    toStartOfInterval(Timestamp, toIntervalSecond({step:UInt32})) AS bucket,
    System AS system,
    count() AS spans,
    countIf(/*@outcome*/ IN {failed_outcomes:Array(String)}) AS failed,
    countIf(Attempt > 1) AS retries,
    countIf(ErrorCategory = {category_rate_limited:String}) AS rate_limited
FROM revtrace_spans
WHERE /*@window*/
  AND ({entity:String} = '' OR LegalEntity = {entity:String})
GROUP BY bucket, system
ORDER BY bucket, system
