-- Reconciliation runs started in the window, newest first.
SELECT
    RunId AS run_id,
    Rule AS rule,
    StartedAt AS started_at,
    FinishedAt AS finished_at,
    Periods AS periods,
    Status AS status,
    Items AS items,
    Exceptions AS exceptions,
    Error AS error
FROM revtrace_recon_runs
WHERE StartedAt >= {start:DateTime64(9)} AND StartedAt < {end:DateTime64(9)}
ORDER BY StartedAt DESC
LIMIT {limit:UInt32}
