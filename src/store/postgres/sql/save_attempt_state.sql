-- $1 = job id, $2 = the attempt's fence, $3 = the state to keep for its next attempt (NULL:
-- none). Written while the attempt runs (an upstream task's id, docs/UPSTREAMS.md), so a
-- worker lost mid-attempt leaves it for the attempt that resumes. The fence guard makes a
-- write from a worker that lost its lease a no-op.
UPDATE jobs SET request_state = $3
WHERE id = $1 AND fence = $2 AND state = 'running'
