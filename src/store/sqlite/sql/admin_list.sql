-- mcpq jobs list: newest first. ?1 state, ?2 client, ?3 tool (NULL = any), ?4 created at or
-- after, ?5 limit. Walks the rowid backwards and stops at the limit.
SELECT id, client_id, tool, state, attempt, max_attempts, created_at, started_at,
       finished_at, lease_owner, run_at
FROM jobs
WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR client_id = ?2)
  AND (?3 IS NULL OR tool = ?3) AND created_at >= ?4
ORDER BY seq DESC
LIMIT ?5
