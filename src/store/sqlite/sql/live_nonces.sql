SELECT entries FROM nonce_batches WHERE expires_ms >= ?1
