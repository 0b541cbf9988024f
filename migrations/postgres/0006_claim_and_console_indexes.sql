-- As migrations/sqlite/0010_queued_by_capped.sql: the claim of tools without a limit reads
-- only their range of jobs_queued (`NOT capped`), in the same order, instead of skipping
-- every queued job of a capped tool row by row. A capped tool's running jobs are counted
-- through jobs_running_key (its key starts with the tool), so jobs_running_tool goes: one
-- entry fewer to write at every claim of a capped job.
DROP INDEX jobs_queued;
CREATE INDEX jobs_queued ON jobs (capped, (run_at - boost), seq) WHERE state = 'queued';
DROP INDEX jobs_running_tool;

-- The console's indexes, cheaper for the job's path. PostgreSQL writes a new entry into
-- every index of a row at each update that changes an indexed column (`state` is in every
-- partial index's WHERE, so no claim or completion is a HOT update), whatever the index's
-- own columns: `(client_id, seq)` and `(created_at)` took three entries per job (insert,
-- claim, completion) though neither column ever changes. The client index now holds
-- finished jobs only (one entry, at completion; store::browse reads unfinished ones from
-- their states' own indexes), and the creation time has a BRIN index: a summary per range
-- of table pages, which an update whose value fits its range's summary leaves alone, and
-- enough for time ranges since rows are written in creation order.
DROP INDEX jobs_console_client;
CREATE INDEX jobs_console_client ON jobs (client_id, seq)
    WHERE state IN ('succeeded', 'failed', 'cancelled');
DROP INDEX jobs_console_created;
CREATE INDEX jobs_console_created ON jobs USING brin (created_at);
