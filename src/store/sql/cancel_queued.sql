UPDATE jobs SET state = 'cancelled', finished_at = ?3
WHERE id = ?1 AND client_id = ?2 AND state = 'queued'
RETURNING id
