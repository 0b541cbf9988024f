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
        let mut pause = Duration::from_millis(100);
        let mut failed_before = false;
        loop {
            match store.complete(batch.clone(), clock.now_ms()).await {
                Ok(applied) => {
                    if applied.len() < batch.len() && failed_before {
                        // The failed try may have applied them (a connection lost after the
                        // commit): fenced, the second write changes nothing and reports them
                        // as not applied, which is not a lost lease.
                        tracing::info!(
                            not_applied = batch.len() - applied.len(),
                            "completions retried after a store fault: applied by the earlier \
                             try, or their lease was lost meanwhile"
                        );
                    } else if applied.len() < batch.len() {
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
                    // Retried until the store takes it (a full disk, a restarting server):
                    // the outcome is already decided and must not be lost. A write that may
                    // have applied is fenced, so applying it again changes nothing.
                    store.status().fault("completion", &e);
                    failed_before = true;
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
            }
        }
        batch.clear();
    }
}
