SELECT count(*) FROM (SELECT 1 FROM jobs WHERE state = 'queued' AND client_id = $1 LIMIT $2) AS q
