//! Durable state behind one small trait: jobs and the nonces of admitted calls.
//!
//! [`Store`] is everything the server and the workers need from a database and
//! nothing more; each method is one round trip (one statement or one
//! transaction) so implementations stay fast and simple. The SQLite
//! implementation lives in [`sqlite`], the PostgreSQL one in [`postgres`]; both pass the
//! same conformance suite (`tests/it/store_conformance.rs`). [`open`] picks one from the
//! configured `database.url`.
//!
//! The store applies transitions; it does not decide them. Which transition a
//! job takes is decided by [`crate::jobs`]; the store makes it happen atomically
//! and fenced.

pub mod admin;
pub mod audit;
mod batch;
pub mod bench;
pub mod browse;
pub mod changes;
pub mod copy;
pub mod fault;
mod keyed;
pub mod open;
pub mod outbox;
pub mod postgres;
pub mod sqlite;
pub mod status;

use std::future::Future;
use std::pin::Pin;

use crate::auth::NonceRecord;
use crate::envelope::ClientId;
use crate::jobs::{CrashPolicy, JobId, JobState};

/// The definition version of a built-in tool (built-in tools change only with the binary).
/// Defined here, below `tools` (which re-exports it), so the store's benchmark fill can
/// name it without importing the tools layer.
pub const BUILTIN_DEFINITION: &str = "1";

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A job state as stored, or [`StoreError::Corrupt`] naming what was found.
pub(crate) fn state_of(text: &str) -> Result<JobState, StoreError> {
    JobState::parse(text).ok_or_else(|| StoreError::Corrupt(format!("job state {text:?}")))
}

/// `stats.sql`'s rows, the same columns in both drivers: (state, tool, count, when the
/// longest-waiting due job became due).
pub(crate) fn stats_from_rows<'r, R>(rows: &'r [R]) -> Result<QueueStats, StoreError>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let mut out = QueueStats::default();
    for r in rows {
        let state = r.try_get::<String, _>(0)?;
        if state == "paused" {
            out.paused.push(r.try_get(1)?);
            continue;
        }
        let state = state_of(&state)?;
        let n: i64 = r.try_get(2)?;
        out.active.push((state, r.try_get(1)?, n as u64));
        if let Some(at) = r.try_get::<Option<i64>, _>(3)? {
            out.oldest_due_at = Some(out.oldest_due_at.map_or(at, |o: i64| o.min(at)));
        }
    }
    Ok(out)
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error("store is shut down")]
    Closed,
    #[error("commit failed: {0}")]
    Commit(String),
    #[error("read failed: {0}")]
    Read(String),
    #[error("a commit could not be made durable (fsync failed); the store refuses further writes")]
    NotDurable,
    /// The call's nonce was admitted first by another daemon sharing the store.
    #[error("the nonce was already used")]
    Replayed,
    #[error("{0}")]
    Config(String),
    /// The database cannot take this now and nothing was written (see [`fault`]).
    #[error("{0}")]
    Unavailable(String),
    /// The database went away while a write was in flight and did not come back in time to
    /// say whether it committed; the text names what may exist.
    #[error("{0}")]
    OutcomeUnknown(String),
}

/// A job to create, with the nonce of the call that creates it (committed together).
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: JobId,
    pub client_id: ClientId,
    pub tool: String,
    /// Canonical JSON of the validated arguments.
    pub args: String,
    pub max_attempts: u32,
    pub idempotency_key: Option<String>,
    /// The signed envelope's nonce, committed with the job; `None` for a job that came
    /// without one (a `/mcp` call, authenticated by its bearer token).
    pub nonce: Option<NonceRecord>,
    pub created_at: i64,
    /// The definition the job is accepted under (`Tool::definition`); only a worker that
    /// has this exact definition claims the job.
    pub def: String,
    pub on_crash: CrashPolicy,
    /// The tool has a concurrency limit: the job is claimed only through
    /// [`ClaimFilter::capped`].
    pub capped: bool,
    /// Answers a `/mcp` client gave before the job existed (a tool's declared `ask`), a
    /// JSON object handed to its first attempt; `None` for most jobs.
    pub input_responses: Option<String>,
    /// Claim order (docs/FLOW.md): the job's priority (0..=9, higher first) and its boost,
    /// `priority × jobs.aging_secs` in ms; the claim takes jobs by `run_at - boost`.
    pub priority: u8,
    pub boost_ms: i64,
    /// Not before this instant (ms): `created_at` unless the call scheduled the job.
    pub run_at: i64,
    /// The concurrency key of a tool limited per key (docs/FLOW.md), else `None`.
    pub ckey: Option<String>,
    /// The W3C context of the traced call that created it (`otel::TraceHeaders::to_stored`),
    /// else `None`; only a batch with one takes the slower traced statement.
    pub trace: Option<String>,
    /// Where the job's outcomes are POSTed (docs/WEBHOOKS.md), already checked against its
    /// client's allowlist; `None` for most jobs.
    pub callback: Option<String>,
    /// The call's audit record (docs/AUDIT.md), committed with the job (its outcome and
    /// job id are set by the store from what the commit did); `None` when audit is off.
    pub audit: Option<Box<crate::audit::Entry>>,
}

