//! The health check of a process that runs jobs, the same for `mcpq serve` and
//! `mcpq worker`: a read through the pool and a round trip through the writer (`flush`),
//! so a stalled database or a wedged writer fails it; when healthy, a status line with the
//! queue's depth; while the store is down, a line that says so ("database unreachable for
//! 12 s").
//!
//! It must not talk to the service manager: `systemd` (today `service`) runs the check and
//! decides what to tell it.

use std::sync::Arc;

use crate::clock::Clock;
use crate::store::{BoxFuture, Store, StoreError};

/// A health check: a status line when healthy, the reason when not. (The same type as the
/// service manager's `Check`, which it is handed to.)
pub type HealthCheck = Box<dyn Fn() -> BoxFuture<'static, Result<String, String>> + Send + Sync>;

/// The check of a process on `store`; its status line is `"{what}; {queue summary}"`.
///
/// `what` is asked at each check, so it can carry this process's other news (upstreams
/// that are down).
pub fn store_health(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    what: impl Fn() -> String + Send + Sync + 'static,
) -> HealthCheck {
    Box::new(move || {
        let store = store.clone();
        let clock = clock.clone();
        let what = what();
        Box::pin(async move {
            // A database that is down is not this process's fault: it reports the outage and
            // keeps its watchdog pings (a restart would not bring the database back, and a
            // process that cannot reach it at start does not come up at all).
            if let Some(outage) = store.status().describe() {
                return Ok(format!("{what}; {outage}"));
            }
            let checked = async {
                store.ping().await?;
                store.flush().await?;
                let now = clock.now_ms();
                let stats = store.queue_stats(now).await?;
                Ok::<_, StoreError>(format!("{what}; {}", stats.summary(now)))
            };
            match checked.await {
                Ok(line) => Ok(line),
                // After a failed fsync only a restart makes writes trustworthy again.
                Err(e @ StoreError::NotDurable) => Err(e.to_string()),
                Err(e) => match store.status().fault("health check", &e) {
                    Some(_) => Ok(format!(
                        "{what}; {}",
                        store.status().describe().unwrap_or_else(|| e.to_string())
                    )),
                    None => Err(e.to_string()),
                },
            }
        })
    })
}
