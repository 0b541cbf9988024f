-- $1 ids, $2 fences, $3 progress (NULL: unchanged), $4 the new lease expiry, $5 'running' per
-- row (a column, not a constant: see complete.sql). No indexed column changes, so the new row
-- version stays on its page (a HOT update) and the indexes do not grow with each beat.
UPDATE jobs
SET lease_expires_at = $4, progress = coalesce(b.progress, jobs.progress)
FROM unnest($1::text[], $2::int8[], $3::text[], $5::text[]) AS b(id, fence, progress, expect)
WHERE jobs.id = b.id AND jobs.fence = b.fence AND jobs.state = b.expect
RETURNING jobs.id, jobs.cancel_requested
