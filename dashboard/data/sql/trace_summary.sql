-- One transaction's summary (the first hop of every trace lookup).
SELECT
    CorrelationId AS correlation_id,
    min(Start) AS start,
    max(End) AS end,
    max(Process) AS process,
    max(LegalEntity) AS entity,
    sum(Spans) AS spans,
    sum(FailedSpans) AS failed_spans,
    groupUniqArrayArray(Stages) AS stages
FROM revtrace_correlations
WHERE CorrelationId = {correlation_id:String}
GROUP BY CorrelationId
