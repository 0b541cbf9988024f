-- Completion webhooks (docs/WEBHOOKS.md), as migrations/sqlite/0012_webhooks.sql:
-- `jobs.callback` (NULL for every job without one; no row is rewritten), and the outbox the
-- trigger below fills in the same transaction as the state change that fires it, whichever
-- path made the change. For a job without a callback the trigger's WHEN is false and no
-- event is queued (PostgreSQL checks a row trigger's WHEN before calling its function).
-- Deliverers lease due rows with FOR UPDATE SKIP LOCKED, so daemons and workers on several
-- machines never send one row at once; a killed deliverer's row is taken again once its
-- lease ends.
ALTER TABLE jobs ADD COLUMN callback text;

CREATE TABLE webhook_outbox (
    seq              bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id           text    NOT NULL,
    client_id        text    NOT NULL,
    url              text    NOT NULL,
    state            text    NOT NULL,
    tool             text    NOT NULL,
    attempt          integer NOT NULL,
    result           text,
    error            text,
    input_requests   text,
    created_at       bigint  NOT NULL,
    next_at          bigint  NOT NULL,
    attempts         integer NOT NULL DEFAULT 0,
    lease_owner      text,
    lease_expires_at bigint,
    last_status      integer,
    last_error       text,
    last_at          bigint,
    done_at          bigint,
    delivered        boolean NOT NULL DEFAULT false
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_at) WHERE done_at IS NULL;
CREATE INDEX webhook_outbox_job ON webhook_outbox (job_id);
CREATE INDEX webhook_outbox_done ON webhook_outbox (done_at) WHERE done_at IS NOT NULL;

CREATE FUNCTION mcpq_webhook_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_outbox (job_id, client_id, url, state, tool, attempt, result, error,
                                input_requests, created_at, next_at)
    VALUES (NEW.id, NEW.client_id, NEW.callback, NEW.state, NEW.tool, NEW.attempt, NEW.result,
            CASE WHEN NEW.state IN ('failed', 'cancelled') THEN NEW.errors -> -1 ->> 'error' END,
            CASE WHEN NEW.state = 'input_required' THEN NEW.input_requests END,
            coalesce(NEW.finished_at, NEW.run_at), coalesce(NEW.finished_at, NEW.run_at));
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_webhook AFTER UPDATE OF state ON jobs FOR EACH ROW
    WHEN (NEW.callback IS NOT NULL AND NEW.state IS DISTINCT FROM OLD.state
          AND NEW.state IN ('succeeded', 'failed', 'cancelled', 'input_required'))
    EXECUTE FUNCTION mcpq_webhook_event();
