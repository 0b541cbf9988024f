//! The table of this worker's running jobs, shared by the claim loop (which adds a job),
//! the heartbeats (which extend its lease or stop it) and the completer (which removes it
//! once its outcome is committed), and why a running job was stopped ([`StopReason`]).
//!
//! It must not touch the store or decide outcomes: it only holds what the three loops
//! share.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::jobs::JobId;
use crate::tools::JobCtx;

/// Why a running job's token was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum StopReason {
    /// A client called `cancel_job` while the job ran (seen by a heartbeat).
    CancelRequested = 1,
    /// A heartbeat found the lease gone: another worker may own the job now.
    LeaseLost = 2,
    /// This worker's grace period ran out while stopping.
    Shutdown = 3,
}

impl StopReason {
    /// The reason stored in a [`Stop`] cell (`0`: not stopped).
    fn from_u8(v: u8) -> Option<StopReason> {
        match v {
            1 => Some(StopReason::CancelRequested),
            2 => Some(StopReason::LeaseLost),
            3 => Some(StopReason::Shutdown),
            _ => None,
        }
    }
}

/// One job's stop reason, written by whoever cancels it and read by its task once the
/// attempt returns: one atomic byte, so a heartbeat never waits on the job.
#[derive(Debug, Default)]
pub(super) struct Stop(AtomicU8);

impl Stop {
    pub(super) fn set(&self, reason: StopReason) {
        self.0.store(reason as u8, Ordering::SeqCst);
    }

    pub(super) fn get(&self) -> Option<StopReason> {
        StopReason::from_u8(self.0.load(Ordering::SeqCst))
    }
}

pub(super) struct Running {
    pub(super) fence: i64,
    pub(super) ctx: JobCtx,
    pub(super) stop: Arc<Stop>,
    /// When the lease was last extended (claim time at first).
    pub(super) renewed_at: i64,
}

impl Running {
    /// Records why, then cancels the job's token (the order its task relies on).
    pub(super) fn stop(&self, reason: StopReason) {
        self.stop.set(reason);
        self.ctx.cancel.cancel();
    }
}

pub(super) type Inflight = Arc<Mutex<HashMap<JobId, Running>>>;

pub(super) fn lock(m: &Inflight) -> MutexGuard<'_, HashMap<JobId, Running>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_cell_reads_back_what_was_set_and_starts_empty() {
        let cell = Stop::default();
        assert_eq!(cell.get(), None);
        for r in [
            StopReason::CancelRequested,
            StopReason::LeaseLost,
            StopReason::Shutdown,
        ] {
            cell.set(r);
            assert_eq!(cell.get(), Some(r));
        }
    }

    #[test]
    fn unknown_bytes_are_no_reason() {
        assert_eq!(StopReason::from_u8(0), None);
        assert_eq!(StopReason::from_u8(4), None);
        assert_eq!(StopReason::from_u8(255), None);
    }
}
