SELECT EXISTS (SELECT 1 FROM jobs WHERE state = 'queued' AND run_at <= ?1)
