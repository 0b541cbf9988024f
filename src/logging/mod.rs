//! Logging: picks text or JSON lines and installs the `tracing` subscriber.
//!
//! Text on a terminal or a file; one JSON object per line under journald (when
//! `JOURNAL_STREAM` names our stderr, as systemd sets it) or when `log.format = "json"`.
//! A JSON line carries, at its top level, the fields of every span it was written in:
//! `request_id`, `client_id` and `tool` for a call (the `request` span in `server`),
//! `job_id`, `tool`, `client_id` and `attempt` for a job attempt (the `job` span in
//! `worker`), so `jq 'select(.job_id == "…")'` finds everything about one job.
//!
//! It must not decide what is logged: modules log, and never secrets or payloads (args,
//! results); `tests/it/auth.rs` greps both formats for the keys.

pub mod repeats;

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

use crate::config::{LogFormat, LogSettings};

/// sqlx's pool warns once per dead pooled connection and per slow acquire: during a
/// database outage that is a line per connection per retry, which `repeats` cannot collapse.
/// mcpq reports those faults itself (collapsed), so the pool's own warnings are silenced
/// unless the filter names sqlx.
fn quiet_pool(filter: &str) -> String {
    if filter.contains("sqlx") {
        filter.to_string()
    } else {
        format!("{filter},sqlx_core::pool=error,sqlx::pool=error")
    }
}

/// A layer to install beside the log lines (the trace exporter's), and the `tracing` target
/// of its spans, which log lines leave out.
pub type Extra = (Box<dyn Layer<Registry> + Send + Sync>, &'static str);

/// Installs the global subscriber. `RUST_LOG`, when set, wins over `log.level`. `extra`:
/// see [`Extra`]; without one the subscriber is exactly the log lines'.
pub fn init(settings: &LogSettings, extra: Option<Extra>) {
    let wanted = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| settings.level.clone());
    let filter = tracing_subscriber::EnvFilter::try_new(quiet_pool(&wanted))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if let Some((layer, target)) = extra {
        return init_layered(settings, filter, layer, target);
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json_wanted(settings.format) {
        let _ = builder
            .fmt_fields(JsonFields::new())
            .event_format(FlatJson)
            .try_init();
    } else {
        // Colour codes only for a terminal.
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let _ = builder.with_ansi(ansi).try_init();
    }
}

/// The log lines as a filtered layer beside `extra` (per-layer filters: each sees only
/// what it asked for, so the exporter's spans neither pass `log.level` nor show in lines).
fn init_layered(
    settings: &LogSettings,
    filter: tracing_subscriber::EnvFilter,
    extra: Box<dyn Layer<Registry> + Send + Sync>,
    target: &'static str,
) {
    let not_traces = filter_fn(move |m| m.target() != target);
    let registry = Registry::default().with(extra);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    if json_wanted(settings.format) {
        let fmt = fmt
            .fmt_fields(JsonFields::new())
            .event_format(FlatJson)
            .with_filter(filter)
            .with_filter(not_traces);
        let _ = registry.with(fmt).try_init();
    } else {
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let fmt = fmt
            .with_ansi(ansi)
            .with_filter(filter)
            .with_filter(not_traces);
        let _ = registry.with(fmt).try_init();
    }
}

fn json_wanted(format: LogFormat) -> bool {
    match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => stderr_is_journal(),
    }
}

/// systemd sets `JOURNAL_STREAM=DEV:INODE` for a unit whose output goes to the journal;
/// it only applies while our stderr is still that stream (a child redirected elsewhere
/// inherits the variable).
fn stderr_is_journal() -> bool {
    let Ok(value) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.split_once(':') else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    // SAFETY: fstat writes into the zeroed struct we own; fd 2 is only inspected.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(2, &mut st) } != 0 {
        return false;
    }
    st.st_dev as u64 == dev && st.st_ino as u64 == ino
}

/// Shows client-chosen text (a request id, an unknown tool's name) in a log line with
/// control characters escaped, so a value cannot forge a line of its own in text logs.
pub struct Printable<'a>(pub &'a str);

impl fmt::Display for Printable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                fmt::Write::write_char(f, c)?;
            }
        }
        Ok(())
    }
}

/// One JSON object per event: time, level, target, the fields of every enclosing span
/// (outermost first, inner ones win), then the event's own fields.
struct FlatJson;

impl<S, N> FormatEvent<S, N> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut obj = Map::new();
        let ts_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        obj.insert("ts_ms".into(), ts_ms.into());
        obj.insert("level".into(), meta.level().as_str().into());
        obj.insert("target".into(), meta.target().into());
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let ext = span.extensions();
                if let Some(fields) = ext.get::<FormattedFields<N>>() {
                    if let Ok(Value::Object(m)) = serde_json::from_str::<Value>(fields.as_str()) {
                        obj.extend(m);
                    }
                }
            }
        }
        event.record(&mut JsonVisitor(&mut obj));
        writeln!(writer, "{}", Value::Object(obj))
    }
}

struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_control_characters() {
        assert_eq!(Printable("a\nb\u{1b}[31m").to_string(), "a\\nb\\u{1b}[31m");
        assert_eq!(Printable("req-1").to_string(), "req-1");
    }

    #[test]
    fn journal_stream_must_name_our_stderr() {
        // A value that cannot be fd 2's device and inode.
        std::env::set_var("JOURNAL_STREAM", "0:0");
        assert!(!stderr_is_journal());
        std::env::set_var("JOURNAL_STREAM", "garbage");
        assert!(!stderr_is_journal());
        std::env::remove_var("JOURNAL_STREAM");
        assert!(!json_wanted(LogFormat::Auto));
        assert!(json_wanted(LogFormat::Json));
    }
}
