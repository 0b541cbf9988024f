//! Job execution: the claim loop, per-job tasks, batched heartbeats and
//! completions, graceful release, and the maintenance loop (lease rescue, retention).
//!
//! A worker is stateless: everything it knows about a job comes from its claim
//! and everything it decides is written back fenced, so any number of worker
//! processes (and the loops embedded in `mcpq serve`) can share one database and
//! a worker that lost its lease can never overwrite a job's record.
//!
//! It must not speak HTTP or know about signatures; transitions are decided with
//! [`crate::jobs`] and applied through [`Store`].

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;

use tokio::sync::{mpsc, Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::Clock;
use crate::config::{JobSettings, Settings};
use crate::jobs::{AfterFailure, AfterWorkerLost, CrashPolicy, JobId, RetryPolicy};
use crate::json::{self, Json};
use crate::store::{ClaimFilter, ClaimedJob, Completion, Heartbeat, Outcome, Store};
use crate::tools::{JobCtx, JobError, JobMeta, Registry, SharedRegistry, Tool};

#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Recorded as the lease owner, for operators.
    pub id: String,
    pub concurrency: usize,
    pub claim_batch: usize,
    pub idle_backoff_max: Duration,
    pub claim_interval: Duration,
    pub grace: Duration,
    pub lease_ms: i64,
    pub heartbeat: Duration,
    pub retry: RetryPolicy,
}

impl WorkerOptions {
    pub fn from_settings(s: &Settings, loops: usize) -> WorkerOptions {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
        WorkerOptions {
            id: format!(
                "{host}:{}:{}",
                std::process::id(),
                uuid::Uuid::new_v4().simple()
            ),
            concurrency: s.worker.concurrency.max(1) * loops.max(1),
            claim_batch: s.worker.claim_batch.max(1),
            idle_backoff_max: Duration::from_millis(s.worker.idle_backoff_max_ms.max(1)),
            claim_interval: Duration::from_millis(s.worker.claim_interval_ms),
            grace: Duration::from_millis(s.worker.grace_period_ms),
            lease_ms: s.jobs.lease_ms,
            heartbeat: Duration::from_millis(s.jobs.heartbeat_ms.max(1)),
            retry: retry_policy(&s.jobs),
        }
    }
}

pub fn retry_policy(j: &JobSettings) -> RetryPolicy {
    RetryPolicy {
        base_ms: j.retry_base_ms,
        max_ms: j.retry_max_ms,
    }
}

// Why a running job's token was cancelled.
const STOP_NONE: u8 = 0;
const STOP_CANCEL_REQUESTED: u8 = 1;
const STOP_LEASE_LOST: u8 = 2;
const STOP_SHUTDOWN: u8 = 3;

struct Running {
    fence: i64,
    ctx: JobCtx,
    stop: Arc<AtomicU8>,
    /// When the lease was last extended (claim time at first).
    renewed_at: i64,
}

type Inflight = Arc<Mutex<HashMap<JobId, Running>>>;

/// What the worker needs to decide a job tool's outcomes, looked up once at start.
#[derive(Clone, Copy)]
struct ToolRules {
    retry: RetryPolicy,
    on_crash: CrashPolicy,
}

fn tool_rules(registry: &Registry, default_retry: RetryPolicy) -> HashMap<String, ToolRules> {
    registry
        .iter()
        .filter_map(|t| match t {
            Tool::Job(j) => {
                let p = j.policy();
                Some((
                    j.name().to_string(),
                    ToolRules {
                        retry: p.retry.unwrap_or(default_retry),
                        on_crash: p.on_crash,
                    },
                ))
            }
            Tool::Sync(_) => None,
        })
        .collect()
}

/// How often, at most, a worker looks for queued jobs whose definition it lacks.
const UNKNOWN_DEFS_EVERY: Duration = Duration::from_secs(5);

/// Says once per (tool, definition) that this worker leaves such jobs to other workers.
struct UnknownDefinitions {
    known: Vec<String>,
    reported: std::collections::HashSet<(String, String)>,
    last_check: Option<tokio::time::Instant>,
}

impl UnknownDefinitions {
    fn new(filter: &ClaimFilter) -> UnknownDefinitions {
        let mut known = filter.defs.clone();
        for c in &filter.capped {
            known.extend(c.defs.iter().map(|d| ClaimFilter::key(&c.tool, d)));
        }
        UnknownDefinitions {
            known,
            reported: Default::default(),
            last_check: None,
        }
    }

