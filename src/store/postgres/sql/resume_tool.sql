-- mcpq jobs resume TOOL: $1 tool.
DELETE FROM paused_tools WHERE tool = $1
