-- $1 known `tool:definition`, $2 now, $3 limit. Walks due queued jobs only.
SELECT DISTINCT tool, def FROM (
    SELECT tool, def FROM jobs
    WHERE state = 'queued' AND run_at <= $2 AND NOT ((tool || ':' || def) = ANY($1::text[]))
    LIMIT 1000
) AS u
LIMIT $3
