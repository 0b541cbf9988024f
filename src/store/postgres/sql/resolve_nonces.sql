-- Which of a batch's nonce keys are held by a live row (after an unknown commit outcome):
-- such a nonce may be the batch's own, so its caller is told to retry with a new envelope.
SELECT key FROM nonces WHERE key = ANY($1::bytea[]) AND expires_ms >= $2
