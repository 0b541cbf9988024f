UPDATE jobs
SET state = 'running', attempt = attempt + 1, fence = fence + 1,
    lease_owner = ?1, lease_expires_at = ?2 + ?4, started_at = COALESCE(started_at, ?2),
    progress = NULL -- progress belongs to an attempt
WHERE seq IN (
    SELECT seq FROM jobs WHERE state = 'queued' AND run_at <= ?2 ORDER BY run_at, seq LIMIT ?3
)
RETURNING id, tool, args, attempt, max_attempts, fence
