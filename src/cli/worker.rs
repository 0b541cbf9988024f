//! `mcpq worker`: a stateless job worker against the configured database, with its
//! maintenance (lease rescue, retention), reload, metrics and systemd hooks.
//!
//! It must not decide what happens to a job: `crate::worker` does.

use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::lifecycle::{reload_on_sighup, service_lifecycle, shutdown_on_signals};
use super::{AnyError, Loader};
use crate::clock::SystemClock;
use crate::config::Settings;
use crate::tools::Registry;
use crate::worker::{self, WorkerOptions};

// The assembly is kept as it was inline in `cli::run`; `Worker::build` is to replace it.
pub(super) async fn worker(
    settings: Settings,
    config: Option<PathBuf>,
    loader: Loader,
    concurrency: Option<usize>,
) -> Result<(), AnyError> {
    let mut opts = WorkerOptions::from_settings(&settings, 1);
    if let Some(c) = concurrency {
        opts.concurrency = c.max(1);
    }
    let any = crate::store::open::open(&settings).await?;
    let store = any.store();
    let registry: crate::tools::SharedRegistry = Arc::new(arc_swap::ArcSwap::from_pointee(
        Registry::from_settings(&settings)?,
    ));
    let stop = shutdown_on_signals()?;
    let shared = registry.clone();
    reload_on_sighup(config.clone(), loader, move |s| {
        let r = Registry::from_settings(&s).map_err(|e| e.to_string())?;
        let summary = format!("{} tools", r.iter().count());
        shared.store(Arc::new(r));
        Ok(summary)
    })?;
    let maint_stop = CancellationToken::new();
    let maint = tokio::spawn(worker::maintenance(
        store.clone(),
        Arc::new(|_| {}),
        settings.jobs.clone(),
        Arc::new(SystemClock),
        maint_stop.clone(),
    ));
    // Ready once the database answers a read (the first claim can be made).
    store.has_due_jobs(0).await?;
    let health_store = store.clone();
    let worker_id = opts.id.clone();
    service_lifecycle(
        &stop,
        Box::new(move || {
            let store = health_store.clone();
            let worker_id = worker_id.clone();
            Box::pin(async move {
                store.ping().await.map_err(|e| e.to_string())?;
                store.flush().await.map_err(|e| e.to_string())?;
                let now = crate::clock::Clock::now_ms(&SystemClock);
                let stats = store.queue_stats(now).await.map_err(|e| e.to_string())?;
                Ok(format!(
                    "worker {worker_id}: claiming; {}",
                    stats.summary(now)
                ))
            })
        }),
        format!("worker {} claiming", opts.id),
    );
    println!("worker {} started", opts.id);
    if let Some(at) = settings.metrics.worker_listen {
        let scrape = crate::telemetry::Scrape {
            store: store.clone(),
            clock: Arc::new(SystemClock),
            lease_ms: settings.jobs.lease_ms,
        };
        let (bound, _) = crate::telemetry::serve(at, scrape, stop.clone()).await?;
        println!("metrics on {bound}");
    }
    // On a runtime thread, not on main's `block_on`: the loop spawns every job,
    // and a spawn from outside the runtime goes through the shared queue and
    // wakes a parked thread each time.
    tokio::spawn(worker::run(
        store.clone(),
        registry,
        opts,
        Arc::new(SystemClock),
        stop,
        None,
    ))
    .await
    .map_err(|e| format!("the worker loop failed: {e}"))?;
    maint_stop.cancel();
    let _ = maint.await;
    store.close().await;
    Ok(())
}
