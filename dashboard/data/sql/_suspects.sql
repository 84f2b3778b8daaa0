-- Transactions of the window with a span whose outcome is failed.
SELECT CorrelationId
FROM revtrace_spans
WHERE /*@window*/ AND /*@outcome*/ IN {failed_outcomes:Array(String)}
