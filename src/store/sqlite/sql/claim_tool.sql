-- One tool with a concurrency limit, inside the claim's BEGIN IMMEDIATE transaction (so no
-- other process claims between the count and the update): ?3 = its limit, ?5 = the tool,
-- ?6 = JSON array of its definitions this worker has, ?7 = how many more this claim may take.
UPDATE jobs
SET state = 'running', attempt = attempt + 1, fence = fence + 1,
    lease_owner = ?1, lease_expires_at = ?2 + ?4, started_at = COALESCE(started_at, ?2),
    progress = NULL
WHERE seq IN (
    -- Named: jobs_queued (capped first since migration 0010) would also serve, and walk
    -- every capped tool's jobs.
    SELECT seq FROM jobs INDEXED BY jobs_queued_tool
    WHERE state = 'queued' AND capped = 1 AND tool = ?5 AND run_at - boost <= ?2 AND run_at <= ?2
      AND def IN (SELECT value FROM json_each(?6))
      AND tool NOT IN (SELECT tool FROM paused_tools)
    ORDER BY run_at - boost, seq
    LIMIT max(0, min(?7, ?3 - (SELECT count(*) FROM jobs WHERE state = 'running' AND capped = 1 AND tool = ?5)))
)
RETURNING json_array(id, client_id, tool, args, attempt, max_attempts, fence, run_at,
                     input_responses, request_state, callback IS NOT NULL)
