-- A stage pair's latency distribution: counts per bin of {bin} seconds; the last
-- bin holds everything beyond it.
WITH pairs AS (/*@pair_base*/)
SELECT
    least(toUInt32(floor(seconds / {bin:Float64})), {max_bin:UInt32}) AS bin,
    bin * {bin:Float64} AS lower_s,
    count() AS completed
FROM pairs
WHERE has_to
GROUP BY bin
ORDER BY bin
