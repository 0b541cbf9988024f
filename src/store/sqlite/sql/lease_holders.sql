-- Workers holding leases, with their latest lease expiry (a renewal sets it to renewal time
-- + lease_ms): the lease index, running jobs only.
SELECT lease_owner, max(lease_expires_at) FROM jobs
WHERE state = 'running' AND lease_owner IS NOT NULL
GROUP BY lease_owner
