-- The common completion, a success, for a whole batch: ?1 = JSON object
-- {"<fence>/<id>": result, ...}. The key carries the fence and the id so that json_each
-- hands over all three as plain values: the general statement (complete.sql) reads six
-- fields out of a nested array per job, and SQLite parses that array again for every one
-- (a third of the completion's instructions, BENCHMARKS.md). The fence and state guard
-- make a completion from a worker that lost its lease a no-op, as there.
UPDATE jobs
SET state = 'succeeded',
    result = c.result,
    finished_at = ?2,
    lease_owner = NULL,
    lease_expires_at = NULL,
    cancel_requested = 0
FROM (SELECT substr(key, instr(key, '/') + 1) AS id, CAST(key AS INTEGER) AS fence,
             value AS result
      FROM json_each(?1)) AS c
WHERE jobs.id = c.id AND jobs.fence = c.fence AND jobs.state = 'running'
  AND (?3 = 0 OR jobs.lease_expires_at < ?2)
RETURNING jobs.id, jobs.callback IS NOT NULL
