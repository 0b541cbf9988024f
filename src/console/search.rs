//! The jobs list's text search, incremental: a substring of the arguments or errors has no
//! index to use, so a request scans the table newest first one slice of sequence numbers
//! at a time (`[console] search_chunk`) until its page is full or its time
//! (`search_budget_ms`) is spent, and says where it stopped; the page links "search older
//! jobs" from there. Every request answers in about the budget however large the table,
//! and following the links covers every job exactly once, oldest included.
//!
//! It must not build SQL (the store's `browse` does) or render anything.

use std::time::{Duration, Instant};

use crate::store::admin::{AdminStore, JobQuery, JobRow};
use crate::store::StoreError;

/// One request's share of a search.
#[derive(Debug, Default)]
pub struct SearchPage {
    pub rows: Vec<JobRow>,
    /// Sequences below this were not scanned yet (the page is not full and older jobs
    /// remain); `None` when the page is full (continue after its last row) or the table is done.
    pub resume_below: Option<i64>,
}

/// The matching jobs of `q` (which has a text) below its cursor, newest first, scanning
/// `chunk` sequences per statement until `q.limit` rows are found or `budget` has passed
/// (at least one slice is always scanned).
pub async fn page(
    admin: &dyn AdminStore,
    q: &JobQuery,
    chunk: i64,
    budget: Duration,
) -> Result<SearchPage, StoreError> {
    let started = Instant::now();
    let chunk = chunk.max(1);
    let mut below = match q.after {
        Some((_, seq)) => seq,
        None => admin.newest_seq().await?.saturating_add(1),
    };
    let mut out = SearchPage::default();
    while below > 0 {
        let floor = below.saturating_sub(chunk).max(0);
        let step = JobQuery {
            after: Some((below, below)),
            floor: Some(floor),
            limit: q.limit - out.rows.len(),
            ..q.clone()
        };
        out.rows.extend(admin.browse(&step).await?);
        if out.rows.len() >= q.limit {
            return Ok(out);
        }
        below = floor;
        if below > 0 && started.elapsed() >= budget {
            out.resume_below = Some(below);
            return Ok(out);
        }
    }
    Ok(out)
}
