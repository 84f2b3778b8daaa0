-- Overview: how much arrived in the window, and how fresh it is.
SELECT
    count() AS spans,
    uniqExact(CorrelationId) AS transactions,
    countIf(/*@outcome*/ IN {failed_outcomes:Array(String)}) AS failed_spans,
    countIf(Attempt > 1) AS retried_spans,
    max(Timestamp) AS last_span
FROM revtrace_spans
WHERE /*@window*/
  AND ({entity:String} = '' OR LegalEntity = {entity:String})
