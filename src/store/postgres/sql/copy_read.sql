-- mcpq store copy: one page of jobs in insertion order, every column. $1 after seq, $2 limit.
SELECT seq, id, client_id, tool, args, state, attempt, max_attempts, run_at, lease_owner,
       lease_expires_at, fence, cancel_requested, progress, result, errors::text, idempotency_key,
       created_at, started_at, finished_at, def, on_crash, capped, input_requests,
       input_responses, request_state, priority, boost, ckey
FROM jobs WHERE seq > $1 ORDER BY seq LIMIT $2
