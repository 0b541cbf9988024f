SELECT id FROM jobs WHERE client_id = ?1 AND idempotency_key = ?2
