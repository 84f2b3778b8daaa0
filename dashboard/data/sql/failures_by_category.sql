-- Overview: failed spans in the window by failure category ('' = not categorized).
SELECT ErrorCategory AS category, count() AS failed_spans, uniqExact(CorrelationId) AS transactions
FROM revtrace_spans
WHERE /*@window*/
  AND ({entity:String} = '' OR LegalEntity = {entity:String})
  AND /*@outcome*/ IN {failed_outcomes:Array(String)}
GROUP BY category
ORDER BY failed_spans DESC
LIMIT 50
