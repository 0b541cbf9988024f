-- Traces (docs/TRACING.md): the W3C context of the call that created a job (`traceparent`,
-- then a newline and `tracestate` if any), so its attempts join the caller's trace from any
-- worker, after any restart. NULL unless the daemon traced (and sampled) the call: a
-- traced batch writes it in the enqueue statement itself (`enqueue_traced.sql`).
ALTER TABLE jobs ADD COLUMN trace_context text;
