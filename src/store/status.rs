//! Whether this process reaches its store, as its own calls and loops find out: the first
//! availability fault marks the store down (one WARN, `mcpq_store_up` 0), and [`watch`]
//! probes it every second until it answers again (one INFO with the outage's length). The
//! readiness probe, the systemd `STATUS=` line and the log read it.
//!
//! It must not retry or answer anything itself: callers decide what a fault means for their
//! request; this only remembers that it happened.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{Store, StoreError};
use crate::logging::repeats;
use crate::telemetry::names;

/// How often a down store is probed (and the log's repeat summaries flushed).
pub const PROBE_EVERY: Duration = Duration::from_secs(1);

/// After the store comes back, how long faults of operations begun during the outage are
/// not taken for a new one.
pub const SETTLE: Duration = Duration::from_secs(6);

pub struct StoreStatus {
    origin: Instant,
    /// 0 while up; else 1 + the ms since `origin` at which the outage began.
    down_since: AtomicU64,
    /// 1 + the ms since `origin` at which the last outage ended (0: none yet).
    up_since: AtomicU64,
    /// A fault came soon after an outage ended: the next probe decides whether it is a new one.
    suspect: AtomicBool,
    reason: Mutex<String>,
}

impl StoreStatus {
    pub fn new() -> Arc<StoreStatus> {
        metrics::gauge!(names::STORE_UP).set(1.0);
        Arc::new(StoreStatus {
            origin: Instant::now(),
            down_since: AtomicU64::new(0),
            up_since: AtomicU64::new(0),
            suspect: AtomicBool::new(false),
            reason: Mutex::new(String::new()),
        })
    }

    /// Records a store error at `site`: an availability fault marks the store down; every
    /// error goes to the log through [`repeats`] (first in full, then counted). Returns the
    /// availability fault's reason, `None` for an error that is a bug.
    pub fn fault(&self, site: &'static str, e: &StoreError) -> Option<String> {
        let why = e.unavailable();
        if let Some(w) = &why {
            self.down(w);
        }
        repeats::fault(site, e);
        why
    }

    /// Like [`fault`](Self::fault), but only for an availability fault: a bug is left to the
    /// caller to log with its reference (`CallError::internal`).
    pub fn unavailable(&self, site: &'static str, e: &StoreError) -> Option<String> {
        let why = e.unavailable()?;
        self.down(&why);
        repeats::fault(site, e);
        Some(why)
    }

    /// Marks the store down (logged once per outage). A fault within [`SETTLE`] of the store
    /// coming back is most likely an operation that started while it was down (a pool
    /// acquire that waited out its timeout): it only makes the next probe (within a second)
    /// decide, so a late fault does not log a new outage and a real one is still seen.
    pub fn down(&self, why: &str) {
        let at = self.origin.elapsed().as_millis() as u64 + 1;
        let back = self.up_since.load(Ordering::Acquire);
        if self.is_up() && back != 0 && at.saturating_sub(back) < SETTLE.as_millis() as u64 {
            self.suspect.store(true, Ordering::Release);
            return;
        }
        self.mark_down(why, at);
    }

    /// Whether a fault since the last call asked for a probe (see [`down`](Self::down)).
    fn take_suspect(&self) -> bool {
        self.suspect.swap(false, Ordering::AcqRel)
    }

    fn mark_down(&self, why: &str, at: u64) {
        if self
            .down_since
            .compare_exchange(0, at, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            *self.reason.lock().unwrap_or_else(|p| p.into_inner()) = why.to_string();
            metrics::gauge!(names::STORE_UP).set(0.0);
            metrics::counter!(names::STORE_OUTAGES).increment(1);
            tracing::warn!(
                reason = why,
                "store unreachable: {why}; calls that need it are answered store_unavailable"
            );
        }
    }

    /// Marks the store up again: one INFO with the outage's length, and the log's pending
    /// summaries written. One atomic load while it was up.
    pub fn up(&self) {
        if self.down_since.load(Ordering::Acquire) == 0 {
            return;
        }
        let since = self.down_since.swap(0, Ordering::AcqRel);
        if since == 0 {
            return;
        }
        metrics::gauge!(names::STORE_UP).set(1.0);
        let now = self.origin.elapsed().as_millis() as u64 + 1;
        self.up_since.store(now, Ordering::Release);
        let lasted = now - since;
        repeats::flush_all();
        tracing::info!(
            outage_ms = lasted,
            "store reachable again after {:.1} s",
            lasted as f64 / 1000.0
        );
    }

    pub fn is_up(&self) -> bool {
        self.down_since.load(Ordering::Acquire) == 0
    }

    /// For how long the store has been down, and why; `None` while up.
    pub fn outage(&self) -> Option<(Duration, String)> {
        let since = self.down_since.load(Ordering::Acquire);
        if since == 0 {
            return None;
        }
        let now = self.origin.elapsed().as_millis() as u64 + 1;
        let why = self
            .reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        Some((Duration::from_millis(now.saturating_sub(since)), why))
    }

    /// "database unreachable for 12 s (the disk is full)" while down.
    pub fn describe(&self) -> Option<String> {
        self.outage()
            .map(|(d, why)| format!("database unreachable for {} s ({why})", d.as_secs()))
    }
}

/// Probes a down store every [`PROBE_EVERY`] until it answers, then marks it up; flushes the
/// log's repeat summaries on the same tick. Runs until `stop`.
pub async fn watch(store: Arc<dyn Store>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(PROBE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        repeats::flush();
        let status = store.status();
        if status.is_up() && !status.take_suspect() {
            continue;
        }
        let at = status.origin.elapsed().as_millis() as u64 + 1;
        match tokio::time::timeout(PROBE_EVERY * 2, store.probe()).await {
            Ok(Ok(())) => status.up(),
            Ok(Err(e)) => {
                if let Some(why) = e.unavailable() {
                    status.mark_down(&why, at);
                }
                repeats::fault("store probe", &e);
            }
            Err(_) => {
                status.mark_down("the database did not answer in time", at);
                repeats::fault("store probe", &"timed out");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_remembered_until_the_store_is_marked_up() {
        let s = StoreStatus::new();
        assert!(s.is_up() && s.describe().is_none());
        assert!(s
            .unavailable("t", &StoreError::Config("a bug".into()))
            .is_none());
        assert!(s.is_up(), "a bug is not an outage");
        let why = s.unavailable("t", &StoreError::Unavailable("the disk is full".into()));
        assert_eq!(why.as_deref(), Some("the disk is full"));
        // A second fault keeps the first one's start and reason.
        s.down("another reason");
        let line = s.describe().unwrap();
        assert!(line.starts_with("database unreachable for 0 s"), "{line}");
        assert!(line.ends_with("(the disk is full)"), "{line}");
        s.up();
        assert!(s.is_up() && s.outage().is_none());
        // A late fault of an operation begun during the outage is not a new one by itself:
        // it asks the next probe.
        s.down("a pool acquire that timed out");
        assert!(s.is_up());
        assert!(s.take_suspect() && !s.take_suspect());
    }
}
