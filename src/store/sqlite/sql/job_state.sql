SELECT state FROM jobs WHERE id = ?1 AND client_id = ?2
