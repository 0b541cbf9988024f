//! The spans mcpq writes (docs/TRACING.md lists them): a request's server span, through the
//! `tracing` bridge, named and attributed per OpenTelemetry's MCP and `gen_ai` conventions;
//! and a job's spans (waiting for a claim, each attempt, the rescue of an attempt whose
//! worker died, the group commit and the claim), built through the SDK with the times and
//! ids the store gives, since they may be written by another process than the one that
//! began them.
//!
//! It must not be called while traces are off: every caller checks [`super::enabled`] (or
//! holds a context that only exists when they are on).

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{Link, SpanContext, SpanId, SpanKind, Status, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue};
use sha2::{Digest, Sha256};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::{next_span_id, tracer, TraceHeaders, TARGET};

/// The most links a batch span (a group commit, a claim) carries to the other traces in it.
const MAX_LINKS: usize = 32;

/// `mcp.method.name` of a call on `/v1/call` (the same operation as MCP's).
pub const TOOLS_CALL: &str = "tools/call";

/// A request's server span: `{mcp.method.name} {target}` (the tool's name for a tool call),
/// kind SERVER, a child of the caller's context when it sent one. `link`: a second
/// context to link (the HTTP header's, when `params._meta` gave the parent).
pub fn request_span(
    method: &str,
    tool: Option<&str>,
    parent: Option<SpanContext>,
    link: Option<SpanContext>,
) -> tracing::Span {
    let name = match tool {
        Some(t) => format!("{method} {t}"),
        None => method.to_string(),
    };
    let span =
        tracing::info_span!(target: TARGET, "request", otel.name = %name, otel.kind = "server");
    if let Some(p) = parent {
        let _ = span.set_parent(Context::new().with_remote_span_context(p));
    }
    if let Some(l) = link {
        span.add_link(l);
    }
    span.set_attribute("mcp.method.name", method.to_string());
    span.set_attribute("network.transport", "tcp");
    span.set_attribute("network.protocol.name", "http");
    if let Some(t) = tool {
        span.set_attribute("gen_ai.tool.name", t.to_string());
        if method == TOOLS_CALL {
            span.set_attribute("gen_ai.operation.name", "execute_tool");
        }
    }
    span
}

/// Sets a string attribute on a request span.
pub fn set(span: &tracing::Span, key: &'static str, value: impl Into<String>) {
    span.set_attribute(key, value.into());
}

/// Marks a request span failed: `error.type` (a JSON-RPC code, an mcpq error code, or
/// `tool_error`) and the ERROR status with `message`.
pub fn fail(span: &tracing::Span, error_type: &str, message: &str) {
    span.set_attribute("error.type", error_type.to_string());
    span.set_status(Status::error(message.to_string()));
}

/// The context a request span hands on (to its job, to a tool it runs).
pub fn headers_of(span: &tracing::Span) -> Option<TraceHeaders> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| TraceHeaders::of(&sc))
}

/// The span id of attempt `attempt` of job `job_id`: derived, not drawn, so the worker
/// running it (and the tool it starts, parented on it) and a rescuer writing it after the
/// worker died name the same span.
pub fn attempt_span_id(job_id: &str, attempt: u32) -> SpanId {
    let d = Sha256::new()
        .chain_update(job_id.as_bytes())
        .chain_update(attempt.to_be_bytes())
        .finalize();
    let mut id = [0u8; 8];
    id.copy_from_slice(&d[..8]);
    if id == [0u8; 8] {
        id[7] = 1;
    }
    SpanId::from_bytes(id)
}

/// The context a job's attempt hands on to its tool: the job's trace, the attempt's span.
pub fn attempt_headers(job: &TraceHeaders, job_id: &str, attempt: u32) -> Option<TraceHeaders> {
    let sc = job.span_context()?;
    let own = SpanContext::new(
        sc.trace_id(),
        attempt_span_id(job_id, attempt),
        sc.trace_flags(),
        true,
        sc.trace_state().clone(),
    );
    Some(TraceHeaders::of(&own))
}

fn at_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

