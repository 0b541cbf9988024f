-- $1 worker, $2 now, $3 limit, $4 lease ms, $5 `tool:definition` this worker has (tools
-- without a concurrency limit). SKIP LOCKED: concurrent claimers take different rows instead
-- of queueing behind each other; the partial index keeps finished rows out of the walk.
-- Order: `run_at - boost` (priority with aging, migration 0003), the jobs_queued index's
-- expression, within its range of uncapped jobs (migration 0006); `run_at <= now` skips scheduled jobs a boost brings into range early;
-- paused tools' jobs stay queued.
WITH c AS (
    SELECT seq FROM jobs
    WHERE state = 'queued' AND NOT capped AND run_at - boost <= $2 AND run_at <= $2
      -- Paused tools leave the list once per statement (an InitPlan): as a filter of its
      -- own, the NOT IN's guessed selectivity tipped the planner from this ordered index
      -- walk to a bitmap scan and sort of every queued row (59 ms a claim at 100k queued).
      -- Tool names hold no ':' (config::tool_table::valid_name).
      AND (tool || ':' || def) = ANY(ARRAY(
          SELECT d FROM unnest($5::text[]) AS d
          WHERE split_part(d, ':', 1) NOT IN (SELECT tool FROM paused_tools)))
    ORDER BY run_at - boost, seq
    LIMIT $3
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs
SET state = 'running', attempt = attempt + 1, fence = fence + 1,
    lease_owner = $1, lease_expires_at = $2 + $4, started_at = coalesce(started_at, $2),
    progress = NULL
FROM c WHERE jobs.seq = c.seq
RETURNING jobs.id, jobs.client_id, jobs.tool, jobs.args, jobs.attempt, jobs.max_attempts,
          jobs.fence, jobs.run_at, jobs.input_responses, jobs.request_state,
          jobs.callback IS NOT NULL
