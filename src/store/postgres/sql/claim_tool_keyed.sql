-- One tool with a concurrency limit per key (docs/FLOW.md), under that tool's advisory
-- lock like claim_tool.sql: $3 the tool's own limit (or a huge one), $5 the tool, $6 its
-- definitions this worker has, $7 how many more this claim may take, $8 the limit per
-- key, $9 how many queued jobs to look at (the head of its queue, in claim order). A
-- candidate is taken if fewer than $8 of its key run, counting the candidates of the
-- same key ahead of it.
WITH head AS (
    SELECT seq, ckey, run_at - boost AS k FROM jobs
    WHERE state = 'queued' AND capped AND tool = $5 AND run_at - boost <= $2 AND run_at <= $2
      AND def = ANY($6::text[]) AND tool NOT IN (SELECT tool FROM paused_tools)
    ORDER BY run_at - boost, seq
    LIMIT $9
    FOR UPDATE SKIP LOCKED
), busy AS (
    SELECT ckey, count(*) AS n FROM jobs
    WHERE state = 'running' AND capped AND tool = $5 GROUP BY ckey
), c AS (
    SELECT h.seq FROM (
        SELECT seq, ckey, k, row_number() OVER (PARTITION BY ckey ORDER BY k, seq) AS rn
        FROM head
    ) AS h
    LEFT JOIN busy ON busy.ckey IS NOT DISTINCT FROM h.ckey
    WHERE h.rn + coalesce(busy.n, 0) <= $8
    ORDER BY h.k, h.seq
    LIMIT greatest(0, least($7, $3 - (SELECT count(*) FROM jobs
                                      WHERE state = 'running' AND capped AND tool = $5)))
)
UPDATE jobs
SET state = 'running', attempt = attempt + 1, fence = fence + 1,
    lease_owner = $1, lease_expires_at = $2 + $4, started_at = coalesce(started_at, $2),
    progress = NULL
FROM c WHERE jobs.seq = c.seq
RETURNING jobs.id, jobs.client_id, jobs.tool, jobs.args, jobs.attempt, jobs.max_attempts,
          jobs.fence, jobs.run_at, jobs.input_responses, jobs.request_state,
          jobs.callback IS NOT NULL