/// One span built through the SDK with its own times (and, for an attempt, its own id).
struct Built {
    name: String,
    kind: SpanKind,
    parent: SpanContext,
    id: Option<SpanId>,
    start: SystemTime,
    end: SystemTime,
    attrs: Vec<KeyValue>,
    links: Vec<Link>,
    error: Option<(String, String)>,
}

impl Built {
    fn emit(self) {
        let Some(tracer) = tracer() else { return };
        if !self.parent.is_sampled() {
            return;
        }
        let mut attrs = self.attrs;
        if let Some((ty, _)) = &self.error {
            attrs.push(KeyValue::new("error.type", ty.clone()));
        }
        let builder = tracer
            .span_builder(Cow::Owned(self.name))
            .with_kind(self.kind)
            .with_start_time(self.start)
            .with_attributes(attrs)
            .with_links(self.links);
        let cx = Context::new().with_remote_span_context(self.parent);
        if let Some(id) = self.id {
            next_span_id(id);
        }
        let mut span = tracer.build_with_context(builder, &cx);
        if let Some((_, message)) = self.error {
            opentelemetry::trace::Span::set_status(&mut span, Status::error(message));
        }
        opentelemetry::trace::Span::end_with_timestamp(&mut span, self.end.max(self.start));
    }
}

/// What a job's spans share: its trace, id and tool.
pub struct JobTrace<'a> {
    pub context: &'a TraceHeaders,
    pub job_id: &'a str,
    pub tool: &'a str,
}

impl JobTrace<'_> {
    fn parent(&self) -> Option<SpanContext> {
        self.context.span_context()
    }

    fn attrs(&self, attempt: u32) -> Vec<KeyValue> {
        vec![
            KeyValue::new("gen_ai.tool.name", self.tool.to_string()),
            KeyValue::new("mcpq.job.id", self.job_id.to_string()),
            KeyValue::new("mcpq.job.attempt", i64::from(attempt)),
        ]
    }

    /// A link to the span of the attempt before `attempt` (a retry follows from it).
    fn previous(&self, attempt: u32) -> Vec<Link> {
        let Some(p) = self.parent() else {
            return Vec::new();
        };
        if attempt <= 1 {
            return Vec::new();
        }
        let prev = SpanContext::new(
            p.trace_id(),
            attempt_span_id(self.job_id, attempt - 1),
            p.trace_flags(),
            true,
            p.trace_state().clone(),
        );
        vec![Link::new(
            prev,
            vec![KeyValue::new("mcpq.link", "previous_attempt")],
            0,
        )]
    }

    /// `queue {tool}`: from the moment the attempt was due to its claim.
    pub fn wait(&self, attempt: u32, due_ms: i64, claimed_ms: i64, worker: &str) {
        let Some(parent) = self.parent() else { return };
        let mut attrs = self.attrs(attempt);
        attrs.push(KeyValue::new("mcpq.worker.id", worker.to_string()));
        Built {
            name: format!("queue {}", self.tool),
            kind: SpanKind::Internal,
            parent,
            id: None,
            start: at_ms(due_ms),
            end: at_ms(claimed_ms),
            attrs,
            links: self.previous(attempt),
            error: None,
        }
        .emit();
    }

    /// `execute_tool {tool}`: one attempt, from its claim to its outcome, with the id of
    /// [`attempt_span_id`]. `error`: (`error.type`, message) of an attempt that failed.
    pub fn attempt(
        &self,
        attempt: u32,
        start: SystemTime,
        outcome: &str,
        worker: &str,
        error: Option<(String, String)>,
    ) {
        let Some(parent) = self.parent() else { return };
        let mut attrs = self.attrs(attempt);
        attrs.push(KeyValue::new("gen_ai.operation.name", "execute_tool"));
        attrs.push(KeyValue::new("mcpq.job.outcome", outcome.to_string()));
        attrs.push(KeyValue::new("mcpq.worker.id", worker.to_string()));
        Built {
            name: format!("execute_tool {}", self.tool),
            kind: SpanKind::Internal,
            parent,
            id: Some(attempt_span_id(self.job_id, attempt)),
            start,
            end: SystemTime::now(),
            attrs,
            links: self.previous(attempt),
            error,
        }
        .emit();
    }

    /// An attempt whose worker died, written by the rescuer under the attempt's own span id
    /// (its worker's record of it died with it): from its lease's expiry to the rescue,
    /// failed with `worker_lost`; then `rescue {tool}`, linked to it.
    pub fn rescued(&self, attempt: u32, lease_expired_ms: i64, now_ms: i64, outcome: &str) {
        let Some(parent) = self.parent() else { return };
        let mut attrs = self.attrs(attempt);
        attrs.push(KeyValue::new("gen_ai.operation.name", "execute_tool"));
        attrs.push(KeyValue::new("mcpq.job.outcome", "worker_lost"));
        attrs.push(KeyValue::new("mcpq.span.written_by", "rescuer"));
        let lost = attempt_span_id(self.job_id, attempt);
        Built {
            name: format!("execute_tool {}", self.tool),
            kind: SpanKind::Internal,
            parent: parent.clone(),
            id: Some(lost),
            start: at_ms(lease_expired_ms.min(now_ms)),
            end: at_ms(now_ms),
            attrs,
            links: self.previous(attempt),
            error: Some((
                "worker_lost".into(),
                "the worker stopped heartbeating (crashed or partitioned)".into(),
            )),
        }
        .emit();
        let mut attrs = self.attrs(attempt);
        attrs.push(KeyValue::new("mcpq.job.outcome", outcome.to_string()));
        let lost_cx = SpanContext::new(
            parent.trace_id(),
            lost,
            parent.trace_flags(),
            true,
            parent.trace_state().clone(),
        );
        Built {
            name: format!("rescue {}", self.tool),
            kind: SpanKind::Internal,
            parent,
            id: None,
            start: at_ms(now_ms),
            end: SystemTime::now(),
            attrs,
            links: vec![Link::new(
                lost_cx,
                vec![KeyValue::new("mcpq.link", "lost_attempt")],
                0,
            )],
            error: None,
        }
        .emit();
    }
}

