UPDATE jobs
SET state = 'queued', attempt = attempt - 1, run_at = ?2, lease_owner = NULL, lease_expires_at = NULL
FROM (SELECT value ->> '$.id' AS id, value ->> '$.fence' AS fence FROM json_each(?1)) AS r
WHERE jobs.id = r.id AND jobs.fence = r.fence AND jobs.state = 'running'
