-- The claim of tools without a limit walked jobs_queued in order and skipped, row by row,
-- the queued jobs of tools with one (those are claimed per tool through jobs_queued_tool):
-- a backlog of 100k jobs of a capped tool made every claim read 100k index entries and
-- rows. With `capped` first in the key, the claim of uncapped tools reads only their range
-- (`capped = 0`), in the same order as before, and no job gets an index entry more.
DROP INDEX jobs_queued;
CREATE INDEX jobs_queued ON jobs (capped, run_at - boost, seq) WHERE state = 'queued';

-- A capped tool's running jobs are counted through jobs_running_key, whose key starts with
-- the tool: jobs_running_tool was the same count with one more entry to write at every
-- claim and to delete at every completion of a capped job.
DROP INDEX jobs_running_tool;
