-- Jobs that ask the client for input (as migrations/0006_input_required.sql for SQLite):
-- state `input_required`, the outstanding `input_requests`, the round's `input_responses`
-- (also set at enqueue for answers given before the job existed), and the tool's own
-- `request_state`. Adding nullable columns rewrites nothing; the CHECK is replaced.
ALTER TABLE jobs DROP CONSTRAINT jobs_state_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_state_check
    CHECK (state IN ('queued','running','succeeded','failed','cancelled','in_doubt','input_required'));
ALTER TABLE jobs ADD COLUMN input_requests text,
                 ADD COLUMN input_responses text,
                 ADD COLUMN request_state text;
CREATE INDEX jobs_input_required ON jobs (seq) WHERE state = 'input_required';
