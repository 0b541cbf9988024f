-- A group of polls in one round trip: $1 job ids. The caller checks each row's client_id
-- (another client's job reads as missing).
SELECT id, client_id, tool, args, state, attempt, max_attempts, run_at, lease_owner,
       lease_expires_at, fence, cancel_requested, progress, result, errors::text,
       idempotency_key, created_at, started_at, finished_at, def, on_crash, input_requests,
       input_responses, request_state
FROM jobs WHERE id = ANY($1::text[])
