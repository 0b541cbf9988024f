SELECT seq, job_id, url, state, attempts, last_status, last_error, last_at, done_at, delivered,
       next_at
FROM webhook_outbox WHERE job_id = $1 ORDER BY seq
