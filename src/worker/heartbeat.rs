//! Heartbeats: one write per tick extends the leases of this worker's running jobs and
//! carries their latest progress; its answer stops jobs whose lease was lost or whose
//! cancellation a client requested.
//!
//! It must not finish jobs: it only stops them (with a [`StopReason`]) and their tasks
//! decide what follows.

use std::collections::HashMap;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::inflight::{lock, Inflight, StopReason};
use super::WorkerOptions;
use crate::clock::Clock;
use crate::jobs::JobId;
use crate::json::Json;
use crate::store::{Heartbeat, Store};

/// Extends the leases of all running jobs in one statement per tick, carrying their latest
/// progress; stops jobs whose lease was lost or whose cancellation was requested.
pub(super) async fn heartbeats(
    store: Arc<dyn Store>,
    inflight: Inflight,
    opts: WorkerOptions,
    clock: Arc<dyn Clock>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(opts.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = clock.now_ms();
        let beats = due_beats(&inflight, now, opts.lease_ms);
        if beats.is_empty() {
            continue;
        }
        let acks = match store.heartbeat(beats.clone(), now, opts.lease_ms).await {
            Ok(a) => a,
            Err(e) => {
                store.status().fault("heartbeat", &e);
                continue;
            }
        };
        let acked: HashMap<&JobId, bool> =
            acks.iter().map(|a| (&a.id, a.cancel_requested)).collect();
        let mut running = lock(&inflight);
        for b in &beats {
            let Some(r) = running.get_mut(&b.id) else {
                continue;
            };
            if r.fence != b.fence {
                continue;
            }
            match acked.get(&b.id) {
                Some(false) => r.renewed_at = now,
                Some(true) => r.stop(StopReason::CancelRequested),
                None => r.stop(StopReason::LeaseLost),
            }
        }
    }
}

/// The heartbeats this tick must write.
///
/// A lease is extended once a third of it has passed (so two more heartbeats can fail
/// before it expires); jobs with new progress are written at every tick. Short jobs thus
/// finish without ever costing a heartbeat write.
fn due_beats(inflight: &Inflight, now: i64, lease_ms: i64) -> Vec<Heartbeat> {
    lock(inflight)
        .iter()
        .filter_map(|(id, r)| {
            let progress = r
                .ctx
                .take_progress()
                .map(|p| Json::Object(p).to_canonical());
            let due = now - r.renewed_at >= lease_ms / 3;
            (due || progress.is_some()).then(|| Heartbeat {
                id: id.clone(),
                fence: r.fence,
                progress,
            })
        })
        .collect()
}
