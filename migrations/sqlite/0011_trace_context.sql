-- Traces (docs/TRACING.md): the W3C context of the call that created a job (`traceparent`,
-- then a newline and `tracestate` if any), so its attempts join the caller's trace from any
-- worker, after any restart. NULL unless the daemon traced (and sampled) the call: a
-- traced batch writes it in the same transaction as the job (see store::sqlite::writer).
ALTER TABLE jobs ADD COLUMN trace_context TEXT;
