-- One transaction's payload snapshots and transformations (span events).
SELECT
    SpanId AS span_id,
    SpanAttributes[{attr_stage:String}] AS stage,
    event.1 AS at,
    event.2 AS name,
    event.3 AS attributes
FROM otel_traces
ARRAY JOIN arrayZip(Events.Timestamp, Events.Name, Events.Attributes) AS event
WHERE TraceId IN {trace_ids:Array(String)}
  AND SpanId IN {span_ids:Array(String)}
  AND Timestamp >= {start:DateTime64(9)} AND Timestamp <= {end:DateTime64(9)}
  AND event.2 IN {event_names:Array(String)}
ORDER BY at, span_id
LIMIT {limit:UInt32}
