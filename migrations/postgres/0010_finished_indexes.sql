-- As migrations/sqlite/0015_finished_indexes.sql: completions write one index of finished
-- jobs for the console, not two. jobs_finished carries state and tool (the overview's counts
-- and chart read it alone); the console's state index holds only failed and cancelled jobs.
-- jobs_console_client (finished jobs by client, 0006) is unchanged.
DROP INDEX jobs_console_finished;
CREATE INDEX jobs_console_finished ON jobs (state, tool, seq)
    WHERE state IN ('failed', 'cancelled');
DROP INDEX jobs_finished;
CREATE INDEX jobs_finished ON jobs (finished_at, state, tool) WHERE finished_at IS NOT NULL;
