-- The time window every span query is bounded by (partition pruning).
Timestamp >= {start:DateTime64(9)} AND Timestamp < {end:DateTime64(9)}
