//! `mcpq worker`: a stateless job worker against the configured database, with its
//! maintenance (lease rescue, retention), reload, metrics and systemd hooks.
//!
//! It must not decide what happens to a job: `crate::worker` does.

use std::path::PathBuf;

use super::lifecycle::{reload_on_sighup, service_lifecycle, shutdown_on_signals};
use super::{AnyError, Loader};
use crate::config::Settings;
use crate::worker::Worker;

pub(super) async fn worker(
    settings: Settings,
    config: Option<PathBuf>,
    loader: Loader,
    concurrency: Option<usize>,
) -> Result<(), AnyError> {
    let worker = Worker::build(&settings, concurrency).await?;
    let stop = shutdown_on_signals()?;
    let reloader = worker.reloader();
    reload_on_sighup(config, loader, move |s| {
        reloader.reload(&s?).map_err(|e| e.to_string())
    })?;
    let status = format!("worker {} claiming", worker.id());
    service_lifecycle(&stop, worker.health_check(), status);
    println!("worker {} started", worker.id());
    if let Some(at) = settings.metrics.worker_listen {
        let scrape = crate::telemetry::Scrape {
            store: worker.store(),
            clock: worker.clock(),
            lease_ms: settings.jobs.lease_ms,
            console: None,
            upstreams: Some(worker.upstreams()),
        };
        let (bound, _) =
            crate::telemetry::serve(at, scrape, settings.metrics.max_connections, stop.clone())
                .await?;
        println!("metrics on {bound}");
    }
    worker.run_until_stopped(stop).await?;
    Ok(())
}
