//! The daemon's audit writer: builds the records of calls, refusals and reloads and hands
//! them to the store (docs/AUDIT.md), and bounds what refusals can write.
//!
//! An accepted job's record is not written here: it rides on the job into the group commit
//! ([`Auditor::job_entry`]). Everything else is written behind. Refusals are coalesced: the
//! same (client, tool, code) within one flush window (one second) is one record with a
//! count, and at most `[audit] refusals_per_sec` distinct refusal records are kept per
//! window; the rest are counted in one overflow record. So an unauthenticated flood costs at
//! most that many rows a second, whatever it sends.
//!
//! It must not know HTTP or JSON-RPC (the transports call it) nor run statements (the
//! store's group commit seals and writes).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{args_digest, Entry, Kind};
use crate::config::AuditSettings;
use crate::store::Store;

/// How often coalesced refusals are written.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// The actor of the overflow record.
pub const OVERFLOW_ACTOR: &str = "*";

/// What a transport knows of one call, for its record.
#[derive(Debug, Clone, Copy)]
pub struct CallFacts<'a> {
    /// `v1`, `mcp`, `schedule`.
    pub via: &'static str,
    /// The client (as claimed, for a refusal before the signature proved it).
    pub client: &'a str,
    pub tool: &'a str,
    /// The canonical arguments, when the call had any that parsed.
    pub args: Option<&'a str>,
    pub request_id: &'a str,
}

type RefusalKey = (String, String, String);

#[derive(Default)]
struct Window {
    refusals: HashMap<RefusalKey, Entry>,
    overflow: Option<Entry>,
}

pub struct Auditor {
    store: Arc<dyn Store>,
    enabled: bool,
    full_arguments: HashSet<String>,
    per_window: usize,
    window: Mutex<Window>,
}

impl Auditor {
    pub fn new(settings: &AuditSettings, store: Arc<dyn Store>) -> Auditor {
        Auditor {
            store,
            enabled: settings.enabled,
            full_arguments: settings.full_arguments.iter().cloned().collect(),
            per_window: settings.refusals_per_sec.max(1) as usize,
            window: Mutex::new(Window::default()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// A call's record: who, what tool, the arguments' digest (and the arguments if the
    /// tool is in `full_arguments`), the request id, the endpoint.
    pub fn call_entry(&self, now: i64, c: &CallFacts<'_>, outcome: &str) -> Entry {
        let mut e = Entry::new(now, Kind::Call, c.client, outcome);
        e.tool = (!c.tool.is_empty()).then(|| c.tool.to_string());
        if let Some(args) = c.args {
            e.args_digest = Some(args_digest(args));
            if self.full_arguments.contains(c.tool) {
                e.args = Some(args.to_string());
            }
        }
        e.request_id = (!c.request_id.is_empty()).then(|| c.request_id.to_string());
        e.detail = Some(c.via.to_string());
        e.trace_id = crate::otel::current_trace_id();
        e
    }

    /// The record an accepted job carries into the group commit (`None` when audit is off).
    pub fn job_entry(&self, now: i64, c: &CallFacts<'_>) -> Option<Box<Entry>> {
        self.enabled
            .then(|| Box::new(self.call_entry(now, c, "accepted")))
    }

    /// An authenticated call's outcome (one record each, written behind).
    pub fn call(&self, now: i64, c: &CallFacts<'_>, outcome: &str) {
        if !self.enabled {
            return;
        }
        metrics::counter!(crate::telemetry::names::AUDIT_RECORDS, "kind" => "call").increment(1);
        self.store.audit(vec![self.call_entry(now, c, outcome)]);
    }

    /// A refused call (`code`): coalesced with identical refusals of the window.
    pub fn refusal(&self, now: i64, c: &CallFacts<'_>, code: &str) {
        if !self.enabled {
            return;
        }
        let key = (c.client.to_string(), c.tool.to_string(), code.to_string());
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = w.refusals.get_mut(&key) {
            e.count = e.count.saturating_add(1);
            metrics::counter!(crate::telemetry::names::AUDIT_COALESCED).increment(1);
            return;
        }
        if w.refusals.len() >= self.per_window {
            metrics::counter!(crate::telemetry::names::AUDIT_COALESCED).increment(1);
            match &mut w.overflow {
                Some(e) => e.count = e.count.saturating_add(1),
                None => {
                    let mut e =
                        Entry::new(now, Kind::Refusal, OVERFLOW_ACTOR, "refusals_over_limit");
                    e.detail = Some(format!(
                        "refusals beyond {} distinct ones in this second",
                        self.per_window
                    ));
                    w.overflow = Some(e);
                }
            }
            return;
        }
        let mut e = self.call_entry(now, c, code);
        e.kind = Kind::Refusal;
        w.refusals.insert(key, e);
    }

    /// Writes the window's refusals behind (the flush loop, and at shutdown).
    pub fn flush(&self) {
        let w = std::mem::take(&mut *self.window.lock().unwrap_or_else(|p| p.into_inner()));
        let mut entries: Vec<Entry> = w.refusals.into_values().collect();
        entries.sort_by_key(|e| e.at);
        entries.extend(w.overflow);
        if entries.is_empty() {
            return;
        }
        metrics::counter!(crate::telemetry::names::AUDIT_RECORDS, "kind" => "refusal")
            .increment(entries.len() as u64);
        self.store.audit(entries);
    }

    /// A configuration (and key) reload: `outcome` `ok` or `refused`, with its summary or
    /// error.
    pub fn reload(&self, now: i64, outcome: &str, detail: &str) {
        if !self.enabled {
            return;
        }
        let mut e = Entry::new(now, Kind::Reload, "SIGHUP", outcome);
        e.detail = Some(detail.to_string());
        metrics::counter!(crate::telemetry::names::AUDIT_RECORDS, "kind" => "reload").increment(1);
        self.store.audit(vec![e]);
    }

    /// Flushes coalesced refusals every [`FLUSH_EVERY`] until `stop`, then once more.
    pub async fn run(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        if !self.enabled {
            return;
        }
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => self.flush(),
            }
        }
        self.flush();
    }
}
