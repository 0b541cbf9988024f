-- ?1 = JSON array of [id, fence, progress], ?2 = the new lease expiry.
UPDATE jobs
SET lease_expires_at = ?2, progress = COALESCE(b.progress, jobs.progress)
FROM (SELECT value ->> 0 AS id, value ->> 1 AS fence, value ->> 2 AS progress
      FROM json_each(?1)) AS b
WHERE jobs.id = b.id AND jobs.fence = b.fence AND jobs.state = 'running'
RETURNING jobs.id, jobs.cancel_requested
