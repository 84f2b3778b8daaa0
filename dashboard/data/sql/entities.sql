-- The legal entities of transactions started in the window, for the entity picker
-- (from the per-transaction table: a tenth of the rows of the spans).
SELECT DISTINCT LegalEntity AS entity
FROM revtrace_correlations
WHERE Start >= {start:DateTime64(9)} AND Start < {end:DateTime64(9)} AND LegalEntity != ''
ORDER BY entity
LIMIT 500
