-- $1 ids, $2 fences, $3 progress (NULL: unchanged), $4 the new lease expiry.
UPDATE jobs
SET lease_expires_at = $4, progress = coalesce(b.progress, jobs.progress)
FROM unnest($1::text[], $2::int8[], $3::text[]) AS b(id, fence, progress)
WHERE jobs.id = b.id AND jobs.fence = b.fence AND jobs.state = 'running'
RETURNING jobs.id, jobs.cancel_requested
