//! Operator access to the store: what `mcpq jobs …`, `mcpq stats` and `mcpq backup` need
//! and the request path must never have (any client's jobs, state changes by hand).
//!
//! Kept apart from [`Store`](super::Store) so the daemon's trait stays small and no
//! request handler can reach these methods. Every change recorded here lands in the
//! job's history (its `errors` array) with who made it and when.
//!
//! It must not format anything for people: `crate::admin` does.

use super::{BoxFuture, CancelOutcome, JobRecord, QueueStats, StoreError};
use crate::jobs::{JobId, JobState};

/// Which jobs `mcpq jobs list` shows (all given conditions hold), newest first.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub state: Option<JobState>,
    pub client: Option<String>,
    pub tool: Option<String>,
    /// Created at or after (ms since the epoch).
    pub since: i64,
    pub limit: usize,
}

/// One line of `mcpq jobs list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSummary {
    pub id: JobId,
    pub client_id: String,
    pub tool: String,
    pub state: JobState,
    pub attempt: u32,
    pub max_attempts: u32,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub lease_owner: Option<String>,
    pub run_at: i64,
}

/// What `mcpq stats` shows beyond [`QueueStats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Activity {
    pub queue: QueueStats,
    /// Jobs finished since the given instant, by final state.
    pub finished: Vec<(JobState, u64)>,
    /// Running jobs per worker (lease owner).
    pub running_per_worker: Vec<(String, u64)>,
}

/// The result of an operator's state change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Done,
    /// The job is not in a state the change applies to.
    WrongState(JobState),
    NotFound,
}

pub trait AdminStore: Send + Sync {
    fn list_jobs<'a>(
        &'a self,
        filter: &'a JobFilter,
    ) -> BoxFuture<'a, Result<Vec<JobSummary>, StoreError>>;

    /// Any client's job.
    fn job<'a>(&'a self, id: &'a JobId) -> BoxFuture<'a, Result<Option<JobRecord>, StoreError>>;

    /// Cancels a queued job at once; asks the worker of a running one to stop.
    fn admin_cancel<'a>(
        &'a self,
        id: &'a JobId,
        now: i64,
        by: &'a str,
    ) -> BoxFuture<'a, Result<CancelOutcome, StoreError>>;

    /// A failed or in-doubt job back to the queue, due now, with `more_attempts` attempts
    /// beyond those it has used.
    fn retry_job<'a>(
        &'a self,
        id: &'a JobId,
        more_attempts: u32,
        now: i64,
        by: &'a str,
    ) -> BoxFuture<'a, Result<Change, StoreError>>;

    /// An in-doubt job to failed.
    fn fail_job<'a>(
        &'a self,
        id: &'a JobId,
        now: i64,
        by: &'a str,
    ) -> BoxFuture<'a, Result<Change, StoreError>>;

    /// Deletes jobs finished before `before`; returns how many.
    fn purge(&self, before: i64) -> BoxFuture<'_, Result<u64, StoreError>>;

    fn activity(&self, now: i64, since: i64) -> BoxFuture<'_, Result<Activity, StoreError>>;
}
