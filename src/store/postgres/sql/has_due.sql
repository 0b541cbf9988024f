-- Whether any queued job is due (an idle worker asks before it takes a write lock). Paused
-- tools are not excluded here: a NOT IN of its own tipped the planner into a sequential scan
-- (every finished row, on every idle poll); a worker that finds only paused jobs due claims
-- nothing and backs off like an idle one.
SELECT EXISTS (SELECT 1 FROM jobs WHERE state = 'queued' AND run_at - boost <= $1 AND run_at <= $1)
