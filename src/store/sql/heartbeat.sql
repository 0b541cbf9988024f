UPDATE jobs
SET lease_expires_at = ?2, progress = COALESCE(b.progress, jobs.progress)
FROM (SELECT value ->> '$.id' AS id, value ->> '$.fence' AS fence, value ->> '$.progress' AS progress
      FROM json_each(?1)) AS b
WHERE jobs.id = b.id AND jobs.fence = b.fence AND jobs.state = 'running'
RETURNING jobs.id, jobs.cancel_requested
