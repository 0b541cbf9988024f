UPDATE jobs SET cancel_requested = 1
WHERE id = ?1 AND client_id = ?2 AND state = 'running'
RETURNING id