    async fn check(&mut self, store: &dyn Store, now: i64) {
        if self
            .last_check
            .is_some_and(|t| t.elapsed() < UNKNOWN_DEFS_EVERY)
        {
            return;
        }
        self.last_check = Some(tokio::time::Instant::now());
        let Ok(found) = store.unknown_definitions(&self.known, now, 32).await else {
            return;
        };
        for (tool, def) in found {
            if self.reported.insert((tool.clone(), def.clone())) {
                tracing::warn!(
                    tool = %tool,
                    definition = %def,
                    "queued jobs were accepted under a tool definition this worker does not have; leaving them to a worker that has it (see docs/TOOLS.md, rollouts)"
                );
            }
        }
    }
}

fn lock(m: &Inflight) -> std::sync::MutexGuard<'_, HashMap<JobId, Running>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs a worker until `stop` fires, then finishes or releases its jobs within the grace period.
pub async fn run(
    store: Arc<dyn Store>,
    registry: SharedRegistry,
    opts: WorkerOptions,
    clock: Arc<dyn Clock>,
    stop: CancellationToken,
    wake: Option<Arc<Notify>>,
) {
    let inflight: Inflight = Arc::new(Mutex::new(HashMap::new()));
    let slots = Arc::new(Semaphore::new(opts.concurrency));
    let jobs = TaskTracker::new();
    let (done_tx, done_rx) = mpsc::unbounded_channel::<Completion>();
    let (release_tx, mut release_rx) = mpsc::unbounded_channel::<(JobId, i64)>();

    let completer = tokio::spawn(complete_batches(
        store.clone(),
        clock.clone(),
        inflight.clone(),
        done_rx,
    ));
    let beats_stop = CancellationToken::new();
    let beater = tokio::spawn(heartbeats(
        store.clone(),
        inflight.clone(),
        opts.clone(),
        clock.clone(),
        beats_stop.clone(),
    ));

    // What the worker may claim follows the registry; a reload swaps it between claims, and
    // every job runs with the registry snapshot it was claimed under.
    let mut current = registry.load_full();
    let mut filter = current.claim_filter();
    let mut rules = Arc::new(tool_rules(&current, opts.retry));
    let mut unknown = UnknownDefinitions::new(&filter);
    let mut backoff = Duration::from_millis(1);
    let store_wake = store.wakeups();
    tracing::info!(worker = %opts.id, concurrency = opts.concurrency, "worker started");
    while !stop.is_cancelled() {
        let free = slots.available_permits().min(opts.claim_batch);
        if free == 0 {
            // Wait for a slot without holding it.
            tokio::select! {
                _ = stop.cancelled() => break,
                p = slots.acquire() => drop(p),
            }
            continue;
        }
        let latest = registry.load_full();
        if !Arc::ptr_eq(&latest, &current) {
            current = latest;
            filter = current.claim_filter();
            rules = Arc::new(tool_rules(&current, opts.retry));
            unknown = UnknownDefinitions::new(&filter);
            tracing::info!("worker picked up reloaded tool definitions");
        }
        let claimed_at = clock.now_ms();
        // Ask a reader first: an idle worker must not take the write lock just to find nothing.
        let due = store.has_due_jobs(claimed_at).await.unwrap_or(true);
        let claimed = if !due {
            Vec::new()
        } else {
            match store
                .claim(&opts.id, free, claimed_at, opts.lease_ms, &filter)
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "claim failed; backing off");
                    Vec::new()
                }
            }
        };
        let filled = claimed.len() >= free;
        if due && !filled {
            // Due jobs that this worker could not take may be under a definition it lacks.
            unknown.check(store.as_ref(), claimed_at).await;
        }
        if claimed.is_empty() {
            // Idle: back off exponentially up to the cap, waking early on a local enqueue
            // or on the store's hint that another process enqueued (PostgreSQL's NOTIFY).
            let notified = async {
                match &wake {
                    Some(n) => n.notified().await,
                    None => std::future::pending().await,
                }
            };
            let hinted = async {
                match &store_wake {
                    Some(n) => n.notified().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = notified => backoff = Duration::from_millis(1),
                _ = hinted => backoff = Duration::from_millis(1),
                _ = tokio::time::sleep(backoff) => backoff = (backoff * 2).min(opts.idle_backoff_max),
            }
            continue;
        }
        backoff = Duration::from_millis(1);
        for job in claimed {
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                // Cannot happen (we claimed at most the free slots), but never run unbounded.
                let _ = release_tx.send((job.id.clone(), job.fence));
                continue;
            };
            let ctx = JobCtx::for_job(
                CancellationToken::new(),
                JobMeta {
                    job_id: job.id.clone(),
                    attempt: job.attempt,
                    client_id: job.client_id.clone(),
                    input: (job.input_responses.is_some() || job.request_state.is_some()).then(
                        || crate::tools::runner::InputRound {
                            client_capabilities: None,
                            input_responses: job.input_responses.clone(),
                            request_state: job.request_state.clone(),
                        },
                    ),
                },
            );
            let stop_reason = Arc::new(AtomicU8::new(STOP_NONE));
            lock(&inflight).insert(
                job.id.clone(),
                Running {
                    fence: job.fence,
                    ctx: ctx.clone(),
                    stop: stop_reason.clone(),
                    renewed_at: claimed_at,
                },
            );
            let registry = current.clone();
            let done_tx = done_tx.clone();
            let release_tx = release_tx.clone();
            let inflight = inflight.clone();
            let clock = clock.clone();
            let rules = rules.get(&job.tool).copied().unwrap_or(ToolRules {
                retry: opts.retry,
                on_crash: CrashPolicy::Retry,
            });
            let span = tracing::info_span!(
                "job",
                job_id = %job.id,
                tool = %job.tool,
                client_id = %job.client_id,
                attempt = job.attempt
            );
            let tool_label = job.tool.clone();
            metrics::histogram!(crate::telemetry::START_DELAY, "tool" => tool_label.clone())
                .record((claimed_at - job.due_at).max(0) as f64 / 1000.0);
            jobs.spawn(tracing::Instrument::instrument(
                async move {
                    let id = job.id.clone();
                    let fence = job.fence;
                    let running = metrics::gauge!(crate::telemetry::RUNNING);
                    running.increment(1.0);
                    let started = std::time::Instant::now();
                    let result = execute(&registry, ctx, &job).await;
                    metrics::histogram!(crate::telemetry::RUN_SECONDS, "tool" => tool_label.clone())
                        .record(started.elapsed().as_secs_f64());
                    running.decrement(1.0);
                    drop(permit);
                    // The job stays in `inflight` (and so keeps its lease alive through heartbeats)
                    // until its completion is committed; the completer removes it.
                    match stop_reason.load(Ordering::SeqCst) {
                        STOP_LEASE_LOST => {
                            count_attempt(tool_label, "lease_lost");
                            lock(&inflight).remove(&id);
                            tracing::warn!("lease lost; result discarded");
                        }
                        STOP_SHUTDOWN => match interrupted(rules.on_crash) {
                            // Stopped mid-attempt by this worker's shutdown: a retry tool goes
                            // back to the queue without losing an attempt; the others get what
                            // their crash policy promises, as if the worker had died.
                            None => {
                                lock(&inflight).remove(&id);
                                let _ = release_tx.send((id, fence));
                            }
                            Some(outcome) => {
                                let _ = done_tx.send(Completion { id, fence, outcome });
                            }
                        },
                        reason => {
                            let outcome = decide(result, reason, &job, rules.retry, clock.now_ms());
                            log_outcome(&outcome, clock.now_ms());
                            count_attempt(tool_label, outcome_label(&outcome));
                            let _ = done_tx.send(Completion { id, fence, outcome });
                        }
                    }
                },
                span,
            ));
        }
        if !filled && !opts.claim_interval.is_zero() {
            // The queue had fewer jobs than free slots: let more arrive before the next
            // write transaction.
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(opts.claim_interval) => {}
            }
        }
    }

    // Graceful stop: no more claims; give running jobs the grace period, then release the rest.
    jobs.close();
    if tokio::time::timeout(opts.grace, jobs.wait()).await.is_err() {
        {
            let running = lock(&inflight);
            tracing::info!(
                jobs = running.len(),
                "grace period over; releasing running jobs"
            );
            for r in running.values() {
                r.stop.store(STOP_SHUTDOWN, Ordering::SeqCst);
                r.ctx.cancel.cancel();
            }
        }
        jobs.wait().await;
    }
    drop(done_tx);
    drop(release_tx);
    let _ = completer.await;
    let mut releases = Vec::new();
    while let Ok(r) = release_rx.try_recv() {
        releases.push(r);
    }
    if !releases.is_empty() {
        match store.release(releases, clock.now_ms()).await {
            Ok(n) => tracing::info!(jobs = n, "released jobs back to the queue"),
            Err(e) => {
                tracing::error!(error = %e, "release failed; the jobs will be rescued when their leases expire")
            }
        }
    }
    beats_stop.cancel();
    let _ = beater.await;
    tracing::info!(worker = %opts.id, "worker stopped");
}

