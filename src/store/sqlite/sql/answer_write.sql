-- Records a client's answers to a waiting job, guarded by the requests read before
-- (compare and set): ?1 id, ?2 the requests read, ?3 the requests still outstanding (NULL:
-- none, the job is queued again, due at ?5), ?4 the answers of the round so far.
UPDATE jobs
SET input_requests = ?3,
    input_responses = ?4,
    state = CASE WHEN ?3 IS NULL THEN 'queued' ELSE state END,
    run_at = CASE WHEN ?3 IS NULL THEN ?5 ELSE run_at END
WHERE id = ?1 AND state = 'input_required' AND input_requests = ?2
RETURNING state
