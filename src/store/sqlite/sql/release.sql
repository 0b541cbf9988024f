-- ?1 = JSON array of [id, fence], ?2 = now (the job is due again at once).
UPDATE jobs
SET state = 'queued', attempt = attempt - 1, run_at = ?2, lease_owner = NULL, lease_expires_at = NULL
FROM (SELECT value ->> 0 AS id, value ->> 1 AS fence FROM json_each(?1)) AS r
WHERE jobs.id = r.id AND jobs.fence = r.fence AND jobs.state = 'running'
