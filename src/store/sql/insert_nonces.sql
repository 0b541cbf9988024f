INSERT OR IGNORE INTO nonces (bucket, h, expires_ms)
SELECT value ->> '$.e' / 60000, unhex(value ->> '$.h'), value ->> '$.e'
FROM json_each(?1)
