-- The operator's console lists jobs by filter, newest first, a page at a time (keyset, never
-- OFFSET), over tables of millions of rows: each filter has an index that yields its rows
-- already in order, so a page reads about as many rows as it shows. None may be a better
-- match than jobs_queued for the claim (tests/store_conformance.rs checks its plan).
-- Finished jobs by state (and tool), and their per-tool counts (an index-only scan). Partial:
-- unfinished states have their own partial indexes, and the claim must keep jobs_queued.
-- store::browse repeats this WHERE word for word so SQLite can match it.
CREATE INDEX jobs_console_finished ON jobs (state, tool, seq)
    WHERE state IN ('succeeded', 'failed', 'cancelled');
-- One client's jobs. Neither column changes after the insert, so claims and completions
-- never touch this index (with `state` in it, every transition rewrote an entry: -25% drain).
CREATE INDEX jobs_console_client ON jobs (client_id, seq);
-- No index for the sort by last change: its key changes at every claim and completion, and
-- such an index cost every job's path a quarter of the drain rate; that sort reads and sorts
-- the filtered rows instead.
-- A time range, and the enqueue rate of the overview's chart:
CREATE INDEX jobs_console_created ON jobs (created_at);
