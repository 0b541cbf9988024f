-- Claims the queued jobs a keyed claim picked (?4: JSON array of their seq), inside the
-- claim's transaction that read them (keyed_head.sql).
UPDATE jobs
SET state = 'running', attempt = attempt + 1, fence = fence + 1,
    lease_owner = ?1, lease_expires_at = ?2 + ?3, started_at = COALESCE(started_at, ?2),
    progress = NULL
WHERE seq IN (SELECT value FROM json_each(?4)) AND state = 'queued'
RETURNING json_array(id, client_id, tool, args, attempt, max_attempts, fence, run_at,
                     input_responses, request_state, callback IS NOT NULL)
