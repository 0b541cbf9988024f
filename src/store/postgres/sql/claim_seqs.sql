-- Claims the queued jobs a keyed claim picked ($4: their seq), in the claim's transaction
-- that read and locked them (keyed_head.sql).
UPDATE jobs
SET state = 'running', attempt = attempt + 1, fence = fence + 1,
    lease_owner = $1, lease_expires_at = $2 + $3, started_at = coalesce(started_at, $2),
    progress = NULL
WHERE seq = ANY($4::bigint[]) AND state = 'queued'
RETURNING id, client_id, tool, args, attempt, max_attempts, fence, run_at, input_responses,
          request_state, callback IS NOT NULL