async fn execute(
    registry: &Registry,
    ctx: JobCtx,
    job: &ClaimedJob,
) -> Result<json::Object, JobError> {
    let Some(tool) = registry.job_tool(&job.tool) else {
        return Err(JobError::Fatal(format!(
            "no job tool named {:?} in this worker",
            job.tool
        )));
    };
    let args = match json::parse(job.args.as_bytes()) {
        Ok(Json::Object(o)) => o,
        _ => {
            return Err(JobError::Fatal(
                "stored arguments are not a JSON object".into(),
            ))
        }
    };
    // A panicking tool must not take the worker down. Catching the unwind in place, rather
    // than running the tool as a task of its own, saves a task (and its wake-ups) per job.
    // Unwind safety: a panicked tool's future is dropped, and it shares nothing with the
    // worker but its `JobCtx`, whose state is atomics and channels.
    let panicked = || Err(JobError::Retryable("job panicked".into()));
    let Ok(attempt) = std::panic::catch_unwind(AssertUnwindSafe(|| tool.run(ctx, args))) else {
        return panicked();
    };
    match AssertUnwindSafe(attempt).catch_unwind().await {
        Ok(r) => r,
        Err(_) => panicked(),
    }
}

fn decide(
    result: Result<json::Object, JobError>,
    stop_reason: u8,
    job: &ClaimedJob,
    retry: RetryPolicy,
    now: i64,
) -> Outcome {
    if stop_reason == STOP_CANCEL_REQUESTED {
        return Outcome::Cancelled {
            error: "cancelled: cancel_job was called while the job ran".into(),
        };
    }
    // The tool asked its client for input: the job waits for the answers. A malformed
    // question is the tool breaking its contract, as output that is not JSON would be.
    let result = match result {
        Ok(o) if crate::tools::asks_for_input(&o) => {
            match crate::asks::parse(&Json::Object(o).to_serde()) {
                Ok(asked) => {
                    return Outcome::AwaitInput {
                        requests: serde_json::Value::Object(asked.requests).to_string(),
                        state: asked.state,
                    }
                }
                Err(m) => Err(JobError::Fatal(format!(
                    "invalid_output: invalid InputRequiredResult: {m}"
                ))),
            }
        }
        other => other,
    };
    match result {
        Ok(o) => Outcome::Succeeded {
            result: Json::Object(o).to_canonical(),
        },
        Err(e) => {
            let (retryable, not_before) = match &e {
                JobError::Retryable(_) => (true, now),
                JobError::RetryAfter(_, ms) => (true, now.saturating_add(*ms)),
                JobError::Fatal(_) => (false, now),
            };
            match retry.after_failure(
                job.attempt,
                job.max_attempts,
                retryable,
                now,
                rand::random(),
            ) {
                AfterFailure::RetryAt(run_at) => Outcome::Retry {
                    run_at: run_at.max(not_before),
                    error: e.to_string(),
                },
                AfterFailure::Fail => Outcome::Failed {
                    error: e.to_string(),
                },
            }
        }
    }
}

