-- The items of given reconciliation runs: one comparison of a measure of an object
-- type in a period and legal entity across systems.
SELECT
    RunId AS run_id,
    Rule AS rule,
    CheckedAt AS checked_at,
    Period AS period,
    ObjectType AS object_type,
    LegalEntity AS entity,
    Measure AS measure,
    Systems AS systems,
    Values AS values,
    Difference AS difference,
    Status AS status,
    CorrelationIds AS correlation_ids
FROM revtrace_recon_items
WHERE RunId IN {run_ids:Array(String)}
  AND ({entity:String} = '' OR LegalEntity = {entity:String})
  AND ({status:String} = '' OR Status = {status:String})
ORDER BY Status = {recon_ok:String}, Difference DESC, Period DESC
LIMIT {limit:UInt32}
