//! The claim loop of one worker ([`run`]): claims due jobs into free slots, backs off
//! while idle (waking early on an enqueue), follows registry reloads between claims, and
//! at stop gives running jobs the grace period before it releases the rest.
//!
//! It must not decide outcomes or write them (that is `run` and the completer); its only
//! writes are the claim itself and the final release.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::complete::complete_batches;
use super::heartbeat::heartbeats;
use super::inflight::{lock, Inflight, StopReason};
use super::run::{tool_rules, Launcher, Release, ToolRules};
use super::{WorkerOptions, WorkerParts};
use crate::jobs::{JobId, RetryPolicy};
use crate::otel::{spans, TraceHeaders};
use crate::store::{ClaimFilter, ClaimedJob, Completion, Store};
use crate::tools::{Registry, SharedRegistry};

/// Runs a worker until `stop` fires, then finishes or releases its jobs within the grace period.
pub async fn run(parts: WorkerParts, stop: CancellationToken) {
    let WorkerParts {
        store,
        registry,
        opts,
        clock,
        wake,
    } = parts;
    let inflight: Inflight = Arc::new(Mutex::new(HashMap::new()));
    let slots = Arc::new(Semaphore::new(opts.concurrency));
    let (done_tx, done_rx) = mpsc::unbounded_channel::<Completion>();
    let (release_tx, release_rx) = mpsc::unbounded_channel::<Release>();

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
    let claimer = Claimer {
        launcher: Launcher {
            slots,
            jobs: TaskTracker::new(),
            inflight,
            done_tx,
            release_tx,
            clock,
            default_retry: opts.retry,
            worker: opts.id.as_str().into(),
            store: store.clone(),
        },
        store,
        registry,
        opts,
        wake,
    };
    claimer.claim_until_stopped(&stop).await;
    claimer
        .stop_gracefully(Helpers {
            completer,
            release_rx,
            beats_stop,
            beater,
        })
        .await;
}

/// The loop's own state: what it claims with and what starts the claimed jobs.
struct Claimer {
    launcher: Launcher,
    store: Arc<dyn Store>,
    registry: SharedRegistry,
    opts: WorkerOptions,
    /// A local enqueue (the embedded worker's server).
    wake: Option<Arc<Notify>>,
}

/// The tasks beside the loop, stopped after it.
struct Helpers {
    completer: JoinHandle<()>,
    release_rx: mpsc::UnboundedReceiver<Release>,
    beats_stop: CancellationToken,
    beater: JoinHandle<()>,
}

/// What the worker may claim follows the registry; a reload swaps it between claims, and
/// every job runs with the registry snapshot it was claimed under.
struct Snapshot {
    current: Arc<Registry>,
    filter: ClaimFilter,
    rules: HashMap<String, ToolRules>,
    unknown: UnknownDefinitions,
}

impl Snapshot {
    fn new(current: Arc<Registry>, retry: RetryPolicy) -> Snapshot {
        let filter = current.claim_filter();
        let rules = tool_rules(&current, retry);
        let unknown = UnknownDefinitions::new(&filter);
        Snapshot {
            current,
            filter,
            rules,
            unknown,
        }
    }

    fn follow(&mut self, registry: &SharedRegistry, retry: RetryPolicy) {
        let latest = registry.load_full();
        if !Arc::ptr_eq(&latest, &self.current) {
            *self = Snapshot::new(latest, retry);
            tracing::info!("worker picked up reloaded tool definitions");
        }
    }
}

impl Claimer {
    async fn claim_until_stopped(&self, stop: &CancellationToken) {
        let opts = &self.opts;
        let slots = &self.launcher.slots;
        let mut snapshot = Snapshot::new(self.registry.load_full(), opts.retry);
        let mut backoff = Duration::from_millis(1);
        let store_wake = self.store.wakeups();
        tracing::info!(worker = %opts.id, concurrency = opts.concurrency, "worker started");
        // Woken by an enqueue's signal: jobs were committed, so the claim skips its read of
        // whether any is due (a round trip on PostgreSQL).
        let mut signalled = false;
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
            snapshot.follow(&self.registry, opts.retry);
            let claimed_at = self.launcher.clock.now_ms();
            let claim_began = crate::otel::enabled().then(std::time::SystemTime::now);
            let (due, claimed) = self
                .claim(free, claimed_at, &snapshot.filter, signalled)
                .await;
            signalled = false;
            let filled = claimed.len() >= free;
            if due && !filled {
                // Due jobs that this worker could not take may be under a definition it lacks.
                snapshot
                    .unknown
                    .check(self.store.as_ref(), claimed_at)
                    .await;
            }
            if claimed.is_empty() {
                match self.idle(&mut backoff, &store_wake, stop).await {
                    ControlFlow::Break(()) => break,
                    ControlFlow::Continue(woken) => signalled = woken,
                }
                continue;
            }
            backoff = Duration::from_millis(1);
            let single = claimed.len() == 1;
            let mut traced = match claim_began {
                Some(began) => self.traced(&claimed, began).await,
                None => HashMap::new(),
            };
            for job in claimed {
                let trace = traced.remove(&job.id);
                self.launcher
                    .start(job, &snapshot.current, &snapshot.rules, claimed_at, trace);
            }
            if !filled && !opts.claim_interval.is_zero() {
                // The queue had fewer jobs than free slots: let more arrive before the next
                // write transaction. After a claim of a single job, a signalled enqueue ends
                // the pause: a caller waiting on each job in turn must not wait the interval
                // out. Under load claims take several jobs and keep the pause: ending it on
                // every group commit's signal doubled the workers' CPU and cost the
                // end-to-end benchmark a quarter of its rate (BENCHMARKS.md).
                let woken = async {
                    match single {
                        true => self.woken(&store_wake).await,
                        false => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(opts.claim_interval) => {}
                    _ = woken => signalled = true,
                }
            }
        }
    }

