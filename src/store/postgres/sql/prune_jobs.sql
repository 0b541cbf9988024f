-- One batch of retention: $1 finished before, $2 batch size. Run until it deletes fewer than
-- $2, so no statement holds locks or builds WAL for long.
DELETE FROM jobs WHERE seq IN (
    SELECT seq FROM jobs WHERE finished_at IS NOT NULL AND finished_at < $1 LIMIT $2
)
