-- One transaction's spans in time order: the waterfall.
SELECT
    Timestamp AS start,
    EndTimestamp AS end,
    Duration / 1e6 AS duration_ms,
    TraceId AS trace_id,
    SpanId AS span_id,
    ParentSpanId AS parent_span_id,
    ServiceName AS service,
    SpanName AS span_name,
    Process AS process,
    Stage AS stage,
    System AS system,
    Vendor AS vendor,
    ObjectType AS object_type,
    ObjectId AS object_id,
    ObjectRefs AS object_refs,
    LegalEntity AS entity,
    Region AS region,
    toString(Amount) AS amount,
    Currency AS currency,
    IdempotencyKey AS idempotency_key,
    Attempt AS attempt,
    EventId AS event_id,
    EventSequence AS event_sequence,
    /*@outcome*/ AS outcome,
    ErrorCategory AS category,
    ErrorCode AS error_code,
    ErrorType AS error_type,
    HttpStatusCode AS http_status,
    StatusCode AS status_code,
    StatusMessage AS status_message,
    PayloadCount AS payloads
FROM revtrace_spans
WHERE CorrelationId = {correlation_id:String}
  AND Timestamp >= {start:DateTime64(9)} AND Timestamp <= {end:DateTime64(9)}
ORDER BY Timestamp, SpanId
LIMIT {limit:UInt32}
