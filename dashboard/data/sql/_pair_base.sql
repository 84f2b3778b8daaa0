-- One row per transaction that reached the pair's first stage in the window:
-- when the first stage ended ok, when the second did (if it has), and the
-- seconds between. Entity and the second stage's vendor are the dimensions.
SELECT
    any(CorrelationId) AS correlation_id,
    max(LegalEntity) AS entity,
    anyIf(Vendor, Stage = {to_stage:String} AND Vendor != '') AS vendor,
    countIf(Stage = {from_stage:String} AND /*@outcome*/ = {outcome_ok:String}) > 0 AS has_from,
    countIf(Stage = {to_stage:String} AND /*@outcome*/ = {outcome_ok:String}) > 0 AS has_to,
    minIf(EndTimestamp, Stage = {from_stage:String} AND /*@outcome*/ = {outcome_ok:String}) AS t_from,
    minIf(EndTimestamp, Stage = {to_stage:String} AND /*@outcome*/ = {outcome_ok:String}) AS t_to,
    (toUnixTimestamp64Nano(t_to) - toUnixTimestamp64Nano(t_from)) / 1e9 AS seconds
FROM revtrace_spans
WHERE /*@window*/
  AND Stage IN ({from_stage:String}, {to_stage:String})
GROUP BY cityHash64(CorrelationId)
HAVING has_from AND ({entity:String} = '' OR entity = {entity:String})
