-- mcpq stats: jobs finished since ?1 by final state (the finished_at index), and running
-- jobs per worker (the lease index).
SELECT 'finished', state, count(*) FROM jobs
WHERE finished_at IS NOT NULL AND finished_at >= ?1 GROUP BY state
UNION ALL
SELECT 'running', lease_owner, count(*) FROM jobs WHERE state = 'running' GROUP BY lease_owner
