-- Counters (monotonic sums) per bucket and series attribute: how much each
-- increased. Cumulative series are differenced point to point (a restart, with a
-- new start time, begins a new series; one that started inside the window counts
-- from zero); delta series are summed.
SELECT bucket, metric, series, sum(delta) AS increase
FROM (
    SELECT
        toStartOfInterval(TimeUnix, toIntervalSecond({step:UInt32})) AS bucket,
        MetricName AS metric,
        Attributes[{series_attr:String}] AS series,
        if(AggregationTemporality = 1, Value,
           greatest(Value - lagInFrame(Value, 1, if(StartTimeUnix >= {start:DateTime64(9)}, 0., Value)) OVER (
               PARTITION BY MetricName, ServiceName, ResourceAttributes, Attributes, StartTimeUnix
               ORDER BY TimeUnix ROWS BETWEEN 1 PRECEDING AND CURRENT ROW), 0)) AS delta
    FROM otel_metrics_sum
    WHERE MetricName IN {metrics:Array(String)}
      AND TimeUnix >= {start:DateTime64(9)} AND TimeUnix < {end:DateTime64(9)}
)
GROUP BY bucket, metric, series
ORDER BY bucket, metric, series
