-- Silences in force during the window (the evaluator's revtrace_silences).
SELECT
    Id AS id,
    Matchers AS matchers,
    MatchersRe AS matchers_re,
    StartsAt AS starts_at,
    EndsAt AS ends_at,
    CreatedBy AS created_by,
    Comment AS comment
FROM revtrace_silences FINAL
WHERE EndsAt >= {start:DateTime64(9)} AND StartsAt < {end:DateTime64(9)}
ORDER BY StartsAt DESC
LIMIT {limit:UInt32}
