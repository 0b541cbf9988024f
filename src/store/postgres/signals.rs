//! Signals between the processes on one PostgreSQL database, over `LISTEN`/`NOTIFY`:
//! "jobs were enqueued" (`mcpq_jobs`, to idle workers) and "these jobs changed"
//! (`mcpq_changed`, with their ids, to processes holding calls on them), so a worker
//! claims as soon as a job commits and a held call answers as soon as its job finished.
//!
//! Notifications are hints: one lost to a dropped connection costs latency, never a job,
//! because every waiter keeps its timer. It must not carry job data beyond ids.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::store::changes::JobChanges;

/// Enqueues, to workers.
pub(super) const CHANNEL: &str = "mcpq_jobs";
/// Changed jobs, to held calls: ids separated by commas, or `*` for "all".
const CHANGED: &str = "mcpq_changed";
/// PostgreSQL takes payloads under 8000 bytes; a batch naming more ids than this many
/// notifications hold says "all" instead.
const PAYLOAD: usize = 7_000;
const MAX_PAYLOADS: usize = 4;

/// Sends `NOTIFY mcpq_jobs` after enqueues commit, at most once per [`NOTIFY_EVERY`]: one
/// notification wakes every listening worker, and each then claims everything due. Kept out
/// of the enqueue statement: a transaction that notifies holds PostgreSQL's notify-queue lock
/// through its commit, which serialized the group commits' WAL flushes.
///
/// The interval is a latency floor for a caller that enqueues, waits for the job, and
/// enqueues again: at 5 ms, every held call's enqueue found the previous notify's pause
/// still running (a cycle takes about 4 ms) and waited it out.
pub(super) async fn notify_loop(pool: PgPool, jobs_added: Arc<Notify>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = jobs_added.notified() => {}
        }
        if let Err(e) = sqlx::query("SELECT pg_notify($1, '')")
            .bind(CHANNEL)
            .execute(&pool)
            .await
        {
            tracing::debug!(error = %e, "NOTIFY failed (workers poll anyway)");
        }
        tokio::time::sleep(NOTIFY_EVERY).await;
    }
}

const NOTIFY_EVERY: Duration = Duration::from_millis(1);

/// Wakes idle workers on each notification. A lost connection is retried: notifications
/// sent meanwhile are lost, which costs only latency (workers also poll).
pub(super) async fn listen(mut listener: PgListener, notify: Arc<Notify>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            n = listener.recv() => match n {
                // One claimer per process waits: a permit kept while it claims is not lost.
                Ok(_) => notify.notify_one(),
                Err(_) if stop.is_cancelled() => return,
                Err(e) => {
                    crate::logging::repeats::fault("LISTEN connection (workers poll meanwhile)", &e);
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    }
}

/// Changed jobs: this process's waiters, and the ids on their way to other processes.
pub(super) struct Changes {
    pool: PgPool,
    stop: CancellationToken,
    local: OnceLock<Arc<JobChanges>>,
    pending: Mutex<Vec<String>>,
    kick: Notify,
}

impl Changes {
    /// Starts the task that sends `mcpq_changed`.
    pub(super) fn start(pool: PgPool, stop: CancellationToken) -> Arc<Changes> {
        let changes = Arc::new(Changes {
            pool,
            stop,
            local: OnceLock::new(),
            pending: Mutex::new(Vec::new()),
            kick: Notify::new(),
        });
        tokio::spawn(announce_loop(changes.clone()));
        changes
    }

    /// These jobs changed (committed): wake this process's waiters, tell the others.
    pub(super) fn send<'a>(&self, ids: impl Iterator<Item = &'a str> + Clone) {
        if let Some(local) = self.local.get() {
            local.changed(ids.clone());
        }
        lock(&self.pending).extend(ids.map(str::to_string));
        self.kick.notify_one();
    }

    /// This process's waiters, woken by its own completions and, once its listener is
    /// connected, other processes'.
    pub(super) fn waiters(&self) -> Arc<JobChanges> {
        self.local
            .get_or_init(|| {
                let local = JobChanges::new();
                tokio::spawn(listen_changed(
                    self.pool.clone(),
                    local.clone(),
                    self.stop.clone(),
                ));
                local
            })
            .clone()
    }
}

/// Sends what `send` gathered, one batch per round: while a NOTIFY is under way, the
/// next completions gather.
async fn announce_loop(changes: Arc<Changes>) {
    loop {
        tokio::select! {
            _ = changes.stop.cancelled() => return,
            _ = changes.kick.notified() => {}
        }
        let ids = std::mem::take(&mut *lock(&changes.pending));
        for payload in payloads(&ids) {
            if let Err(e) = sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANGED)
                .bind(&payload)
                .execute(&changes.pool)
                .await
            {
                tracing::debug!(error = %e, "NOTIFY of changed jobs failed (held calls poll anyway)");
                break;
            }
        }
    }
}

/// `ids` as notification payloads: comma-separated, or one `*` if they would take more
/// than [`MAX_PAYLOADS`].
fn payloads(ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for id in ids {
        let full = out.len() == MAX_PAYLOADS;
        match out.last_mut() {
            Some(p) if p.len() + id.len() < PAYLOAD => {
                p.push(',');
                p.push_str(id);
            }
            _ if full => return vec!["*".to_string()],
            _ => out.push(id.clone()),
        }
    }
    out
}

/// Wakes this process's waiters on `mcpq_changed`; reconnects after a lost connection.
async fn listen_changed(pool: PgPool, local: Arc<JobChanges>, stop: CancellationToken) {
    loop {
        let listener = async {
            let mut l = PgListener::connect_with(&pool).await?;
            l.listen(CHANGED).await?;
            Ok::<_, sqlx::Error>(l)
        };
        let mut listener = tokio::select! {
            _ = stop.cancelled() => return,
            l = listener => l,
        };
        if listener.is_ok() {
            // Completions before LISTEN took effect were not heard: every waiter reads again.
            local.all_changed();
        }
        loop {
            let l = match &mut listener {
                Ok(l) => l,
                Err(e) => {
                    crate::logging::repeats::fault(
                        "LISTEN for changed jobs (held calls poll meanwhile)",
                        e,
                    );
                    break;
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                n = l.recv() => match n {
                    Ok(n) if n.payload() == "*" => local.all_changed(),
                    Ok(n) => local.changed(n.payload().split(',')),
                    Err(e) => {
                        crate::logging::repeats::fault("LISTEN for changed jobs (held calls poll meanwhile)", &e);
                        break;
                    }
                }
            }
        }
        // Whatever changed while the listener was away: let every waiter read again.
        local.all_changed();
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_become_payloads_under_the_limit_or_all() {
        let few: Vec<String> = (0..3).map(|i| format!("id{i}")).collect();
        assert_eq!(super::payloads(&few), vec!["id0,id1,id2".to_string()]);
        let id = "x".repeat(36);
        let many: Vec<String> = (0..500).map(|_| id.clone()).collect();
        let p = super::payloads(&many);
        assert!(p.len() > 1 && p.iter().all(|p| p.len() <= super::PAYLOAD));
        let too_many: Vec<String> = (0..10_000).map(|_| id.clone()).collect();
        assert_eq!(super::payloads(&too_many), vec!["*".to_string()]);
    }
}
