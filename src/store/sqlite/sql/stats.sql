-- Jobs not finished, by state and tool, and the oldest due run_at: each arm matches one
-- partial index's WHERE exactly, so none scans finished rows. ?1 = now.
SELECT 'queued', tool, count(*), min(CASE WHEN run_at <= ?1 THEN run_at END)
FROM jobs WHERE state = 'queued' GROUP BY tool
UNION ALL
SELECT 'running', tool, count(*), NULL FROM jobs WHERE state = 'running' GROUP BY tool
UNION ALL
SELECT 'in_doubt', tool, count(*), NULL FROM jobs WHERE state = 'in_doubt' GROUP BY tool
UNION ALL
SELECT 'input_required', tool, count(*), NULL FROM jobs WHERE state = 'input_required' GROUP BY tool

UNION ALL
SELECT 'paused', tool, 0, NULL FROM paused_tools
