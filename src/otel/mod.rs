//! OpenTelemetry traces (docs/TRACING.md): the exporter and its `tracing` layer, installed
//! only when `[otel] enabled`; the W3C trace context as mcpq carries it (HTTP headers,
//! `params._meta`, the job's stored column, a tool's environment and headers); and the
//! spans of a job's life in [`spans`].
//!
//! Off (the default) costs one relaxed atomic load per place that could trace: no layer
//! is installed, no header is parsed, nothing is stored with a job. It must not decide
//! what a call or a job does, and never puts arguments, results or secrets in a span.

pub mod spans;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use opentelemetry::propagation::TextMapPropagator;
pub use opentelemetry::trace::SpanContext;
use opentelemetry::trace::{SpanId, TraceContextExt, TraceId, TracerProvider as _};
use opentelemetry::Context;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    IdGenerator, RandomIdGenerator, Sampler, SdkTracer, SdkTracerProvider,
};
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::{Layer, Registry};

use crate::config::OtelSettings;

/// The `tracing` target of mcpq's own spans: the only ones the OpenTelemetry layer sees,
/// and ones the log lines leave out.
pub const TARGET: &str = "mcpq::otel";

static ENABLED: AtomicBool = AtomicBool::new(false);
static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// Whether traces are on in this process: the one check every traced place makes first.
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// A W3C trace context as it travels: `traceparent` and, if any, `tracestate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceHeaders {
    pub traceparent: String,
    pub tracestate: Option<String>,
}

impl TraceHeaders {
    /// The context of `sc` (a span of ours, or a remote one).
    pub fn of(sc: &SpanContext) -> TraceHeaders {
        let cx = Context::new().with_remote_span_context(sc.clone());
        let mut map = HashMap::new();
        TraceContextPropagator::new().inject_context(&cx, &mut map);
        TraceHeaders {
            traceparent: map.remove("traceparent").unwrap_or_default(),
            tracestate: map.remove("tracestate").filter(|s| !s.is_empty()),
        }
    }

    /// The span context these headers name, if `traceparent` is valid (W3C rules).
    pub fn span_context(&self) -> Option<SpanContext> {
        remote(Some(&self.traceparent), self.tracestate.as_deref())
    }

    /// Whether the caller's sampled flag is set.
    pub fn sampled(&self) -> bool {
        self.span_context().is_some_and(|sc| sc.is_sampled())
    }

    /// The form stored with a job: `traceparent`, then a newline and `tracestate` if any
    /// (a newline cannot occur in either).
    pub fn to_stored(&self) -> String {
        match &self.tracestate {
            Some(s) => format!("{}\n{s}", self.traceparent),
            None => self.traceparent.clone(),
        }
    }

    pub fn from_stored(text: &str) -> Option<TraceHeaders> {
        let (tp, ts) = match text.split_once('\n') {
            Some((tp, ts)) => (tp, Some(ts.to_string())),
            None => (text, None),
        };
        let h = TraceHeaders {
            traceparent: tp.to_string(),
            tracestate: ts,
        };
        h.span_context().map(|_| h)
    }
}

/// A remote span context from W3C `traceparent` / `tracestate` values; `None` when absent
/// or invalid (an invalid one is ignored, as the W3C recommends, never refused).
pub fn remote(traceparent: Option<&str>, tracestate: Option<&str>) -> Option<SpanContext> {
    let tp = traceparent?;
    let mut map = HashMap::with_capacity(2);
    map.insert("traceparent".to_string(), tp.trim().to_string());
    if let Some(ts) = tracestate {
        map.insert("tracestate".to_string(), ts.to_string());
    }
    let cx = TraceContextPropagator::new().extract(&map);
    let sc = cx.span().span_context().clone();
    sc.is_valid().then_some(sc)
}

tokio::task_local! {
    /// The trace context a tool started now should carry (a sync call's request span, a
    /// job attempt's span): set around the call only while traces are on.
    static CURRENT: TraceHeaders;
}

/// The trace context of the call or attempt this task runs, if traced.
pub fn current() -> Option<TraceHeaders> {
    if !enabled() {
        return None;
    }
    CURRENT.try_with(Clone::clone).ok()
}

/// Runs `f` with `headers` as [`current`] (or as it is, for `None`).
pub async fn scope<F: Future>(headers: Option<TraceHeaders>, f: F) -> F::Output {
    match headers {
        Some(h) => CURRENT.scope(h, f).await,
        None => f.await,
    }
}

/// Runs `f` with `headers` as [`current`] (or as it is, for `None`), synchronously.
pub fn sync_scope<R>(headers: Option<TraceHeaders>, f: impl FnOnce() -> R) -> R {
    match headers {
        Some(h) => CURRENT.sync_scope(h, f),
        None => f(),
    }
}

/// The trace id (32 hex digits) of the call or attempt this task runs, if traced.
pub fn current_trace_id() -> Option<String> {
    current().and_then(|h| h.traceparent.split('-').nth(1).map(str::to_string))
}

thread_local! {
    /// A span id the next span built on this thread must take (see [`spans::attempt_span_id`]).
    static NEXT_SPAN_ID: std::cell::Cell<Option<SpanId>> = const { std::cell::Cell::new(None) };
}

/// Random ids, except a span id chosen in advance: an attempt's span id is derived from
/// the job and attempt so that a tool's span (parented on it while it runs) and the span
/// the rescuer writes for an attempt whose worker died agree on it.
#[derive(Debug)]
struct Ids(RandomIdGenerator);

