//! Repeated faults logged once, then counted: the first occurrence at a site is logged in
//! full, later ones within [`WINDOW`] only add to a count that one summary line per window
//! reports ("… 6454 more in the last 10 s"). During a database outage every call and every
//! loop fails the same way; without this the log is thousands of identical lines that bury
//! everything else. The exact counts are in the metrics (`mcpq_faults_total{site}`).
//!
//! It must not decide what is a fault or hide a new kind of one: each call site names itself,
//! and a site that has been quiet for two windows logs in full again.

use std::collections::HashMap;
use std::fmt::Display;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The interval of the summary lines.
pub const WINDOW: Duration = Duration::from_secs(10);

struct Entry {
    window_start: Instant,
    suppressed: u64,
    last: String,
}

fn sites() -> &'static Mutex<HashMap<&'static str, Entry>> {
    static SITES: OnceLock<Mutex<HashMap<&'static str, Entry>>> = OnceLock::new();
    SITES.get_or_init(|| Mutex::new(HashMap::new()))
}

fn summary(site: &str, e: &Entry, now: Instant) {
    tracing::warn!(
        site,
        count = e.suppressed,
        last_error = %e.last,
        "{site}: {} more in the last {} s",
        e.suppressed,
        now.duration_since(e.window_start).as_secs().max(1)
    );
}

/// Records one occurrence of a fault at `site` (a short, stable name such as
/// `"group commit"`): logged in full if it is the first in a while, else counted.
pub fn fault(site: &'static str, error: &dyn Display) {
    metrics::counter!(crate::telemetry::names::FAULTS, "site" => site).increment(1);
    let now = Instant::now();
    let mut map = sites().lock().unwrap_or_else(|p| p.into_inner());
    match map.get_mut(site) {
        None => {
            tracing::warn!(site, error = %error, "{site} failed");
            map.insert(
                site,
                Entry {
                    window_start: now,
                    suppressed: 0,
                    last: String::new(),
                },
            );
        }
        Some(e) => {
            if now.duration_since(e.window_start) >= WINDOW {
                if e.suppressed > 0 {
                    summary(site, e, now);
                }
                e.window_start = now;
                e.suppressed = 0;
            }
            e.suppressed += 1;
            e.last = error.to_string();
        }
    }
}

/// Writes the summaries of windows that have ended and forgets sites that went quiet (their
/// next fault is logged in full). Called about once a second by each process's store watch.
pub fn flush() {
    let now = Instant::now();
    let mut map = sites().lock().unwrap_or_else(|p| p.into_inner());
    map.retain(|site, e| {
        let age = now.duration_since(e.window_start);
        if age < WINDOW {
            return true;
        }
        if e.suppressed > 0 {
            summary(site, e, now);
            e.window_start = now;
            e.suppressed = 0;
            return true;
        }
        age < 2 * WINDOW
    });
}

/// Writes every pending summary now and forgets every site: the fault is over (the store is
/// back), so the next one is news.
pub fn flush_all() {
    let now = Instant::now();
    let mut map = sites().lock().unwrap_or_else(|p| p.into_inner());
    for (site, e) in map.drain() {
        if e.suppressed > 0 {
            summary(site, &e, now);
        }
    }
}
