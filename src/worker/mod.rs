//! Job execution: the claim loop, per-job tasks, batched heartbeats and
//! completions, graceful release, and the maintenance loop (lease rescue, retention).
//!
//! A worker is stateless: everything it knows about a job comes from its claim
//! and everything it decides is written back fenced, so any number of worker
//! processes (and the loops embedded in `mcpq serve`) can share one database and
//! a worker that lost its lease can never overwrite a job's record.
//!
//! [`Worker`] is the component `mcpq worker` runs (`Worker::build` → `run_until_stopped`,
//! the shape of the server's); `mcpq serve` runs the same loop ([`run`]) and
//! [`maintenance`] beside its listener. The parts, one file each:
//! - `claim`: the claim loop ([`run`]): free slots, idle back-off, reloads, graceful stop.
//! - `run`: one attempt: run the tool and decide its outcome.
//! - `complete`: the completer, committing outcomes in batches.
//! - `heartbeat`: lease extensions and progress; stops cancelled and lost jobs.
//! - `maintenance`: lease rescue and retention, once per process.
//! - `inflight`: the running-jobs table those share, and why a job was stopped (`StopReason`).
//! - `health`: the health check `mcpq serve` and `mcpq worker` both report.
//!
//! A worker process also runs the webhook deliverer (`crate::webhooks`) beside its loop.
//!
//! It must not speak HTTP or know about signatures; transitions are decided with
//! [`crate::jobs`] and applied through [`Store`].

mod claim;
mod complete;
mod health;
mod heartbeat;
mod inflight;
mod maintenance;
mod run;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, SystemClock};
use crate::config::{ConfigError, JobSettings, Settings};
use crate::jobs::RetryPolicy;
use crate::store::{Store, StoreError};
use crate::tools::upstream::Upstreams;
use crate::tools::{Registry, SharedRegistry};

pub use claim::run;
pub use health::{store_health, HealthCheck};
pub use maintenance::{maintenance, rescue_once};

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

/// What one worker loop ([`run`]) runs with.
pub struct WorkerParts {
    pub store: Arc<dyn Store>,
    /// Swapped whole by a reload; the loop follows it between claims.
    pub registry: SharedRegistry,
    pub opts: WorkerOptions,
    pub clock: Arc<dyn Clock>,
    /// Wakes the idle loop when this process enqueued a job (a worker embedded in
    /// `mcpq serve`); `None` for a worker process of its own.
    pub wake: Option<Arc<Notify>>,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the worker loop failed: {0}")]
    Loop(String),
}

/// A worker process's component (`mcpq worker`): built (store open, tools built, the
/// database answering), then run until stopped with its maintenance beside it.
pub struct Worker {
    parts: WorkerParts,
    jobs: JobSettings,
    /// Delivers completion webhooks beside the job loop, if any client has them.
    deliverer: Option<crate::webhooks::Deliverer>,
    /// This worker's sessions with `[upstreams]`, and the settings its tools were last
    /// built from (a listing change rebuilds them).
    upstreams: Upstreams,
    settings: Arc<std::sync::Mutex<Arc<Settings>>>,
}

