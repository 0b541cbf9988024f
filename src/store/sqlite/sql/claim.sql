-- ?5 = JSON array of `tool:definition` this worker has (of tools without a concurrency
-- limit): a job accepted under any other definition is left for a worker that has it.
-- Order: `run_at - boost` (priority with aging, migration 0007), walking the jobs_queued
-- index's range of uncapped jobs (migration 0010); `run_at <= now` skips scheduled jobs whose boost brings them into range early;
-- paused tools' jobs stay queued (the subquery is evaluated once per statement).
UPDATE jobs
SET state = 'running', attempt = attempt + 1, fence = fence + 1,
    lease_owner = ?1, lease_expires_at = ?2 + ?4, started_at = COALESCE(started_at, ?2),
    progress = NULL -- progress belongs to an attempt
WHERE seq IN (
    SELECT seq FROM jobs
    WHERE state = 'queued' AND capped = 0 AND run_at - boost <= ?2 AND run_at <= ?2
      AND tool || ':' || def IN (SELECT value FROM json_each(?5))
      AND tool NOT IN (SELECT tool FROM paused_tools)
    ORDER BY run_at - boost, seq LIMIT ?3
)
-- One value per claimed job instead of seven: sqlx copies every returned value into its own
-- allocation on SQLite's thread, and a 256-job claim was seven times as many as needed.
RETURNING json_array(id, client_id, tool, args, attempt, max_attempts, fence, run_at,
                     input_responses, request_state, callback IS NOT NULL)
