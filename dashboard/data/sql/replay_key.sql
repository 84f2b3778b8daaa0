-- The idempotency key a replay reuses: the failed step's, else the transaction's last one.
SELECT
    argMaxIf(IdempotencyKey, Timestamp,
             IdempotencyKey != '' AND /*@outcome*/ IN {failed_outcomes:Array(String)}) AS failed_key,
    argMaxIf(IdempotencyKey, Timestamp, IdempotencyKey != '') AS last_key
FROM revtrace_spans
WHERE CorrelationId = {correlation_id:String}
