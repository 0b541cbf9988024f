-- $1 tool, $2 tokens left, $3 now.
INSERT INTO tool_rates (tool, tokens, updated_at) VALUES ($1, $2, $3)
ON CONFLICT (tool) DO UPDATE SET tokens = excluded.tokens, updated_at = excluded.updated_at
