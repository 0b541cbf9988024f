-- A rate-limited tool's token bucket: ?1 tool. No row: a full bucket.
SELECT tokens, updated_at FROM tool_rates WHERE tool = ?1
