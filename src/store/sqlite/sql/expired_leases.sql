SELECT id, fence, attempt, max_attempts, on_crash FROM jobs
WHERE state = 'running' AND lease_expires_at < ?1
ORDER BY lease_expires_at LIMIT ?2
