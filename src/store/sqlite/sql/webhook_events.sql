-- The webhook events of jobs whose state this transaction just changed (docs/WEBHOOKS.md):
-- ?1 = JSON array of their ids. Only a job with a callback, in a state that is an event,
-- gets a row: a snapshot of the job as it is now (it may move on, or be pruned, before
-- delivery). Callers pass only ids their own statement moved, so an event is written once.
INSERT INTO webhook_outbox (job_id, client_id, url, state, tool, attempt, result, error,
                            input_requests, created_at, next_at)
SELECT id, client_id, callback, state, tool, attempt, result,
       CASE WHEN state IN ('failed', 'cancelled') THEN errors ->> '$[#-1].error' END,
       CASE WHEN state = 'input_required' THEN input_requests END,
       COALESCE(finished_at, run_at), COALESCE(finished_at, run_at)
FROM jobs
WHERE id IN (SELECT value FROM json_each(?1))
  AND callback IS NOT NULL
  AND state IN ('succeeded', 'failed', 'cancelled', 'input_required')
