-- Reconciliation exceptions: items that are not ok in each rule's latest run of the window.
SELECT count() AS exceptions, uniqExact(Rule) AS rules
FROM revtrace_recon_items
WHERE RunId IN (
    SELECT argMax(RunId, StartedAt)
    FROM revtrace_recon_runs
    WHERE StartedAt >= {start:DateTime64(9)} AND StartedAt < {end:DateTime64(9)}
    GROUP BY Rule
)
  AND Status != {recon_ok:String}
  AND ({entity:String} = '' OR LegalEntity = {entity:String})
