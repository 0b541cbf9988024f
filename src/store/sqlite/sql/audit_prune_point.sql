-- The last record a retention pass deletes: the newest written before ?1, at most ?2 records
-- past the checkpoint ?3.
SELECT seq, digest FROM audit
WHERE seq <= (SELECT max(seq) FROM audit WHERE at < ?1) AND seq <= ?3 + ?2
ORDER BY seq DESC
LIMIT 1
