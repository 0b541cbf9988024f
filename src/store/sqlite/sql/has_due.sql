-- Whether any queued job of a tool that is not paused is due: one range of jobs_queued per
-- value of its first column (`capped`), each read from its head.
SELECT EXISTS (SELECT 1 FROM jobs WHERE state = 'queued' AND capped = 0
                                   AND run_at - boost <= ?1 AND run_at <= ?1
                                   AND tool NOT IN (SELECT tool FROM paused_tools))
    OR EXISTS (SELECT 1 FROM jobs WHERE state = 'queued' AND capped = 1
                                   AND run_at - boost <= ?1 AND run_at <= ?1
                                   AND tool NOT IN (SELECT tool FROM paused_tools))
