SELECT lease_owner, max(lease_expires_at) FROM jobs
WHERE state = 'running' AND lease_owner IS NOT NULL
GROUP BY lease_owner
