//! `mcpq store copy`: moves every job and every live nonce from one store to another (SQLite
//! to PostgreSQL when a deployment outgrows one machine, or back), while both are stopped.
//!
//! Jobs keep everything: ids, clients, states, attempts, leases and fences, results, history,
//! idempotency keys, definitions and crash policies, and their order. Live nonces keep replay
//! protection whole across the move. The target must hold no jobs; the copy is checked by
//! counting both sides. It must not run while daemons or workers use either store: a job
//! changed after its page was read would be copied stale (docs/OPERATIONS.md).

use super::open::AnyStore;
use super::{JobRecord, StoreError};

/// A job row as copied: the record plus the claim-routing flag the record does not carry.
#[derive(Debug, Clone)]
pub struct CopiedJob {
    pub rec: JobRecord,
    pub capped: bool,
    /// Claim order (migration 0007 / 0003): the job's priority and its boost in ms.
    pub priority: i16,
    pub boost: i64,
    pub ckey: Option<String>,
}

/// What a copy moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    pub jobs: u64,
    pub nonces: u64,
}

const PAGE: i64 = 1000;

/// The head of both drivers' `copy_write` insert: every column a job row has, in the order
/// their values are bound.
pub(crate) const COPY_INSERT: &str =
    "INSERT INTO jobs (id, client_id, tool, args, state, attempt, max_attempts, run_at, \
     lease_owner, lease_expires_at, fence, cancel_requested, progress, result, errors, \
     idempotency_key, created_at, started_at, finished_at, def, on_crash, capped, \
     input_requests, input_responses, request_state, priority, boost, ckey) ";

impl AnyStore {
    async fn copy_page(&self, after: i64) -> Result<Vec<(i64, CopiedJob)>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.copy_read(after, PAGE).await,
            AnyStore::Postgres(s) => s.copy_read(after, PAGE).await,
        }
    }

    async fn copy_write(&self, jobs: &[CopiedJob]) -> Result<(), StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.copy_write(jobs).await,
            AnyStore::Postgres(s) => s.copy_write(jobs).await,
        }
    }

    async fn job_count(&self) -> Result<u64, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.job_count().await,
            AnyStore::Postgres(s) => s.job_count().await,
        }
    }
}

/// Copies every job and live nonce from `from` to `to`; `progress` hears the running count.
pub async fn copy(
    from: &AnyStore,
    to: &AnyStore,
    now: i64,
    progress: &dyn Fn(u64),
) -> Result<Copied, StoreError> {
    let existing = to.job_count().await?;
    if existing > 0 {
        return Err(StoreError::Config(format!(
            "the target already holds {existing} job(s); copy only into an empty store"
        )));
    }
    let mut after = 0;
    let mut jobs = 0;
    loop {
        let page = from.copy_page(after).await?;
        let Some((last, _)) = page.last() else { break };
        after = *last;
        let rows: Vec<CopiedJob> = page.into_iter().map(|(_, j)| j).collect();
        to.copy_write(&rows).await?;
        jobs += rows.len() as u64;
        progress(jobs);
    }
    let nonces = from.store().live_nonces(now).await?;
    let target = to.store();
    match to {
        AnyStore::Sqlite(_) => {
            for n in &nonces {
                target.record_nonce(*n).await?;
            }
            target.flush().await?;
        }
        AnyStore::Postgres(s) => s.copy_nonces(&nonces).await?,
    }
    let (source_jobs, target_jobs) = (from.job_count().await?, to.job_count().await?);
    if source_jobs != jobs || target_jobs != jobs {
        return Err(StoreError::Commit(format!(
            "copied {jobs} job(s), but the source now holds {source_jobs} and the target {target_jobs}: was a daemon or worker running?"
        )));
    }
    let live_after = target.live_nonces(now).await?.len();
    if live_after < nonces.len() {
        return Err(StoreError::Commit(format!(
            "the target holds {live_after} live nonce(s) of the {} copied",
            nonces.len()
        )));
    }
    Ok(Copied {
        jobs,
        nonces: nonces.len() as u64,
    })
}