/// A job that carries a trace context (docs/TRACING.md), as its worker or rescuer needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracedJob {
    pub id: JobId,
    pub tool: String,
    /// `NewJob::trace` as stored.
    pub context: String,
    pub lease_expires_at: Option<i64>,
}

/// Result of an enqueue: a new job, or the existing one with the same idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    Created(JobId),
    Existing(JobId),
}

impl Enqueued {
    pub fn id(&self) -> &JobId {
        match self {
            Enqueued::Created(id) | Enqueued::Existing(id) => id,
        }
    }
}

/// Everything a job row keeps.
#[derive(Debug, Clone)]
pub struct JobRecord {
    pub id: JobId,
    pub client_id: ClientId,
    pub tool: String,
    pub args: String,
    pub state: JobState,
    pub attempt: u32,
    pub max_attempts: u32,
    pub run_at: i64,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<i64>,
    pub fence: i64,
    pub cancel_requested: bool,
    pub progress: Option<String>,
    pub result: Option<String>,
    /// JSON array of `{attempt, at, error}`, one per failed attempt.
    pub errors: String,
    pub idempotency_key: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub def: String,
    pub on_crash: CrashPolicy,
    /// While `input_required`: the requests not yet answered, a JSON object keyed by the
    /// tool's request ids (MCP `inputRequests`).
    pub input_requests: Option<String>,
    /// Answers for the next attempt: a JSON object keyed like the requests.
    pub input_responses: Option<String>,
    /// The tool's own state from the attempt that asked (MCP `requestState`).
    pub request_state: Option<String>,
}

/// A job handed to a worker: run it, then complete it with `fence`.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub id: JobId,
    pub client_id: ClientId,
    pub tool: String,
    pub args: String,
    pub attempt: u32,
    pub max_attempts: u32,
    pub fence: i64,
    /// When it became due (its `run_at`): the start delay is the claim time minus this.
    pub due_at: i64,
    /// The client's answers to what the previous attempt asked, and that attempt's state.
    pub input_responses: Option<String>,
    pub request_state: Option<String>,
    /// It has a completion webhook: its completion must write an outbox event (so the
    /// SQLite completer needs a transaction only for batches with one).
    pub hooked: bool,
}

/// Lease extension (and latest progress) for one running job.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    pub id: JobId,
    pub fence: i64,
    pub progress: Option<String>,
}

/// A heartbeat that landed: the lease is still ours. `cancel_requested` asks the worker to stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatAck {
    pub id: JobId,
    pub cancel_requested: bool,
}

/// How an attempt ended, as decided by the worker with [`crate::jobs`].
#[derive(Debug, Clone)]
pub enum Outcome {
    Succeeded {
        result: String,
    },
    Retry {
        run_at: i64,
        error: String,
    },
    Failed {
        error: String,
    },
    Cancelled {
        error: String,
    },
    /// The worker was lost and the job's crash policy is `hold`.
    InDoubt {
        error: String,
    },
    /// The attempt asked the client for input (`requests`: a JSON object of MCP input
    /// requests; `state`: the tool's `requestState`). The attempt does not count; the job
    /// waits in `input_required` (or ends `cancelled` if a cancel was requested meanwhile).
    AwaitInput {
        requests: String,
        state: Option<String>,
    },
}

#[derive(Debug, Clone)]
pub struct Completion {
    pub id: JobId,
    pub fence: i64,
    pub outcome: Outcome,
    /// The job may have a completion webhook ([`ClaimedJob::hooked`]; `true` where that is
    /// not known, as for a rescued lease).
    pub hooked: bool,
}

