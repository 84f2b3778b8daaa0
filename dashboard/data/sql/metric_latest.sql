-- The latest value of level metrics per series attribute (e.g. each circuit breaker now).
SELECT metric, series, argMax(Value, TimeUnix) AS value, max(TimeUnix) AS at
FROM (
    SELECT MetricName AS metric, Attributes[{series_attr:String}] AS series, TimeUnix, Value
    FROM otel_metrics_gauge
    WHERE MetricName IN {metrics:Array(String)}
      AND TimeUnix >= {start:DateTime64(9)} AND TimeUnix < {end:DateTime64(9)}
    UNION ALL
    SELECT MetricName AS metric, Attributes[{series_attr:String}] AS series, TimeUnix, Value
    FROM otel_metrics_sum
    WHERE MetricName IN {metrics:Array(String)} AND NOT IsMonotonic
      AND TimeUnix >= {start:DateTime64(9)} AND TimeUnix < {end:DateTime64(9)}
)
GROUP BY metric, series
ORDER BY metric, series
