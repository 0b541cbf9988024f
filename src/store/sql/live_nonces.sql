SELECT h, expires_ms FROM nonces WHERE bucket >= ?1 / 60000 AND expires_ms >= ?1
