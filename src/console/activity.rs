//! The overview's activity chart and counts, cheap to refresh while a page stays open.
//!
//! A bucket of the chart counts jobs created, and jobs finished, within its interval, by
//! tool; both times are written once, when the thing happens, so a bucket that closed more
//! than [`SEAL_MS`] ago no longer changes (retention may delete its rows later: the chart
//! shows what happened, not what is still stored). Closed buckets are kept here and only the
//! open ones are read again; the current hour is the sum of its minutes, and the tools
//! failing now are read off the last 15 minutes' buckets. So a refresh every few seconds
//! reads only the jobs of the last few seconds, whatever the last hour held. The per-tool,
//! per-state counts read a whole index, so they are reused for [`COUNTS_FOR_MS`] unless an
//! operator acted since.
//!
//! It must not decide what a bucket holds: `store::browse` builds the SQL and the buckets.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::store::admin::AdminStore;
use crate::store::browse::{buckets, Bucket, ToolStateCounts};
use crate::store::StoreError;

/// How long after its end a bucket may still change: a job stamped just before the end is
/// committed by a group commit a few milliseconds later, a completion batch a little later.
pub const SEAL_MS: i64 = 10_000;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

/// How long the per-tool counts are reused.
pub const COUNTS_FOR_MS: i64 = 10_000;

#[derive(Default)]
pub struct Activity {
    /// Closed buckets by (width, start).
    sealed: Mutex<BTreeMap<(i64, i64), Bucket>>,
    /// The counts and when they were read.
    counts: Mutex<Option<(i64, ToolStateCounts)>>,
}

/// What the overview shows of the jobs' activity.
pub struct Recent {
    /// The last 60 minutes, oldest first (the last is the current minute).
    pub minutes: Vec<Bucket>,
    /// The last 24 hours, oldest first (the last is the current hour).
    pub hours: Vec<Bucket>,
    /// Tools with at least 3 failures and no success in the last 15 minutes, with the
    /// failures' count.
    pub failing: Vec<(String, u64)>,
}

impl Activity {
    /// The minutes, hours and failing tools at `now`.
    pub async fn recent(&self, admin: &dyn AdminStore, now: i64) -> Result<Recent, StoreError> {
        let this_minute = now - now.rem_euclid(MINUTE);
        let this_hour = now - now.rem_euclid(HOUR);
        let minutes = self
            .series(admin, this_minute - 59 * MINUTE, MINUTE, 60, now)
            .await?;
        let mut hours = self
            .series(admin, this_hour - 23 * HOUR, HOUR, 23, now)
            .await?;
        // The 60 minutes always reach back to the current hour's start.
        let mut current = Bucket::empty(this_hour);
        for m in minutes.iter().filter(|m| m.start >= this_hour) {
            current.absorb(m);
        }
        hours.push(current);
        let mut quarter = Bucket::empty(this_minute - 14 * MINUTE);
        for m in minutes.iter().rev().take(15) {
            quarter.absorb(m);
        }
        let failing = quarter
            .tools
            .into_iter()
            .filter(|(_, t)| t.failed >= 3 && t.succeeded == 0)
            .map(|(tool, t)| (tool, t.failed))
            .collect();
        Ok(Recent {
            minutes,
            hours,
            failing,
        })
    }

    /// `n` buckets `width` ms wide from `since`, reading only those not yet sealed.
    async fn series(
        &self,
        admin: &dyn AdminStore,
        since: i64,
        width: i64,
        n: usize,
        now: i64,
    ) -> Result<Vec<Bucket>, StoreError> {
        let width = width.max(1);
        let start = |i: usize| since + i as i64 * width;
        let mut out: Vec<Bucket> = Vec::with_capacity(n);
        {
            let sealed = self.sealed.lock().unwrap_or_else(|p| p.into_inner());
            while out.len() < n {
                match sealed.get(&(width, start(out.len()))) {
                    Some(b) => out.push(b.clone()),
                    None => break,
                }
            }
        }
        let first_open = out.len();
        if first_open < n {
            let from = start(first_open);
            let rows = admin.series(from, width, start(n)).await?;
            out.extend(buckets(&rows, from, width, n - first_open));
        }
        let mut sealed = self.sealed.lock().unwrap_or_else(|p| p.into_inner());
        for b in &out[first_open..] {
            if b.start + width + SEAL_MS <= now {
                sealed.insert((width, b.start), b.clone());
            }
        }
        // Buckets that have left this series' window are not asked for again.
        sealed.retain(|&(w, s), _| w != width || s >= since);
        Ok(out)
    }

    /// The per-tool, per-state counts, read again after [`COUNTS_FOR_MS`] or an action.
    pub async fn counts(
        &self,
        admin: &dyn AdminStore,
        now: i64,
    ) -> Result<ToolStateCounts, StoreError> {
        if let Some((at, c)) = &*self.counts.lock().unwrap_or_else(|p| p.into_inner()) {
            if now - at < COUNTS_FOR_MS && now >= *at {
                return Ok(c.clone());
            }
        }
        let c = admin.counts().await?;
        *self.counts.lock().unwrap_or_else(|p| p.into_inner()) = Some((now, c.clone()));
        Ok(c)
    }

    /// An operator changed jobs: the next overview reads the counts again.
    pub fn forget_counts(&self) {
        *self.counts.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}
