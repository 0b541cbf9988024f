//! The overview's activity chart and counts, cheap to refresh while a page stays open.
//!
//! A bucket of the chart counts jobs created, and jobs finished, within its interval; both
//! times are written once, when the thing happens, so a bucket that closed more than
//! [`SEAL_MS`] ago no longer changes (retention may delete its rows later: the chart shows
//! what happened, not what is still stored). Closed buckets are kept here and only the open
//! ones are read again: a refresh every few seconds reads the last minute's jobs and the
//! current hour's, not a day's. The per-tool counts read a whole index, so they are
//! reused for [`COUNTS_FOR_MS`] unless an operator acted since.
//!
//! It must not decide what a bucket holds: `store::browse` builds the SQL and the buckets.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::store::admin::AdminStore;
use crate::store::browse::{buckets, Bucket, ToolStateCounts};
use crate::store::StoreError;

/// How long after its end a bucket may still change: a job stamped just before the end is
/// committed by a group commit a few milliseconds later, a completion batch a little later.
pub const SEAL_MS: i64 = 60_000;

/// How long the per-tool counts are reused.
pub const COUNTS_FOR_MS: i64 = 10_000;

#[derive(Default)]
pub struct Activity {
    /// Closed buckets by (width, start).
    sealed: Mutex<BTreeMap<(i64, i64), Bucket>>,
    /// The counts and when they were read.
    counts: Mutex<Option<(i64, ToolStateCounts)>>,
}

impl Activity {
    /// `n` buckets `width` ms wide from `since`, reading only those not yet sealed.
    pub async fn series(
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
            let rows = admin.series(from, width).await?;
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
