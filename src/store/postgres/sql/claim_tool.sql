-- One tool with a concurrency limit, inside a transaction holding that tool's advisory lock
-- (so no other claimer counts between our count and our update): $3 its limit, $5 the tool,
-- $6 its definitions this worker has, $7 how many more this claim may take.
WITH c AS (
    SELECT seq FROM jobs
    WHERE state = 'queued' AND capped AND tool = $5 AND run_at - boost <= $2 AND run_at <= $2
      AND def = ANY($6::text[]) AND tool NOT IN (SELECT tool FROM paused_tools)
    ORDER BY run_at - boost, seq
    LIMIT greatest(0, least($7, $3 - (SELECT count(*) FROM jobs
                                      WHERE state = 'running' AND capped AND tool = $5)))
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
