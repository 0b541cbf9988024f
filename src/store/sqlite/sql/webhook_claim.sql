-- Leases due webhook events (docs/WEBHOOKS.md): ?1 owner, ?2 now, ?3 lease (ms), ?4 limit.
-- A row whose lease ran out (its deliverer was killed) is due again.
UPDATE webhook_outbox SET lease_owner = ?1, lease_expires_at = ?2 + ?3
WHERE seq IN (SELECT seq FROM webhook_outbox
              WHERE done_at IS NULL AND next_at <= ?2
                AND (lease_expires_at IS NULL OR lease_expires_at < ?2)
              ORDER BY next_at LIMIT ?4)
RETURNING seq, job_id, client_id, url, state, tool, attempt, result, error, input_requests,
          created_at, attempts