/// A job whose lease ran out, as seen by the rescuer.
#[derive(Debug, Clone)]
pub struct ExpiredLease {
    pub id: JobId,
    pub fence: i64,
    pub attempt: u32,
    pub max_attempts: u32,
    pub on_crash: CrashPolicy,
}

/// Which jobs a worker may claim: only definitions it has, and tools with a concurrency
/// limit only while fewer than the limit run across all workers.
#[derive(Debug, Clone, Default)]
pub struct ClaimFilter {
    /// `tool:definition` ([`ClaimFilter::key`]) of each tool without a concurrency limit.
    pub defs: Vec<String>,
    /// Tools with a limit: (tool, limit, that tool's definitions this worker has).
    pub capped: Vec<CappedTool>,
}

impl ClaimFilter {
    /// How a (tool, definition) pair is named in [`ClaimFilter::defs`].
    pub fn key(tool: &str, definition: &str) -> String {
        format!("{tool}:{definition}")
    }
}

#[derive(Debug, Clone)]
pub struct CappedTool {
    pub tool: String,
    /// Running jobs of the tool across workers (`u32::MAX`: only the per-key limit).
    pub limit: u32,
    pub defs: Vec<String>,
    /// Running jobs per concurrency key (the jobs' `ckey`), if the tool has such a limit.
    pub per_key: Option<u32>,
    /// Starts per second across workers, if limited.
    pub rate: Option<f64>,
}

/// How many of a keyed tool's queued jobs (from the head, in claim order) one claim looks
/// at for keys with room: bounded so a claim stays cheap however long the queue; a head
/// full of saturated keys delays other keys' jobs until some finish.
pub const KEYED_CLAIM_WINDOW: i64 = 1000;

/// Jobs not yet finished, for status lines, metrics and `mcpq stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// (state, tool, count) for queued, running and in-doubt jobs; absent pairs are zero.
    pub active: Vec<(JobState, String, u64)>,
    /// When the longest-waiting due job became due (its `run_at`).
    pub oldest_due_at: Option<i64>,
    /// Tools whose queues are paused (`mcpq jobs pause`).
    pub paused: Vec<String>,
}

impl QueueStats {
    pub fn count(&self, state: JobState) -> u64 {
        self.active
            .iter()
            .filter(|(s, _, _)| *s == state)
            .map(|(_, _, n)| n)
            .sum()
    }

    /// "12 queued (oldest waiting 1.2 s), 3 running, 0 in doubt, 1 waiting for input": for
    /// `STATUS=` lines.
    pub fn summary(&self, now: i64) -> String {
        let wait = match self.oldest_due_at {
            Some(at) => format!(
                " (oldest waiting {:.1} s)",
                (now - at).max(0) as f64 / 1000.0
            ),
            None => String::new(),
        };
        format!(
            "{} queued{wait}, {} running, {} in doubt, {} waiting for input",
            self.count(JobState::Queued),
            self.count(JobState::Running),
            self.count(JobState::InDoubt),
            self.count(JobState::AwaitingInput)
        )
    }
}

/// An operator's decision on an in-doubt job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Back to the queue, with one more attempt allowed if none remain.
    Retry,
    /// Failed for good.
    Fail,
}

impl Resolution {
    /// The state `resolve_in_doubt.sql` writes, and the history entry naming who decided.
    pub(crate) fn transition(self, by: &str) -> (&'static str, String) {
        match self {
            Resolution::Retry => ("queued", format!("in_doubt resolved: retried by {by}")),
            Resolution::Fail => ("failed", format!("in_doubt resolved: failed by {by}")),
        }
    }
}

/// What a client's answers did to a job ([`Store::answer_input`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerOutcome {
    /// Some requests are still outstanding (this many).
    Waiting(usize),
    /// Every request is answered: the job is queued again, with the answers.
    Resumed,
    /// The job is not waiting for input (it is in this state); nothing changed.
    NotWaiting(JobState),
    NotFound,
}

/// What a store writes for a client's answers ([`plan_answers`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerPlan {
    /// Nothing to write; this is the outcome.
    Done(AnswerOutcome),
    /// Write the requests still outstanding (`None`: none; queue the job again) and the
    /// round's answers so far, guarded by the requests read (compare and set).
    Write {
        left: Option<String>,
        so_far: String,
        outcome: AnswerOutcome,
    },
}

