-- Whether any webhook event is due at ?1 (lease free or expired), on a read connection: an
-- idle deliverer asks this before it takes the write lock to lease (webhook_claim.sql).
SELECT EXISTS (SELECT 1 FROM webhook_outbox
               WHERE done_at IS NULL AND next_at <= ?1
                 AND (lease_expires_at IS NULL OR lease_expires_at < ?1))
