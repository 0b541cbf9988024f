-- The operator's console lists jobs by filter, newest first, a page at a time (keyset, never
-- OFFSET), over tables of millions of rows: each filter has an index that yields its rows
-- already in order, so a page reads about as many rows as it shows. None may be a better
-- match than jobs_queued for the claim (tests/store_conformance.rs checks its plan).
-- Finished jobs by state (and tool), and their per-tool counts (an index-only scan). Partial:
-- unfinished states have their own partial indexes, and the claim must keep jobs_queued.
-- store::browse repeats this WHERE word for word so SQLite can match it.
CREATE INDEX jobs_console_finished ON jobs (state, tool, seq)
    WHERE state IN ('succeeded', 'failed', 'cancelled');
-- One client's jobs, by state (also the exact index for the per-client queue cap's count):
CREATE INDEX jobs_console_client ON jobs (client_id, state, seq);
-- Sorted by the last change (the expression store::browse::ACTIVITY names):
CREATE INDEX jobs_console_activity ON jobs (COALESCE(finished_at, started_at, created_at), seq);
-- A time range, and the enqueue rate of the overview's chart:
CREATE INDEX jobs_console_created ON jobs (created_at);
