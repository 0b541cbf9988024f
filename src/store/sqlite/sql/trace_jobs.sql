-- ?1 = JSON array of [id, trace_context] of the batch's traced jobs, written in the enqueue's
-- transaction (migration 0012). A job the batch did not insert (its idempotency key named
-- another) matches no row.
UPDATE jobs SET trace_context = t.value ->> 1
FROM json_each(?1) AS t
WHERE jobs.id = t.value ->> 0
