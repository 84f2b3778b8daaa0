-- The evaluator's verdict on given transactions.
SELECT
    CorrelationId AS correlation_id,
    Process AS process,
    LegalEntity AS entity,
    Status AS status,
    Category AS category,
    Severity AS severity,
    Reason AS reason,
    Evidence AS evidence,
    FirstSeen AS first_seen,
    LastSeen AS last_seen,
    LastStage AS last_stage,
    toString(Amount) AS amount,
    Currency AS currency,
    Rules AS rules,
    EvaluatedAt AS evaluated_at
FROM revtrace_transactions FINAL
WHERE CorrelationId IN {correlation_ids:Array(String)}
LIMIT {limit:UInt32}
