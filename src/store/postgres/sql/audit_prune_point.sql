-- The last record a retention pass deletes: among the $2 oldest records past the checkpoint
-- $3, the newest written before $1 (a range of the primary key: no index on `at`, which
-- cost every group commit a page).
SELECT seq, digest FROM audit
WHERE seq = (SELECT max(w.seq)
             FROM (SELECT seq, at FROM audit WHERE seq > $3 ORDER BY seq LIMIT $2) AS w
             WHERE w.at < $1)