    /// The claimed jobs' trace contexts (asked only while traces are on), and the claim's
    /// span in their traces. A failed read costs the traces, never the jobs.
    async fn traced(
        &self,
        claimed: &[ClaimedJob],
        began: std::time::SystemTime,
    ) -> HashMap<JobId, TraceHeaders> {
        let ids: Vec<JobId> = claimed.iter().map(|j| j.id.clone()).collect();
        let rows = match self.store.traced_jobs(&ids).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::debug!(error = %e, "trace contexts of claimed jobs");
                return HashMap::new();
            }
        };
        let traced: HashMap<JobId, TraceHeaders> = rows
            .into_iter()
            .filter_map(|t| TraceHeaders::from_stored(&t.context).map(|h| (t.id, h)))
            .collect();
        let contexts: Vec<TraceHeaders> = traced.values().cloned().collect();
        let attrs = vec![
            spans::attr("mcpq.batch.jobs", claimed.len() as i64),
            spans::attr("mcpq.batch.asked", ids.len() as i64),
        ];
        spans::batch("mcpq.store.claim", began, &contexts, attrs);
        traced
    }

    /// Claims up to `free` jobs; also says whether any job was due (`false` when
    /// `signalled` skipped that read: the check of unknown definitions waits for a claim
    /// that asked).
    async fn claim(
        &self,
        free: usize,
        claimed_at: i64,
        filter: &ClaimFilter,
        signalled: bool,
    ) -> (bool, Vec<ClaimedJob>) {
        if signalled {
            return (false, self.claim_now(free, claimed_at, filter).await);
        }
        // Ask a reader first: an idle worker must not take the write lock just to find nothing.
        let due = match self.store.has_due_jobs(claimed_at).await {
            Ok(due) => due,
            Err(e) => {
                // Nothing to do until the store answers: back off (see `idle`).
                self.store.status().fault("claim: due check", &e);
                false
            }
        };
        if !due {
            return (due, Vec::new());
        }
        let claimed = self.claim_now(free, claimed_at, filter).await;
        // A failed claim says nothing of definitions either.
        (due && self.store.status().is_up(), claimed)
    }

    /// The claim's write; empty (and the store marked faulty) if it failed.
    async fn claim_now(
        &self,
        free: usize,
        claimed_at: i64,
        filter: &ClaimFilter,
    ) -> Vec<ClaimedJob> {
        let opts = &self.opts;
        match self
            .store
            .claim(&opts.id, free, claimed_at, opts.lease_ms, filter)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                self.store.status().fault("claim", &e);
                Vec::new()
            }
        }
    }

    /// Resolves on a local enqueue or the store's hint of another process's.
    async fn woken(&self, store_wake: &Option<Arc<Notify>>) {
        let local = async {
            match &self.wake {
                Some(n) => n.notified().await,
                None => std::future::pending().await,
            }
        };
        let hinted = async {
            match store_wake {
                Some(n) => n.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = local => {}
            _ = hinted => {}
        }
    }

    /// Idle: backs off exponentially up to the cap, waking early on a local enqueue or on
    /// the store's hint that another process enqueued (says which: `true` when woken).
    /// Breaks when `stop` fires.
    async fn idle(
        &self,
        backoff: &mut Duration,
        store_wake: &Option<Arc<Notify>>,
        stop: &CancellationToken,
    ) -> ControlFlow<(), bool> {
        // While the store is down, claims wait for its probe rather than spin on errors.
        let pause = if self.store.status().is_up() {
            *backoff
        } else {
            (*backoff).max(crate::store::status::PROBE_EVERY)
        };
        tokio::select! {
            _ = stop.cancelled() => ControlFlow::Break(()),
            _ = self.woken(store_wake) => {
                *backoff = Duration::from_millis(1);
                ControlFlow::Continue(true)
            }
            _ = tokio::time::sleep(pause) => {
                *backoff = (*backoff * 2).min(self.opts.idle_backoff_max);
                ControlFlow::Continue(false)
            }
        }
    }

    /// Graceful stop: no more claims; give running jobs the grace period, then release the
    /// rest.
    async fn stop_gracefully(self, helpers: Helpers) {
        let Claimer {
            launcher,
            store,
            opts,
            ..
        } = self;
        let jobs = launcher.jobs.clone();
        jobs.close();
        if tokio::time::timeout(opts.grace, jobs.wait()).await.is_err() {
            {
                let running = lock(&launcher.inflight);
                tracing::info!(
                    jobs = running.len(),
                    "grace period over; releasing running jobs"
                );
                for r in running.values() {
                    r.stop(StopReason::Shutdown);
                }
            }
            jobs.wait().await;
        }
        let clock = launcher.clock.clone();
        // Closes the channels: the completer ends once it has committed what is queued.
        drop(launcher);
        let Helpers {
            completer,
            mut release_rx,
            beats_stop,
            beater,
        } = helpers;
        let _ = completer.await;
        let mut releases = Vec::new();
        while let Ok(r) = release_rx.try_recv() {
            releases.push(r);
        }
        if !releases.is_empty() {
            match store.release(releases, clock.now_ms()).await {
                Ok(n) => tracing::info!(jobs = n, "released jobs back to the queue"),
                Err(e) => {
                    tracing::warn!(error = %e, "release failed; the jobs will be rescued when their leases expire")
                }
            }
        }
        beats_stop.cancel();
        let _ = beater.await;
        tracing::info!(worker = %opts.id, "worker stopped");
    }
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
