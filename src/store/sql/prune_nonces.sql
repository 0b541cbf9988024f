DELETE FROM nonces WHERE bucket < ?1 / 60000
