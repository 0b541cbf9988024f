//! The health check of a process that runs jobs, the same for `mcpq serve` and
//! `mcpq worker`: a read through the pool and a round trip through the writer (`flush`),
//! so a stalled database or a wedged writer fails it; when healthy, a status line with the
//! queue's depth.
//!
//! It must not talk to the service manager: `systemd` (today `service`) runs the check and
//! decides what to tell it.

use std::sync::Arc;

use crate::clock::Clock;
use crate::store::{BoxFuture, Store};

/// A health check: a status line when healthy, the reason when not. (The same type as the
/// service manager's `Check`, which it is handed to.)
pub type HealthCheck = Box<dyn Fn() -> BoxFuture<'static, Result<String, String>> + Send + Sync>;

/// The check of a process on `store`; its status line is `"{what}; {queue summary}"`.
pub fn store_health(store: Arc<dyn Store>, clock: Arc<dyn Clock>, what: String) -> HealthCheck {
    Box::new(move || {
        let store = store.clone();
        let clock = clock.clone();
        let what = what.clone();
        Box::pin(async move {
            store.ping().await.map_err(|e| e.to_string())?;
            store.flush().await.map_err(|e| e.to_string())?;
            let now = clock.now_ms();
            let stats = store.queue_stats(now).await.map_err(|e| e.to_string())?;
            Ok(format!("{what}; {}", stats.summary(now)))
        })
    })
}