fn outcome_label(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Succeeded { .. } => "succeeded",
        Outcome::Retry { .. } => "retry",
        Outcome::Failed { .. } => "failed",
        Outcome::Cancelled { .. } => "cancelled",
        Outcome::InDoubt { .. } => "in_doubt",
        Outcome::AwaitInput { .. } => "input_required",
    }
}

fn count_attempt(tool: String, outcome: &'static str) {
    metrics::counter!(crate::telemetry::ATTEMPTS, "tool" => tool, "outcome" => outcome)
        .increment(1);
}

/// One line for an attempt that did not succeed (successes stay quiet: they are the hot
/// path). Never the error text: a tool may quote its arguments in it; the text is in the
/// job's history for whoever may poll it.
fn log_outcome(outcome: &Outcome, now_ms: i64) {
    match outcome {
        Outcome::Succeeded { .. } => {}
        Outcome::Retry { run_at, .. } => {
            tracing::info!(retry_in_ms = run_at - now_ms, "attempt failed; will retry")
        }
        Outcome::Failed { .. } => tracing::warn!("job failed"),
        Outcome::Cancelled { .. } => tracing::info!("job cancelled while running"),
        Outcome::InDoubt { .. } => tracing::warn!("job held in doubt"),
        Outcome::AwaitInput { .. } => tracing::info!("job waits for input from its client"),
    }
}