impl Worker {
    /// Opens the database, builds the tools and waits for the database to answer a read;
    /// starts nothing. `concurrency` overrides `worker.concurrency`.
    pub async fn build(
        settings: &Settings,
        concurrency: Option<usize>,
    ) -> Result<Worker, WorkerError> {
        Worker::build_with_clock(settings, concurrency, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(
        settings: &Settings,
        concurrency: Option<usize>,
        clock: Arc<dyn Clock>,
    ) -> Result<Worker, WorkerError> {
        let mut opts = WorkerOptions::from_settings(settings, 1);
        if let Some(c) = concurrency {
            opts.concurrency = c.max(1);
        }
        let store = crate::store::open::open(settings).await?.store();
        let upstreams = Upstreams::new(CancellationToken::new());
        upstreams
            .apply(&settings.upstreams, UPSTREAM_START_WAIT)
            .await;
        let registry: SharedRegistry = Arc::new(arc_swap::ArcSwap::from_pointee(Registry::build(
            settings,
            Some(&upstreams),
        )?));
        // Ready once the database answers a read (the first claim can be made).
        store.has_due_jobs(0).await?;
        let deliverer = crate::webhooks::Deliverer::new(
            &settings.webhooks,
            store.clone(),
            format!("{}:webhooks", opts.id),
            clock.clone(),
        )?;
        Ok(Worker {
            parts: WorkerParts {
                store,
                registry,
                opts,
                clock,
                wake: None,
            },
            jobs: settings.jobs.clone(),
            deliverer,
            upstreams,
            settings: Arc::new(std::sync::Mutex::new(Arc::new(settings.clone()))),
        })
    }

    /// The lease owner this worker writes (`host:pid:uuid`).
    pub fn id(&self) -> &str {
        &self.parts.opts.id
    }

    /// The store and clock, for the metrics endpoint.
    pub fn store(&self) -> Arc<dyn Store> {
        self.parts.store.clone()
    }

    pub fn clock(&self) -> Arc<dyn Clock> {
        self.parts.clock.clone()
    }

    /// This worker's upstream sessions (for the metrics).
    pub fn upstreams(&self) -> Upstreams {
        self.upstreams.clone()
    }

    /// The watchdog's health check (see [`store_health`]).
    pub fn health_check(&self) -> HealthCheck {
        let claiming = format!("worker {}: claiming", self.id());
        let upstreams = self.upstreams.clone();
        store_health(self.store(), self.clock(), move || {
            match upstreams.describe_down() {
                Some(down) => format!("{claiming}; {down}"),
                None => claiming.clone(),
            }
        })
    }

    /// A handle that applies a new configuration's tools to this worker.
    pub fn reloader(&self) -> Reloader {
        Reloader {
            registry: self.parts.registry.clone(),
            upstreams: self.upstreams.clone(),
            settings: self.settings.clone(),
        }
    }

    /// Claims and runs jobs until `shutdown` fires, then finishes or releases them within
    /// the grace period, stops maintenance and closes the store.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), WorkerError> {
        let reloader = self.reloader();
        let Worker {
            parts,
            jobs,
            deliverer,
            upstreams,
            ..
        } = self;
        // The tools follow the upstreams' listings (a worker never runs a job queued
        // under another listing: the definition ids differ).
        tokio::spawn(upstreams.clone().follow(move || reloader.rebuild()));
        let store = parts.store.clone();
        let maint_stop = CancellationToken::new();
        let watch = tokio::spawn(crate::store::status::watch(
            store.clone(),
            maint_stop.clone(),
        ));
        let maint = tokio::spawn(maintenance(
            store.clone(),
            Arc::new(|_| {}),
            jobs,
            None,
            parts.clock.clone(),
            maint_stop.clone(),
        ));
        let hooks = deliverer.map(|d| tokio::spawn(d.run(maint_stop.clone())));
        // On a runtime thread, not on main's `block_on`: the loop spawns every job,
        // and a spawn from outside the runtime goes through the shared queue and
        // wakes a parked thread each time.
        tokio::spawn(run(parts, shutdown))
            .await
            .map_err(|e| WorkerError::Loop(e.to_string()))?;
        maint_stop.cancel();
        let _ = maint.await;
        if let Some(h) = hooks {
            let _ = h.await;
        }
        let _ = watch.await;
        upstreams.stop();
        store.close().await;
        Ok(())
    }
}

/// How long a worker's start waits for the upstreams' first listings.
const UPSTREAM_START_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Applies a reloaded configuration (SIGHUP) to a running worker: its tools. Running jobs
/// keep the registry they were claimed under.
#[derive(Clone)]
pub struct Reloader {
    registry: SharedRegistry,
    upstreams: Upstreams,
    settings: Arc<std::sync::Mutex<Arc<Settings>>>,
}

impl Reloader {
    /// Builds every tool first; on any error nothing changes.
    pub fn reload(&self, settings: &Settings) -> Result<String, ConfigError> {
        let r = Registry::build(settings, Some(&self.upstreams))?;
        let summary = format!("{} tools", r.iter().count());
        self.registry.store(Arc::new(r));
        *self.settings.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(settings.clone());
        let (ups, defs) = (self.upstreams.clone(), settings.upstreams.clone());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { ups.apply(&defs, std::time::Duration::ZERO).await });
        }
        Ok(summary)
    }

    /// Rebuilds the tools from the settings last applied and the upstreams' listings.
    fn rebuild(&self) {
        let settings = self
            .settings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match Registry::build(&settings, Some(&self.upstreams)) {
            Ok(r) => self.registry.store(Arc::new(r)),
            Err(e) => {
                tracing::error!(error = %e, "tools not rebuilt after an upstream's listing changed")
            }
        }
    }
}
