-- A client's queued jobs and jobs waiting for its input (they hold their place in the queue
-- too), each counted no further than ?2 (the two partial indexes: jobs_queued,
-- jobs_input_required).
SELECT (SELECT count(*) FROM (SELECT 1 FROM jobs WHERE state = 'queued' AND client_id = ?1 LIMIT ?2))
     + (SELECT count(*) FROM (SELECT 1 FROM jobs WHERE state = 'input_required' AND client_id = ?1 LIMIT ?2))
