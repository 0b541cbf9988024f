-- The operator's console lists jobs by filter, newest first, a page at a time (keyset, never
-- OFFSET), over tables of millions of rows: each filter has an index that yields its rows
-- already in order, so a page reads about as many rows as it shows.
-- State (with or without tool), and the per-tool-and-state counts (an index-only scan):
CREATE INDEX jobs_console_state ON jobs (state, tool, seq);
-- One client's jobs:
CREATE INDEX jobs_console_client ON jobs (client_id, seq);
-- Sorted by the last change (the expression store::browse::ACTIVITY names):
CREATE INDEX jobs_console_activity ON jobs (COALESCE(finished_at, started_at, created_at), seq);
-- A time range, and the enqueue rate of the overview's chart:
CREATE INDEX jobs_console_created ON jobs (created_at);
