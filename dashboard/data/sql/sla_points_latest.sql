-- The evaluator's latest measurement of every SLA rule, measure and legal entity in the window.
SELECT
    Rule AS rule,
    Measure AS measure,
    Kind AS kind,
    LegalEntity AS entity,
    argMax(Value, Time) AS value,
    argMax(Objective, Time) AS objective,
    argMax(Unit, Time) AS unit,
    argMax(Breached, Time) AS breached,
    max(Time) AS at,
    countIf(Breached = 1) AS breached_points,
    count() AS points
FROM revtrace_sla_points
WHERE Time >= {start:DateTime64(9)} AND Time < {end:DateTime64(9)}
  AND ({entity:String} = '' OR LegalEntity = {entity:String})
GROUP BY rule, measure, kind, entity
ORDER BY breached DESC, rule, measure, entity
LIMIT 300
