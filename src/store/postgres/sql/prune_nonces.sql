DELETE FROM nonces WHERE key IN (
    SELECT key FROM nonces WHERE expires_ms < $1 LIMIT $2
)
