-- ?1 = JSON array of job ids. One round trip answers a whole group of polls, and as one
-- value: a JSON array of rows, each [id, client_id, tool, args, state, attempt,
-- max_attempts, run_at, lease_owner, lease_expires_at, fence, cancel_requested, progress,
-- result, errors, idempotency_key, created_at, started_at, finished_at, def, on_crash,
-- input_requests, input_responses, request_state] (one value instead
-- of a row each saves sqlx's per-row hand-off). The caller checks each row's client_id:
-- another client's job reads as missing.
SELECT json_group_array(json_array(
           id, client_id, tool, args, state, attempt, max_attempts, run_at, lease_owner,
           lease_expires_at, fence, cancel_requested, progress, result, errors,
           idempotency_key, created_at, started_at, finished_at, def, on_crash,
           input_requests, input_responses, request_state))
FROM jobs WHERE id IN (SELECT value FROM json_each(?1))
