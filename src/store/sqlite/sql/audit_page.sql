-- ?1 after this seq, ?2 a record written at or after (ms), ?3 at most this many packs; in
-- chain order. The caller unpacks and drops the records at or before ?1 and before ?2.
SELECT records FROM audit_packs
WHERE last_seq > ?1 AND max_at >= ?2
ORDER BY first_seq
LIMIT ?3
