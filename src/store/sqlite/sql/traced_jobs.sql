-- ?1 = JSON array of job ids: those that carry a trace context (docs/TRACING.md).
SELECT id, tool, trace_context, lease_expires_at FROM jobs
WHERE id IN (SELECT value FROM json_each(?1)) AND trace_context IS NOT NULL
