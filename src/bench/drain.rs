//! `mcpq bench drain`: fills the configured store with no-op jobs, starts `mcpq worker`
//! processes, and times them draining it (the first and last windows of jobs as well as
//! overall).
//!
//! It must not be used by the daemon itself; it runs workers only as child processes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::clock::SystemClock;
use crate::config::Settings;
use crate::store::bench::{DrainBench, FillShape};
use crate::store::open::AnyStore;

type AnyError = Box<dyn std::error::Error + Send + Sync>;

/// What `mcpq bench drain` runs.
pub struct DrainRun {
    pub jobs: usize,
    pub workers: usize,
    /// Afterwards, delete the finished jobs with the retention code.
    pub prune_after: bool,
    pub shape: FillShape,
}

/// Prefills no-op jobs, then times `workers` worker processes draining them.
pub async fn drain(
    settings: Settings,
    config: Option<PathBuf>,
    run: DrainRun,
) -> Result<(), AnyError> {
    let DrainRun {
        jobs: n,
        workers,
        prune_after,
        shape,
    } = run;
    if !settings.server.bench_tools {
        return Err(
            "bench drain needs server.bench_tools = true (the noop job tool) in the config".into(),
        );
    }
    let store = crate::store::open::open(&settings).await?;
    let t = Instant::now();
    store.bench_fill_noop(n, shape).await?;
    println!(
        "filled {n} jobs ({shape:?}) in {:.2}s",
        t.elapsed().as_secs_f64()
    );
    let exe = std::env::current_exe()?;
    let start = Instant::now();
    let mut children = spawn_workers(&exe, config.as_ref(), workers)?;
    // Rate over the first `window` jobs (same work whatever the backlog), over the last
    // `window` (from when the queue's head passes them to the end), and overall.
    let window = n.min(20_000) as i64;
    // Claims follow priority, not insertion order, so with mixed priorities the windows by
    // sequence mean nothing, and probing them would take the database's time from the drain.
    let window = if shape.mixed_priorities { 0 } else { window };
    let timing = follow(&store, n, window, start).await?;
    let elapsed = start.elapsed();
    for c in &mut children {
        let _ = c.start_kill();
    }
    let w = timing.window_elapsed.unwrap_or(elapsed);
    let last = elapsed.saturating_sub(timing.last_window_start.unwrap_or_default());
    let overall = format!(
        "drain: {:.0} jobs/s overall ({n} jobs, {workers} worker processes, {:.2}s)",
        n as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64(),
    );
    if window == 0 {
        println!("{overall}");
    } else {
        println!(
            "{overall}; first {window} jobs at {:.0} jobs/s; last {window} at {:.0} jobs/s",
            window as f64 / w.as_secs_f64(),
            window as f64 / last.as_secs_f64().max(1e-3),
        );
    }
    if prune_after {
        let t = Instant::now();
        let now = crate::clock::Clock::now_ms(&SystemClock);
        let pruned = store.store().prune(now + 1, now).await?;
        println!(
            "pruned {pruned} finished jobs in {:.2}s",
            t.elapsed().as_secs_f64()
        );
    }
    store.store().close().await;
    Ok(())
}

/// `workers` `mcpq worker` processes of this executable, on the same configuration.
fn spawn_workers(
    exe: &Path,
    config: Option<&PathBuf>,
    workers: usize,
) -> Result<Vec<tokio::process::Child>, AnyError> {
    let mut children = Vec::new();
    for _ in 0..workers {
        let mut cmd = tokio::process::Command::new(exe);
        if let Some(cfg) = config {
            cmd.arg("--config").arg(cfg);
        }
        cmd.arg("worker")
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true);
        children.push(cmd.spawn()?);
    }
    Ok(children)
}

/// When, after `start`, the first `window` jobs had all succeeded and the queue's head
/// reached the last `window`.
struct Timing {
    window_elapsed: Option<Duration>,
    last_window_start: Option<Duration>,
}

/// Follows the drain of `n` jobs until none is left unfinished (ten minutes at most).
async fn follow(
    store: &AnyStore,
    n: usize,
    window: i64,
    start: Instant,
) -> Result<Timing, AnyError> {
    let first = store.first_seq().await?;
    let last_window_from = first + n as i64 - window;
    let mut window_elapsed = None;
    let mut last_window_start = None;
    loop {
        if window_elapsed.is_none()
            && (window == 0 || store.succeeded_in_range(first, first + window - 1).await? == window)
        {
            window_elapsed = Some(start.elapsed());
        }
        if window > 0
            && last_window_start.is_none()
            && store
                .queue_head_seq()
                .await?
                .is_none_or(|head| head >= last_window_from)
        {
            last_window_start = Some(start.elapsed());
        }
        if window_elapsed.is_some() && !store.any_unfinished().await? {
            break;
        }
        if start.elapsed() > Duration::from_secs(600) {
            return Err("drain did not finish within ten minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(Timing {
        window_elapsed,
        last_window_start,
    })
}
