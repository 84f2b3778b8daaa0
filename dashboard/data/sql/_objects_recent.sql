-- Objects scope 'recent': only the newest transactions of the window.
AND CorrelationId IN (
    SELECT CorrelationId FROM revtrace_correlations
    WHERE Start >= {start:DateTime64(9)} AND Start < {end:DateTime64(9)}
    ORDER BY Start DESC
    LIMIT {recent:UInt32}
)
