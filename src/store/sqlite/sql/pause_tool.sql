-- mcpq jobs pause TOOL: ?1 tool, ?2 now, ?3 who. Pausing a paused tool keeps its first record.
INSERT INTO paused_tools (tool, paused_at, paused_by) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING
