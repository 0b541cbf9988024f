-- One tool with a concurrency limit per key (docs/FLOW.md), inside the claim's BEGIN
-- IMMEDIATE transaction like claim_tool.sql: ?3 the tool's own limit (or a huge one),
-- ?5 the tool, ?6 its definitions this worker has, ?7 how many more this claim may take,
-- ?8 the limit per key, ?9 how many queued jobs to look at (the head of its queue, in
-- claim order). A candidate is taken if fewer than ?8 of its key run, counting the
-- candidates of the same key ahead of it; running jobs are counted once per key.
UPDATE jobs
SET state = 'running', attempt = attempt + 1, fence = fence + 1,
    lease_owner = ?1, lease_expires_at = ?2 + ?4, started_at = COALESCE(started_at, ?2),
    progress = NULL
WHERE seq IN (
    SELECT c.seq
    FROM (
        SELECT seq, ckey, k, row_number() OVER (PARTITION BY ckey ORDER BY k, seq) AS rn
        FROM (
            SELECT seq, ckey, run_at - boost AS k FROM jobs INDEXED BY jobs_queued_tool
            WHERE state = 'queued' AND capped = 1 AND tool = ?5 AND run_at - boost <= ?2
              AND run_at <= ?2 AND def IN (SELECT value FROM json_each(?6))
              AND tool NOT IN (SELECT tool FROM paused_tools)
            ORDER BY run_at - boost, seq
            LIMIT ?9
        )
    ) AS c
    LEFT JOIN (
        SELECT ckey, count(*) AS n FROM jobs
        WHERE state = 'running' AND capped = 1 AND tool = ?5 GROUP BY ckey
    ) AS busy ON busy.ckey IS c.ckey
    WHERE c.rn + COALESCE(busy.n, 0) <= ?8
    ORDER BY c.k, c.seq
    LIMIT max(0, min(?7, ?3 - (SELECT count(*) FROM jobs WHERE state = 'running' AND capped = 1 AND tool = ?5)))
)
RETURNING json_array(id, client_id, tool, args, attempt, max_attempts, fence, run_at,
                     input_responses, request_state, callback IS NOT NULL)