/// Decides what a client's answers do to a job read in `state` with its outstanding
/// `requests` and the round's answers `so_far` (JSON objects). Answers to requests that are
/// not outstanding are ignored. Pure: both stores write what it decides.
pub fn plan_answers(
    state: JobState,
    requests: Option<&str>,
    so_far: Option<&str>,
    answers: &serde_json::Map<String, serde_json::Value>,
) -> AnswerPlan {
    type Map = serde_json::Map<String, serde_json::Value>;
    let (JobState::AwaitingInput, Some(requests)) = (state, requests) else {
        return AnswerPlan::Done(AnswerOutcome::NotWaiting(state));
    };
    let mut outstanding: Map = serde_json::from_str(requests).unwrap_or_default();
    let mut given: Map = so_far
        .and_then(|r| serde_json::from_str(r).ok())
        .unwrap_or_default();
    let mut applied = false;
    for (k, v) in answers {
        if outstanding.remove(k).is_some() {
            given.insert(k.clone(), v.clone());
            applied = true;
        }
    }
    let remaining = outstanding.len();
    if !applied {
        return AnswerPlan::Done(AnswerOutcome::Waiting(remaining));
    }
    AnswerPlan::Write {
        left: (remaining > 0).then(|| serde_json::Value::Object(outstanding).to_string()),
        so_far: serde_json::Value::Object(given).to_string(),
        outcome: if remaining == 0 {
            AnswerOutcome::Resumed
        } else {
            AnswerOutcome::Waiting(remaining)
        },
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    /// Was queued; now cancelled.
    Cancelled,
    /// Is running; the worker will stop it at its next heartbeat.
    Requested,
    /// Already finished in the given state.
    AlreadyFinished(JobState),
    NotFound,
}

/// The storage contract. All times are milliseconds since the epoch, passed in
/// by the caller so tests control the clock.
pub trait Store: Send + Sync + 'static {
    /// Reachability check for `/readyz`.
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>>;

    /// What this process knows of the store's reachability ([`status`]).
    fn status(&self) -> &std::sync::Arc<status::StoreStatus>;

    /// Whether a store that was down takes writes again: a read and, where a read alone
    /// cannot tell (SQLite on a full or read-only disk), a small write.
    fn probe(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        self.ping()
    }

    /// Persists nonces of sync calls (write-behind: returns once queued, see `flush`).
    fn record_nonce(&self, nonce: NonceRecord) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Records a nonce the caller's own set admitted, and says whether the store admits it
    /// too: `false` when another daemon sharing the store admitted it first (a replay).
    /// A store serving a single daemon (SQLite) writes it behind and says `true`. A stored
    /// copy that expired before `now` does not count.
    fn admit_nonce(&self, nonce: NonceRecord, now: i64) -> BoxFuture<'_, Result<bool, StoreError>> {
        let _ = now;
        Box::pin(async move {
            self.record_nonce(nonce).await?;
            Ok(true)
        })
    }

    /// Whether several daemons may share this store, replay protection included
    /// ([`Store::admit_nonce`] decides; the in-memory set is only a first filter).
    fn shares_nonces(&self) -> bool {
        false
    }

    /// Waits until every nonce recorded so far is committed.
    fn flush(&self) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Nonces that have not expired at `now`.
    fn live_nonces(&self, now: i64) -> BoxFuture<'_, Result<Vec<NonceRecord>, StoreError>>;

    /// Creates a job and its nonce durably; returns only after the commit.
    fn enqueue(&self, job: NewJob) -> BoxFuture<'_, Result<Enqueued, StoreError>>;

    /// A client's job; another client's job is `None`, exactly as a missing one.
    fn get_job<'a>(
        &'a self,
        client: &'a ClientId,
        id: &'a JobId,
    ) -> BoxFuture<'a, Result<Option<JobRecord>, StoreError>>;

    /// Cancels a client's job: a queued or waiting one at once, a running one at its
    /// worker's next heartbeat.
    fn cancel<'a>(
        &'a self,
        client: &'a ClientId,
        id: &'a JobId,
        now: i64,
    ) -> BoxFuture<'a, Result<CancelOutcome, StoreError>>;

    /// Applies a client's answers (a JSON object keyed by request id) to its job waiting
    /// for input ([`apply_answers`]); when none remain outstanding the job is queued again,
    /// due at `now`, with every answer of the round for its next attempt.
    fn answer_input<'a>(
        &'a self,
        client: &'a ClientId,
        id: &'a JobId,
        answers: &'a serde_json::Map<String, serde_json::Value>,
        now: i64,
    ) -> BoxFuture<'a, Result<AnswerOutcome, StoreError>>;

    /// Whether any job is due, without taking a write lock (idle workers ask this first).
    fn has_due_jobs(&self, now: i64) -> BoxFuture<'_, Result<bool, StoreError>>;

    /// Atomically moves up to `limit` due jobs that `filter` admits to `running`, leased to
    /// `worker` until `now + lease_ms`. A capped tool never exceeds its limit of running
    /// jobs across every process sharing the store.
    fn claim<'a>(
        &'a self,
        worker: &'a str,
        limit: usize,
        now: i64,
        lease_ms: i64,
        filter: &'a ClaimFilter,
    ) -> BoxFuture<'a, Result<Vec<ClaimedJob>, StoreError>>;

    /// (tool, definition) of due queued jobs whose `tool:definition` is not in `known` (at
    /// most `limit`), so a worker can say which jobs it is leaving to others.
    fn unknown_definitions<'a>(
        &'a self,
        known: &'a [String],
        now: i64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<(String, String)>, StoreError>>;

    /// Applies an operator's decision to an in-doubt job, recording `by` in its history.
    /// Returns false if the job is not in doubt (or does not exist).
    fn resolve_in_doubt<'a>(
        &'a self,
        id: &'a JobId,
        resolution: Resolution,
        now: i64,
        by: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Extends leases still held (matching fence, still running); returns those that landed.
    fn heartbeat(
        &self,
        beats: Vec<Heartbeat>,
        now: i64,
        lease_ms: i64,
    ) -> BoxFuture<'_, Result<Vec<HeartbeatAck>, StoreError>>;

    /// Applies outcomes of attempts whose fence still matches; returns the ids applied.
    fn complete(
        &self,
        done: Vec<Completion>,
        now: i64,
    ) -> BoxFuture<'_, Result<Vec<JobId>, StoreError>>;

    /// Keeps `state` for the next attempt of a running job whose fence is still `fence`
    /// (an upstream task's id); false when the attempt no longer holds the job.
    fn save_attempt_state<'a>(
        &'a self,
        id: &'a JobId,
        fence: i64,
        state: Option<&'a str>,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Gives running jobs back to the queue without counting the attempt.
    fn release(
        &self,
        jobs: Vec<(JobId, i64)>,
        now: i64,
    ) -> BoxFuture<'_, Result<usize, StoreError>>;

    /// The job `key` names among `client`'s, with its creation time (ms).
    fn job_by_key<'a>(
        &'a self,
        client: &'a ClientId,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<(JobId, i64)>, StoreError>>;

    /// The jobs among `ids` that carry a trace context (asked only while traces are on).
    fn traced_jobs<'a>(
        &'a self,
        ids: &'a [JobId],
    ) -> BoxFuture<'a, Result<Vec<TracedJob>, StoreError>>;

    /// Running jobs whose lease expired before `now`.
    fn expired_leases(
        &self,
        now: i64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<ExpiredLease>, StoreError>>;

    /// Applies the rescuer's decisions; only to jobs whose lease is still expired and fence unchanged.
    fn rescue(
        &self,
        done: Vec<Completion>,
        now: i64,
    ) -> BoxFuture<'_, Result<Vec<JobId>, StoreError>>;

    /// A client's queued jobs, counted up to `limit` (the per-client queue cap).
    fn count_queued<'a>(
        &'a self,
        client: &'a str,
        limit: u64,
    ) -> BoxFuture<'a, Result<u64, StoreError>>;

    /// Workers holding leases and the latest expiry among their leases (metrics).
    fn lease_holders(&self) -> BoxFuture<'_, Result<Vec<(String, i64)>, StoreError>>;

    /// Every schedule's last enqueued tick (ms), by name (`[schedules]`, docs/FLOW.md).
    fn schedule_ticks(&self) -> BoxFuture<'_, Result<Vec<(String, i64)>, StoreError>>;

    /// Records that schedule `name` enqueued its ticks up to `tick_ms`; never moves back.
    fn record_tick<'a>(
        &'a self,
        name: &'a str,
        tick_ms: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Counts of unfinished jobs by state and tool; reads only unfinished rows.
    fn queue_stats(&self, now: i64) -> BoxFuture<'_, Result<QueueStats, StoreError>>;

    /// Deletes finished jobs that finished before `before`, webhook events delivered (or
    /// given up) before it, and expired nonces.
    fn prune(&self, finished_before: i64, now: i64) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// Fails, with `reason`, the jobs that have waited for their client's input since
    /// before `waiting_since` (`jobs.input_wait_secs`); returns how many.
    fn expire_waiting<'a>(
        &'a self,
        waiting_since: i64,
        now: i64,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<u64, StoreError>>;

    /// Leases up to `limit` webhook events due at `now` (not done, lease free or expired) to
    /// `owner` until `now + lease_ms` (docs/WEBHOOKS.md).
    fn claim_webhooks<'a>(
        &'a self,
        owner: &'a str,
        now: i64,
        lease_ms: i64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<outbox::OutboxEvent>, StoreError>>;

    /// Applies delivery reports of events `owner` still holds; returns how many applied.
    fn report_webhooks<'a>(
        &'a self,
        owner: &'a str,
        reports: Vec<outbox::DeliveryReport>,
        now: i64,
    ) -> BoxFuture<'a, Result<usize, StoreError>>;

    /// Webhook events not yet delivered nor given up (the backlog gauge).
    fn webhook_backlog(&self) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// Appends audit records behind: they join the next group commit (with the jobs and
    /// nonces committing then), sealed onto the chain there; nothing waits for them.
    fn audit(&self, entries: Vec<crate::audit::Entry>);

    /// Deletes audit records older than `before` (at most `limit` of them), moving the
    /// chain's checkpoint to the last one deleted and appending a `prune` record; returns
    /// how many were deleted.
    fn prune_audit(
        &self,
        before: i64,
        limit: i64,
        now: i64,
    ) -> BoxFuture<'_, Result<u64, StoreError>>;

    /// Fires when another process may have enqueued jobs (a hint: workers poll as well).
    fn wakeups(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        None
    }

    /// This process's waiters on jobs, woken when a job changes (finished, or waiting for
    /// input) in this process or, where the store can tell, in another one. A hint: a
    /// waiter keeps re-reading on a timer as well.
    fn job_changes(&self) -> Option<std::sync::Arc<changes::JobChanges>> {
        None
    }

    /// Commits pending writes and closes connections (a clean stop).
    fn close(&self) -> BoxFuture<'_, ()>;
}

