-- ?1 = latest expiry in the batch, ?2 = packed records (16-byte digest + big-endian i64 expiry each).
INSERT INTO nonce_batches (expires_ms, batch, entries) VALUES (?1, random(), ?2)
