UPDATE jobs
SET state = 'running', attempt = attempt + 1, fence = fence + 1,
    lease_owner = ?1, lease_expires_at = ?2 + ?4, started_at = COALESCE(started_at, ?2),
    progress = NULL -- progress belongs to an attempt
WHERE seq IN (
    SELECT seq FROM jobs WHERE state = 'queued' AND run_at <= ?2 ORDER BY run_at, seq LIMIT ?3
)
-- One value per claimed job instead of six: sqlx copies every returned value into its own
-- allocation on SQLite's thread, and a 256-job claim was six times as many as needed.
RETURNING json_array(id, tool, args, attempt, max_attempts, fence)
