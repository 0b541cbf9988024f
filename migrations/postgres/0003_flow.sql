-- Flow control, as migrations/sqlite/0007_flow.sql (docs/FLOW.md): `priority` and `boost`
-- (priority × `jobs.aging_secs` in ms, fixed at enqueue); the claim orders by
-- `run_at - boost`, an index expression; `run_at` is also a scheduled job's not-before
-- time; `paused_tools` lists the tools no worker claims from; `ckey` is a job's
-- concurrency key (tools with a limit per key); `tool_rates` a token bucket per
-- rate-limited tool. Adding columns with a
-- constant default rewrites no row.
ALTER TABLE jobs ADD COLUMN priority smallint NOT NULL DEFAULT 0,
                 ADD COLUMN boost bigint NOT NULL DEFAULT 0,
                 ADD COLUMN ckey text;

DROP INDEX jobs_queued;
CREATE INDEX jobs_queued ON jobs ((run_at - boost), seq) WHERE state = 'queued';
DROP INDEX jobs_queued_tool;
CREATE INDEX jobs_queued_tool ON jobs (tool, (run_at - boost), seq) WHERE state = 'queued' AND capped;
CREATE INDEX jobs_running_key ON jobs (tool, ckey) WHERE state = 'running' AND capped;

CREATE TABLE tool_rates (
    tool       text             PRIMARY KEY,
    tokens     double precision NOT NULL,
    updated_at bigint           NOT NULL
);

CREATE TABLE paused_tools (
    tool      text   PRIMARY KEY,
    paused_at bigint NOT NULL,
    paused_by text   NOT NULL
);
