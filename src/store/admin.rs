//! Operator access to the store: what `mcpq jobs …`, `mcpq stats` and `mcpq backup` need
//! and the request path must never have (any client's jobs, state changes by hand).
//!
//! Kept apart from [`Store`](super::Store) so the daemon's trait stays small and no
//! request handler can reach these methods. Every change recorded here lands in the
//! job's history (its `errors` array) with who made it and when.
//!
//! It must not format anything for people: `crate::admin` does.

pub use super::audit::ChainEnds;
pub use super::browse::{Bucket, JobQuery, JobRow, SeriesRows, Sort, ToolStateCounts};
use super::{
    state_of, BoxFuture, CancelOutcome, JobRecord, QueueStats, Resolution, Store, StoreError,
};
use crate::audit::{Entry, Kind, Record};
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

    /// The console's list: one page of the jobs `q` matches, in its order after its cursor.
    fn browse<'a>(&'a self, q: &'a JobQuery) -> BoxFuture<'a, Result<Vec<JobRow>, StoreError>>;

    /// How many jobs `q` matches (its cursor and limit ignored).
    fn browse_count<'a>(&'a self, q: &'a JobQuery) -> BoxFuture<'a, Result<u64, StoreError>>;

    /// The newest job's sequence (0 when there is none): where a text search starts.
    fn newest_seq(&self) -> BoxFuture<'_, Result<i64, StoreError>>;

    /// Every job by (tool, state, count).
    fn counts(&self) -> BoxFuture<'_, Result<ToolStateCounts, StoreError>>;

    /// Jobs enqueued and finished from `since` to before `until`, in buckets `width` ms wide:
    /// (bucket index, tool, `enqueued` or the final state, count); see [`super::browse::buckets`].
    fn series(
        &self,
        since: i64,
        width: i64,
        until: i64,
    ) -> BoxFuture<'_, Result<SeriesRows, StoreError>>;

    /// Jobs finished since `since` by (tool, final state, count).
    fn recent(&self, since: i64) -> BoxFuture<'_, Result<ToolStateCounts, StoreError>>;

    /// Stops (`paused`) or restarts claims of `tool`'s jobs by every worker on the store;
    /// queued jobs stay queued, running ones finish. Returns whether anything changed.
    fn set_paused<'a>(
        &'a self,
        tool: &'a str,
        paused: bool,
        now: i64,
        by: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    fn paused_tools(&self) -> BoxFuture<'_, Result<Vec<PausedTool>, StoreError>>;

    /// A job's webhook events and their delivery, oldest first (docs/WEBHOOKS.md).
    fn webhook_deliveries<'a>(
        &'a self,
        job: &'a JobId,
    ) -> BoxFuture<'a, Result<Vec<super::outbox::WebhookDelivery>, StoreError>>;
    /// Appends audit records now (an operator's action), durably, sealed onto the chain
    /// in the same transaction that locks its head (docs/AUDIT.md).
    fn append_audit(&self, entries: Vec<Entry>) -> BoxFuture<'_, Result<(), StoreError>>;

    /// The chain's head and checkpoint.
    fn audit_ends(&self) -> BoxFuture<'_, Result<ChainEnds, StoreError>>;

    /// Up to `limit` records after `after_seq` written at or after `since`, in order.
    fn audit_page(
        &self,
        after_seq: i64,
        since: i64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<Record>, StoreError>>;
}

/// An operator's action on the audit trail: `verb` (`jobs.retry`, `console.cancel`, …) by
/// `by` on a job or on something else (`target`: a tool, an age), with its outcome.
#[derive(Debug, Clone)]
pub struct Action<'a> {
    pub by: &'a str,
    pub verb: &'a str,
    pub job: Option<&'a str>,
    pub target: Option<String>,
    pub outcome: &'a str,
}

/// Records an operator's action in the audit trail when `on`. A failure to record is
/// returned (and reported by the caller); the action itself is already done.
pub async fn record_action<S: AdminStore + ?Sized>(
    store: &S,
    on: bool,
    now: i64,
    a: Action<'_>,
) -> Result<(), StoreError> {
    if !on {
        return Ok(());
    }
    let mut e = Entry::new(now, Kind::Operator, a.by, a.outcome);
    e.tool = Some(a.verb.to_string());
    e.job_id = a.job.map(str::to_string);
    e.detail = a.target;
    store.append_audit(vec![e]).await
}

/// One line of `mcpq jobs paused`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PausedTool {
    pub tool: String,
    pub paused_at: i64,
    pub paused_by: String,
}

/// What an unchanged job is: its state, or not found.
pub(crate) async fn unchanged<S: AdminStore + ?Sized>(
    store: &S,
    id: &JobId,
) -> Result<Change, StoreError> {
    Ok(match store.job(id).await? {
        Some(r) => Change::WrongState(r.state),
        None => Change::NotFound,
    })
}

/// [`AdminStore::fail_job`] for both drivers: the in-doubt resolution, by the operator.
pub(crate) async fn fail_in_doubt<S: Store + AdminStore>(
    store: &S,
    id: &JobId,
    now: i64,
    by: &str,
) -> Result<Change, StoreError> {
    let by = format!("operator {by}");
    if store
        .resolve_in_doubt(id, Resolution::Fail, now, &by)
        .await?
    {
        Ok(Change::Done)
    } else {
        unchanged(store, id).await
    }
}

/// What `admin_cancel.sql` did, from the state it returned (`None`: it matched no row).
pub(crate) async fn cancel_outcome<S: AdminStore + ?Sized>(
    store: &S,
    id: &JobId,
    state: Option<String>,
) -> Result<CancelOutcome, StoreError> {
    Ok(match state.as_deref() {
        Some("cancelled") => CancelOutcome::Cancelled,
        Some(_) => CancelOutcome::Requested,
        None => match unchanged(store, id).await? {
            Change::WrongState(s) => CancelOutcome::AlreadyFinished(s),
            _ => CancelOutcome::NotFound,
        },
    })
}

/// `admin_activity.sql`'s rows, the same columns in both drivers: ("finished", state, count)
/// and ("running", worker, count).
pub(crate) fn add_activity_rows<'r, R>(out: &mut Activity, rows: &'r [R]) -> Result<(), StoreError>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    for r in rows {
        let kind: String = r.try_get(0)?;
        let key: Option<String> = r.try_get(1)?;
        let n = r.try_get::<i64, _>(2)? as u64;
        let key = key.unwrap_or_default();
        if kind == "finished" {
            out.finished.push((state_of(&key)?, n));
        } else {
            out.running_per_worker.push((key, n));
        }
    }
    Ok(())
}