impl IdGenerator for Ids {
    fn new_trace_id(&self) -> TraceId {
        self.0.new_trace_id()
    }
    fn new_span_id(&self) -> SpanId {
        NEXT_SPAN_ID
            .with(|c| c.take())
            .unwrap_or_else(|| self.0.new_span_id())
    }
}

/// The exporter of this process; flushed and stopped by [`Guard::shutdown`].
pub struct Guard {
    provider: SdkTracerProvider,
}

impl Guard {
    /// Exports what is pending and stops the exporter (at most a few seconds).
    pub async fn shutdown(self) {
        ENABLED.store(false, Ordering::Relaxed);
        let provider = self.provider;
        let done = tokio::task::spawn_blocking(move || {
            let _ = provider.force_flush();
            provider.shutdown_with_timeout(std::time::Duration::from_secs(5))
        })
        .await;
        if let Ok(Err(e)) = done {
            tracing::warn!(error = %e, "trace exporter shutdown");
        }
    }
}

/// The `tracing` layer (to install with the log layer) and the exporter's guard.
pub type Installed = (Box<dyn Layer<Registry> + Send + Sync>, Guard);

/// Starts the exporter when `[otel] enabled`; `Ok(None)` when off. Must run on the
/// tokio runtime (the batch exporter is a task of it). `role`: `serve` or `worker`.
pub fn install(s: &OtelSettings, role: &str) -> Result<Option<Installed>, String> {
    if !s.enabled {
        return Ok(None);
    }
    let exporter = exporter(s)?;
    let name = first_set(&s.service_name, &["OTEL_SERVICE_NAME"]).unwrap_or_else(|| "mcpq".into());
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(name)
        .with_attribute(opentelemetry::KeyValue::new(
            "mcpq.process",
            role.to_string(),
        ))
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    let processor =
        opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
            exporter,
            opentelemetry_sdk::runtime::Tokio,
        )
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            s.sampling_ratio,
        ))))
        .with_id_generator(Ids(RandomIdGenerator::default()))
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("mcpq");
    let _ = TRACER.set(tracer.clone());
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(filter_fn(|m| m.target() == TARGET));
    ENABLED.store(true, Ordering::Relaxed);
    Ok(Some((Box::new(layer), Guard { provider })))
}

/// The first non-empty of `configured` and the variables `vars`.
fn first_set(configured: &str, vars: &[&str]) -> Option<String> {
    if !configured.trim().is_empty() {
        return Some(configured.trim().to_string());
    }
    vars.iter()
        .filter_map(|v| std::env::var(v).ok())
        .map(|v| v.trim().to_string())
        .find(|v| !v.is_empty())
}

fn exporter(s: &OtelSettings) -> Result<opentelemetry_otlp::SpanExporter, String> {
    let protocol = first_set(
        &s.protocol,
        &[
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ],
    )
    .unwrap_or_else(|| "http/protobuf".into());
    let endpoint = s.endpoint.trim();
    let built = match protocol.as_str() {
        "grpc" => {
            let b = opentelemetry_otlp::SpanExporter::builder().with_tonic();
            if endpoint.is_empty() {
                b.build()
            } else {
                b.with_endpoint(endpoint).build()
            }
        }
        "http/protobuf" => {
            let b = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary);
            if endpoint.is_empty() {
                b.build()
            } else {
                b.with_endpoint(http_traces_url(endpoint)).build()
            }
        }
        other => {
            return Err(format!(
                "OTLP protocol {other:?} is not supported: use \"http/protobuf\" or \"grpc\""
            ))
        }
    };
    built.map_err(|e| format!("the OTLP exporter: {e}"))
}

/// `[otel] endpoint` for OTLP/HTTP names the collector; its traces path is added unless
/// the URL has a path of its own (as `OTEL_EXPORTER_OTLP_ENDPOINT` works).
fn http_traces_url(endpoint: &str) -> String {
    let base = endpoint.trim_end_matches('/');
    let after_scheme = base.split_once("://").map_or(base, |(_, rest)| rest);
    if after_scheme.contains('/') {
        endpoint.to_string()
    } else {
        format!("{base}/v1/traces")
    }
}

/// Builds a span through the SDK (a span with times or an id of its own, which the
/// `tracing` bridge cannot express), when installed.
pub(crate) fn tracer() -> Option<&'static SdkTracer> {
    if enabled() {
        TRACER.get()
    } else {
        None
    }
}

/// Makes the next span built on this thread take `id`.
pub(crate) fn next_span_id(id: SpanId) {
    NEXT_SPAN_ID.with(|c| c.set(Some(id)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn w3c_context_round_trips_and_invalid_ones_are_ignored() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let sc = remote(Some(tp), Some("rojo=00f067aa0ba902b7")).unwrap();
        assert!(sc.is_sampled());
        let h = TraceHeaders::of(&sc);
        assert_eq!(h.traceparent, tp);
        assert_eq!(h.tracestate.as_deref(), Some("rojo=00f067aa0ba902b7"));
        assert_eq!(TraceHeaders::from_stored(&h.to_stored()), Some(h));
        assert!(remote(
            Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            None
        )
        .is_none());
        assert!(remote(Some("garbage"), None).is_none());
        assert!(TraceHeaders::from_stored("nope").is_none());
    }

    #[test]
    fn http_endpoint_gets_the_traces_path_unless_it_has_one() {
        assert_eq!(http_traces_url("http://c:4318"), "http://c:4318/v1/traces");
        assert_eq!(http_traces_url("http://c:4318/"), "http://c:4318/v1/traces");
        assert_eq!(
            http_traces_url("http://c:4318/custom/path"),
            "http://c:4318/custom/path"
        );
    }
}
