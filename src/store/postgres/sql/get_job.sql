SELECT id, client_id, tool, args, state, attempt, max_attempts, run_at, lease_owner,
       lease_expires_at, fence, cancel_requested, progress, result, errors::text,
       idempotency_key, created_at, started_at, finished_at, def, on_crash, input_requests,
       input_responses, request_state
FROM jobs WHERE id = $1
