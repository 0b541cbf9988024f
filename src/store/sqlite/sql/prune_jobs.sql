DELETE FROM jobs WHERE finished_at IS NOT NULL AND finished_at < ?1