#[cfg(test)]
mod tests {
    use super::{plan_answers, AnswerOutcome, AnswerPlan};
    use crate::jobs::JobState;
    use serde_json::json;

    fn answers(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn answers_fill_outstanding_requests_and_ignore_the_rest() {
        let waiting = JobState::AwaitingInput;
        let requests = json!({"a": {"method": "roots/list"}, "b": {"method": "roots/list"}});
        let AnswerPlan::Write {
            left,
            so_far,
            outcome,
        } = plan_answers(
            waiting,
            Some(&requests.to_string()),
            None,
            &answers(json!({"a": {"roots": []}, "zzz": {}})),
        )
        else {
            panic!("a is outstanding")
        };
        assert_eq!(left.as_deref(), Some(r#"{"b":{"method":"roots/list"}}"#));
        assert_eq!(so_far, r#"{"a":{"roots":[]}}"#);
        assert_eq!(outcome, AnswerOutcome::Waiting(1));
        let plan = plan_answers(
            waiting,
            left.as_deref(),
            Some(&so_far),
            &answers(json!({"b": {"roots": [1]}})),
        );
        assert_eq!(
            plan,
            AnswerPlan::Write {
                left: None,
                so_far: r#"{"a":{"roots":[]},"b":{"roots":[1]}}"#.into(),
                outcome: AnswerOutcome::Resumed,
            }
        );
        // Nothing outstanding answered, or not waiting: nothing to write.
        assert_eq!(
            plan_answers(
                waiting,
                Some(&requests.to_string()),
                None,
                &answers(json!({"c": {}}))
            ),
            AnswerPlan::Done(AnswerOutcome::Waiting(2))
        );
        assert_eq!(
            plan_answers(JobState::Succeeded, None, None, &answers(json!({"a": {}}))),
            AnswerPlan::Done(AnswerOutcome::NotWaiting(JobState::Succeeded))
        );
    }
}
