-- $1 = job ids: those that carry a trace context (docs/TRACING.md).
SELECT id, tool, trace_context, lease_expires_at FROM jobs
WHERE id = ANY($1) AND trace_context IS NOT NULL