/// One span for a store batch (`mcpq.store.commit`, `mcpq.store.claim`) that carried
/// traced jobs: a child of the first one's context, linked to the others (up to 32), so a
/// slow commit shows in the traces it delayed without a span per row. `attrs` describe
/// the whole batch.
pub fn batch(
    name: &'static str,
    start: SystemTime,
    contexts: &[TraceHeaders],
    attrs: Vec<KeyValue>,
) {
    let mut sampled = contexts
        .iter()
        .filter_map(TraceHeaders::span_context)
        .filter(SpanContext::is_sampled);
    let Some(parent) = sampled.next() else { return };
    let links = sampled
        .take(MAX_LINKS)
        .map(|sc| Link::new(sc, Vec::new(), 0))
        .collect();
    let mut attrs = attrs;
    attrs.push(KeyValue::new("mcpq.batch.traced", contexts.len() as i64));
    Built {
        name: name.to_string(),
        kind: SpanKind::Internal,
        parent,
        id: None,
        start,
        end: SystemTime::now(),
        attrs,
        links,
        error: None,
    }
    .emit();
}

/// `KeyValue` for callers that build batch attributes (no `opentelemetry` import needed).
pub fn attr(key: &'static str, value: i64) -> KeyValue {
    KeyValue::new(key, value)
}

/// `db.system.name` for a batch span.
pub fn db_system(name: &'static str) -> KeyValue {
    KeyValue::new("db.system.name", name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempt_ids_are_stable_per_job_and_attempt() {
        assert_eq!(attempt_span_id("j1", 1), attempt_span_id("j1", 1));
        assert_ne!(attempt_span_id("j1", 1), attempt_span_id("j1", 2));
        assert_ne!(attempt_span_id("j1", 1), attempt_span_id("j2", 1));
        let job = TraceHeaders {
            traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
            tracestate: None,
        };
        let h = attempt_headers(&job, "j1", 2).unwrap();
        let sc = h.span_context().unwrap();
        assert_eq!(sc.trace_id(), job.span_context().unwrap().trace_id());
        assert_eq!(sc.span_id(), attempt_span_id("j1", 2));
    }
}
