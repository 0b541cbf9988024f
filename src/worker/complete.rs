//! The completer: commits the outcomes of finished attempts in batches (one write per
//! batch, fenced), and only then lets their jobs leave the running table.
//!
//! It must not decide outcomes (that is `run`) nor drop one: a failed batch is retried.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::inflight::{lock, Inflight};
use crate::clock::Clock;
use crate::store::{Completion, Store};

/// Commits completions in batches; a failed batch is retried, never dropped.
pub(super) async fn complete_batches(
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
