SELECT 'finished', state, count(*) FROM jobs
WHERE finished_at IS NOT NULL AND finished_at >= $1 GROUP BY state
UNION ALL
SELECT 'running', lease_owner, count(*) FROM jobs WHERE state = 'running' GROUP BY lease_owner