/// The outcome of an attempt stopped by this worker's shutdown, for tools whose crash policy
/// is not `retry` (`None`: release the job).
fn interrupted(on_crash: CrashPolicy) -> Option<Outcome> {
    let error =
        "worker_lost: the worker shut down during the attempt (grace period over)".to_string();
    match on_crash {
        CrashPolicy::Retry => None,
        CrashPolicy::Fail => Some(Outcome::Failed { error }),
        CrashPolicy::Hold => Some(Outcome::InDoubt { error }),
    }
}

/// Commits completions in batches; a failed batch is retried, never dropped.
async fn complete_batches(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    inflight: Inflight,
    mut rx: mpsc::UnboundedReceiver<Completion>,
) {
    let mut batch = Vec::new();
    while let Some(c) = rx.recv().await {
        batch.push(c);
        while batch.len() < 2048 {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        loop {
            match store.complete(batch.clone(), clock.now_ms()).await {
                Ok(applied) => {
                    if applied.len() < batch.len() {
                        tracing::warn!(
                            stale = batch.len() - applied.len(),
                            "completions skipped: lease was lost (fencing token changed)"
                        );
                    }
                    let mut running = lock(&inflight);
                    for c in &batch {
                        if running.get(&c.id).is_some_and(|r| r.fence == c.fence) {
                            running.remove(&c.id);
                        }
                    }
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "completion batch failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        batch.clear();
    }
}

/// Extends the leases of all running jobs in one statement per tick, carrying their latest
/// progress; stops jobs whose lease was lost or whose cancellation was requested.
async fn heartbeats(
    store: Arc<dyn Store>,
    inflight: Inflight,
    opts: WorkerOptions,
    clock: Arc<dyn Clock>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(opts.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        // A lease is extended once a third of it has passed (so two more heartbeats can
        // fail before it expires); jobs with new progress are written at every tick.
        // Short jobs thus finish without ever costing a heartbeat write.
        let now = clock.now_ms();
        let beats: Vec<Heartbeat> = lock(&inflight)
            .iter()
            .filter_map(|(id, r)| {
                let progress = r
                    .ctx
                    .take_progress()
                    .map(|p| Json::Object(p).to_canonical());
                let due = now - r.renewed_at >= opts.lease_ms / 3;
                (due || progress.is_some()).then(|| Heartbeat {
                    id: id.clone(),
                    fence: r.fence,
                    progress,
                })
            })
            .collect();
        if beats.is_empty() {
            continue;
        }
        let acks = match store.heartbeat(beats.clone(), now, opts.lease_ms).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "heartbeat failed");
                continue;
            }
        };
        let acked: HashMap<&JobId, bool> =
            acks.iter().map(|a| (&a.id, a.cancel_requested)).collect();
        let mut running = lock(&inflight);
        for b in &beats {
            let Some(r) = running.get_mut(&b.id) else {
                continue;
            };
            if r.fence != b.fence {
                continue;
            }
            match acked.get(&b.id) {
                Some(false) => r.renewed_at = now,
                Some(true) => {
                    r.stop.store(STOP_CANCEL_REQUESTED, Ordering::SeqCst);
                    r.ctx.cancel.cancel();
                }
                None => {
                    r.stop.store(STOP_LEASE_LOST, Ordering::SeqCst);
                    r.ctx.cancel.cancel();
                }
            }
        }
    }
}

/// Rescues jobs whose worker vanished, prunes finished jobs past retention and expired nonces.
pub async fn maintenance(
    store: Arc<dyn Store>,
    prune_hook: Arc<dyn Fn(i64) + Send + Sync>,
    jobs: JobSettings,
    clock: Arc<dyn Clock>,
    stop: CancellationToken,
) {
    let policy = retry_policy(&jobs);
    let mut tick = tokio::time::interval(Duration::from_millis(jobs.rescue_interval_ms.max(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let prune_every = Duration::from_millis(jobs.prune_interval_ms.max(10));
    let mut last_prune = tokio::time::Instant::now() - prune_every;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = rescue_once(store.as_ref(), policy, clock.now_ms()).await {
            tracing::warn!(error = %e, "lease rescue failed");
        }
        if last_prune.elapsed() >= prune_every {
            last_prune = tokio::time::Instant::now();
            let now = clock.now_ms();
            prune_hook(now);
            match store
                .prune(now - (jobs.retention_secs as i64) * 1000, now)
                .await
            {
                Ok(0) => {}
                Ok(n) => tracing::info!(jobs = n, "pruned finished jobs past retention"),
                Err(e) => tracing::warn!(error = %e, "prune failed"),
            }
        }
    }
}

/// One rescue pass: expired leases become retries (the attempt counts) or failures.
pub async fn rescue_once(
    store: &dyn Store,
    policy: RetryPolicy,
    now: i64,
) -> Result<usize, crate::store::StoreError> {
    let expired = store.expired_leases(now, 1000).await?;
    if expired.is_empty() {
        return Ok(0);
    }
    let decisions: Vec<Completion> = expired
        .into_iter()
        .map(|e| {
            let lost = "the worker stopped heartbeating (crashed or partitioned)";
            let outcome = match e.on_crash.after_worker_lost(
                &policy,
                e.attempt,
                e.max_attempts,
                now,
                rand::random(),
            ) {
                AfterWorkerLost::RetryAt(run_at) => Outcome::Retry {
                    run_at,
                    error: format!("lease_expired: {lost}"),
                },
                AfterWorkerLost::Fail if e.on_crash == CrashPolicy::Retry => Outcome::Failed {
                    error: format!("lease_expired: {lost}"),
                },
                AfterWorkerLost::Fail => Outcome::Failed {
                    error: format!("worker_lost: {lost}; the tool must not run twice (on_worker_crash = \"fail\")"),
                },
                AfterWorkerLost::Hold => Outcome::InDoubt {
                    error: format!("worker_lost: {lost}; held for an operator (on_worker_crash = \"hold\")"),
                },
            };
            Completion {
                id: e.id,
                fence: e.fence,
                outcome,
            }
        })
        .collect();
    let kinds: HashMap<JobId, &'static str> = decisions
        .iter()
        .map(|d| (d.id.clone(), outcome_label(&d.outcome)))
        .collect();
    let applied = store.rescue(decisions, now).await?;
    for id in &applied {
        let what = kinds.get(id).copied().unwrap_or("retry");
        metrics::counter!(crate::telemetry::RESCUES, "outcome" => what).increment(1);
    }
    if !applied.is_empty() {
        tracing::info!(jobs = applied.len(), "rescued jobs with expired leases");
    }
    Ok(applied.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::Object;
    use crate::protocol::CallError;
    use crate::store::BoxFuture;
    use crate::tools::{JobRequest, JobTool, Tool};

    /// Panics while its attempt runs, or (`eager`) while building it.
    struct Panics {
        eager: bool,
    }

    impl JobTool for Panics {
        fn name(&self) -> &str {
            if self.eager {
                "panics_eagerly"
            } else {
                "panics"
            }
        }
        fn description(&self) -> &'static str {
            "panics"
        }
        fn input_schema(&self) -> serde_json::Value {
            serde_json::json!({})
        }
        fn validate(&self, _args: &Object) -> Result<JobRequest, CallError> {
            Ok(JobRequest {
                args: Object::new(),
                idempotency_key: None,
            })
        }
        fn run(&self, _ctx: JobCtx, _args: Object) -> BoxFuture<'static, Result<Object, JobError>> {
            assert!(!self.eager, "tool panicked building its attempt");
            Box::pin(async {
                tokio::task::yield_now().await;
                panic!("tool panicked mid-attempt")
            })
        }
    }

    fn job(tool: &str) -> ClaimedJob {
        ClaimedJob {
            id: JobId("0193b3c4-5d6e-7f80-9a1b-000000000001".into()),
            client_id: crate::protocol::ClientId("c".into()),
            tool: tool.into(),
            args: "{}".into(),
            attempt: 1,
            max_attempts: 3,
            fence: 1,
            due_at: 0,
            input_responses: None,
            request_state: None,
        }
    }

    #[tokio::test]
    async fn a_panicking_job_is_a_retryable_error_and_the_worker_goes_on() {
        let mut registry = Registry::default();
        registry.add(Tool::Job(Arc::new(Panics { eager: false })));
        registry.add(Tool::Job(Arc::new(Panics { eager: true })));
        for tool in ["panics", "panics_eagerly"] {
            let ctx = JobCtx::new(CancellationToken::new());
            match execute(&registry, ctx, &job(tool)).await {
                Err(JobError::Retryable(e)) => assert_eq!(e, "job panicked", "{tool}"),
                other => panic!("{tool}: {other:?}"),
            }
        }
        let ctx = JobCtx::new(CancellationToken::new());
        assert!(matches!(
            execute(&registry, ctx, &job("missing")).await,
            Err(JobError::Fatal(_))
        ));
    }
}
