-- The legal entities seen recently, for the entity picker.
SELECT LegalEntity AS entity, count() AS spans
FROM revtrace_spans
WHERE /*@window*/ AND LegalEntity != ''
GROUP BY entity
ORDER BY entity
LIMIT 500
