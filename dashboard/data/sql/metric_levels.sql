-- Level metrics (gauges and non-monotonic sums) per bucket and series attribute:
-- each series' last value in the bucket, then summed (total) and maxed (peak).
SELECT bucket, metric, series, sum(value) AS total, max(value) AS peak
FROM (
    SELECT
        toStartOfInterval(TimeUnix, toIntervalSecond({step:UInt32})) AS bucket,
        MetricName AS metric,
        Attributes[{series_attr:String}] AS series,
        argMax(Value, TimeUnix) AS value
    FROM (
        SELECT MetricName, ServiceName, Attributes, TimeUnix, Value
        FROM otel_metrics_gauge
        WHERE MetricName IN {metrics:Array(String)}
          AND TimeUnix >= {start:DateTime64(9)} AND TimeUnix < {end:DateTime64(9)}
        UNION ALL
        SELECT MetricName, ServiceName, Attributes, TimeUnix, Value
        FROM otel_metrics_sum
        WHERE MetricName IN {metrics:Array(String)} AND NOT IsMonotonic
          AND TimeUnix >= {start:DateTime64(9)} AND TimeUnix < {end:DateTime64(9)}
    )
    GROUP BY bucket, metric, ServiceName, Attributes
)
GROUP BY bucket, metric, series
ORDER BY bucket, metric, series
