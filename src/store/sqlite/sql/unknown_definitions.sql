-- ?1 = JSON array of known `tool:definition`, ?2 = now, ?3 = limit. Walks due queued jobs only.
SELECT DISTINCT tool, def FROM jobs
WHERE state = 'queued' AND run_at <= ?2 AND tool || ':' || def NOT IN (SELECT value FROM json_each(?1))
LIMIT ?3
