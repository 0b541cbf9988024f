-- What a keyed claim chooses from (`jobs::keyed_picks`), read under the tool's advisory
-- lock in the claim's transaction: $1 now, $2 the tool, $3 its definitions this worker
-- has, $4 how many jobs of the queue's head to look at. Two JSON values: the tool's
-- running jobs per key, [[key, n], ...], and the head in claim order, [[seq, key], ...],
-- its rows locked (SKIP LOCKED: a job an operator is changing is passed over).
SELECT
    (SELECT coalesce(json_agg(json_build_array(ckey, n)), '[]')::text FROM (
        SELECT ckey, count(*) AS n FROM jobs
        WHERE state = 'running' AND capped AND tool = $2
        GROUP BY ckey
    ) AS busy),
    (SELECT coalesce(json_agg(json_build_array(seq, ckey) ORDER BY k, seq), '[]')::text FROM (
        SELECT seq, ckey, run_at - boost AS k FROM jobs
        WHERE state = 'queued' AND capped AND tool = $2 AND run_at - boost <= $1
          AND run_at <= $1 AND def = ANY($3::text[])
          AND tool NOT IN (SELECT tool FROM paused_tools)
        ORDER BY run_at - boost, seq
        LIMIT $4
        FOR UPDATE SKIP LOCKED
    ) AS head)
