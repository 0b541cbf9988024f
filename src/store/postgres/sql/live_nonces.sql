SELECT key, expires_ms FROM nonces WHERE expires_ms >= $1
