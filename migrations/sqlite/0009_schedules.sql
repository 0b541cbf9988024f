-- Recurring jobs (docs/FLOW.md, `[schedules.NAME]`): the last tick each schedule enqueued,
-- so a restarted daemon resumes where the schedules stopped and can tell which ticks were
-- missed while nothing ran. Exactly one job per tick comes from the jobs' idempotency index
-- (the tick is the job's key under the schedule's client), not from this table: every
-- daemon may enqueue a tick, the index keeps one. A row only moves forward.
CREATE TABLE schedule_ticks (
    name          TEXT PRIMARY KEY,
    last_tick_ms  INTEGER NOT NULL
);
