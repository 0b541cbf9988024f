-- Flow control, as migrations/sqlite/0007_flow.sql (docs/FLOW.md): `priority` and `boost`
-- (priority × `jobs.aging_secs` in ms, fixed at enqueue); the claim orders by
-- `run_at - boost`, an index expression; `run_at` is also a scheduled job's not-before
-- time; `paused_tools` lists the tools no worker claims from. Adding columns with a
-- constant default rewrites no row.
ALTER TABLE jobs ADD COLUMN priority smallint NOT NULL DEFAULT 0,
                 ADD COLUMN boost bigint NOT NULL DEFAULT 0;

DROP INDEX jobs_queued;
CREATE INDEX jobs_queued ON jobs ((run_at - boost), seq) WHERE state = 'queued';
DROP INDEX jobs_queued_tool;
CREATE INDEX jobs_queued_tool ON jobs (tool, (run_at - boost), seq) WHERE state = 'queued' AND capped;

CREATE TABLE paused_tools (
    tool      text   PRIMARY KEY,
    paused_at bigint NOT NULL,
    paused_by text   NOT NULL
);
