-- Webhook events done (delivered or given up) before ?1, with the jobs' retention.
DELETE FROM webhook_outbox WHERE done_at IS NOT NULL AND done_at < ?1
