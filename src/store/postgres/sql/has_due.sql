-- Whether any queued job of a tool that is not paused is due (an idle worker asks before it
-- takes a write lock). Each arm is one range of jobs_queued (its first column is `capped`),
-- ordered as the index with LIMIT 1, so the planner walks that index rather than guessing
-- from the filters' selectivity; the paused list is one InitPlan.
SELECT EXISTS (SELECT 1 FROM jobs
               WHERE state = 'queued' AND NOT capped AND run_at - boost <= $1 AND run_at <= $1
                 AND tool <> ALL (ARRAY(SELECT tool FROM paused_tools))
               ORDER BY run_at - boost, seq LIMIT 1)
    OR EXISTS (SELECT 1 FROM jobs
               WHERE state = 'queued' AND capped AND run_at - boost <= $1 AND run_at <= $1
                 AND tool <> ALL (ARRAY(SELECT tool FROM paused_tools))
               ORDER BY run_at - boost, seq LIMIT 1)
