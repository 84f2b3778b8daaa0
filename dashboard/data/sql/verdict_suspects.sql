-- Transactions the evaluator judged failed, stuck or mismatched, seen in the window.
SELECT CorrelationId AS correlation_id
FROM revtrace_transactions FINAL
WHERE (Status IN {statuses:Array(String)} OR Category = {category_mismatch:String})
  AND LastSeen >= {start:DateTime64(9)}
LIMIT {limit:UInt32}
