-- The last pack a retention pass deletes: among the packs that start within the ?2 records
-- past the checkpoint ?3, the newest whose records were all written before ?1 (a range of the
-- primary key). Its last seq and that record's digest become the checkpoint.
SELECT last_seq, records ->> '$[#-1][14]' FROM audit_packs
WHERE first_seq = (SELECT max(first_seq) FROM audit_packs
                   WHERE last_seq > ?3 AND first_seq <= ?3 + ?2 AND max_at < ?1)
