-- What a keyed claim chooses from (`jobs::keyed_picks`), read inside the claim's BEGIN
-- IMMEDIATE transaction: ?1 now, ?2 the tool, ?3 its definitions this worker has, ?4 how
-- many jobs of the queue's head to look at. Two JSON values: the tool's running jobs
-- per key, [[key, n], ...] (from jobs_running_key alone), and the head in claim order,
-- [[seq, key], ...]. Choosing in SQL (a window function numbering each key's jobs, a
-- join with the running keys) cost 2.6 ms of a 4.7 ms claim of 256 jobs.
SELECT
    (SELECT json_group_array(json_array(ckey, n)) FROM (
        SELECT ckey, count(*) AS n FROM jobs INDEXED BY jobs_running_key
        WHERE state = 'running' AND capped = 1 AND tool = ?2
        GROUP BY ckey
    )),
    (SELECT json_group_array(json_array(seq, ckey)) FROM (
        SELECT seq, ckey FROM jobs INDEXED BY jobs_queued_tool
        WHERE state = 'queued' AND capped = 1 AND tool = ?2 AND run_at - boost <= ?1
          AND run_at <= ?1 AND def IN (SELECT value FROM json_each(?3))
          AND tool NOT IN (SELECT tool FROM paused_tools)
        ORDER BY run_at - boost, seq
        LIMIT ?4
    ))
