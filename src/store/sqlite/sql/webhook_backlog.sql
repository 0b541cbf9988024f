SELECT count(*) FROM webhook_outbox WHERE done_at IS NULL
