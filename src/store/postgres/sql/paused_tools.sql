SELECT tool, paused_at, paused_by FROM paused_tools ORDER BY tool
