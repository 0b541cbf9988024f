SELECT EXISTS (SELECT 1 FROM jobs WHERE state = 'queued' AND run_at - boost <= $1 AND run_at <= $1
                                   AND tool NOT IN (SELECT tool FROM paused_tools))
