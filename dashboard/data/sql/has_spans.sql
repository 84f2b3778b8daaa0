-- Whether any business span arrived in the window (for the empty states).
SELECT 1 AS found
FROM revtrace_spans
WHERE /*@window*/
LIMIT 1
