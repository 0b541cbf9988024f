-- Every completion wrote two indexes of finished jobs: jobs_finished (finished_at) and the
-- console's jobs_console_finished (state, tool, seq). The second cost the drain its whole gap
-- to the drain before the console (BENCHMARKS.md, session 18: without it, 0.98x of it). Now:
-- * jobs_finished also carries state and tool, so the overview's per-tool counts and its
--   chart of finished jobs are index-only scans of the index every completion writes anyway
--   (it still serves retention and the sort by last change: finished_at leads);
-- * the console's own index holds only failed and cancelled jobs, the states whose lists
--   need one (a few jobs among many); succeeded jobs, most of a table, are listed newest
--   first in the table's own order, which finds a page of them at once.
-- store::browse repeats this WHERE word for word (RARE_TERM) so SQLite can match it.
DROP INDEX jobs_console_finished;
CREATE INDEX jobs_console_finished ON jobs (state, tool, seq)
    WHERE state IN ('failed', 'cancelled');
DROP INDEX jobs_finished;
CREATE INDEX jobs_finished ON jobs (finished_at, state, tool) WHERE finished_at IS NOT NULL;
