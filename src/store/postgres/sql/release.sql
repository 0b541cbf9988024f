-- $1 ids, $2 fences, $3 now (due again at once; the attempt does not count), $4 'running' per
-- row (see complete.sql).
UPDATE jobs
SET state = 'queued', attempt = attempt - 1, run_at = $3, lease_owner = NULL, lease_expires_at = NULL
FROM unnest($1::text[], $2::int8[], $4::text[]) AS r(id, fence, expect)
WHERE jobs.id = r.id AND jobs.fence = r.fence AND jobs.state = r.expect
