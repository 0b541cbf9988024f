-- A client's queued jobs, counting no further than ?2 (the queued-jobs partial index).
SELECT count(*) FROM (SELECT 1 FROM jobs WHERE state = 'queued' AND client_id = ?1 LIMIT ?2)
