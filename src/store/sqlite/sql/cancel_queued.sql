-- A queued job, or one waiting for input, is cancelled at once.
UPDATE jobs SET state = 'cancelled', finished_at = ?3
WHERE id = ?1 AND client_id = ?2 AND state IN ('queued', 'input_required')
RETURNING id
