-- One batch of webhook events done (delivered or given up) before $1, with the jobs'
-- retention; $2 batch size.
DELETE FROM webhook_outbox WHERE seq IN (
    SELECT seq FROM webhook_outbox WHERE done_at IS NOT NULL AND done_at < $1 LIMIT $2
)
