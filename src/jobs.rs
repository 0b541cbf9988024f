//! The job state machine: states, legal transitions, retry back-off and the
//! mapping of states onto the wire's `status` literals.
//!
//! This is the one place that says what may happen to a job. It is pure (no
//! I/O, no clock, no randomness of its own: callers pass `now` and a jitter
//! sample) so every rule is unit-tested here; the store's SQL implements exactly
//! these transitions and the store conformance suite checks it does.

use crate::protocol::Status;

/// Public, unguessable identifier of a job (a UUIDv7 string: time-ordered, 122 bits random-ish).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(pub String);

impl JobId {
    pub fn generate() -> JobId {
        JobId(uuid::Uuid::now_v7().to_string())
    }

    /// Accepts only the canonical lowercase hyphenated UUID form we hand out.
    pub fn parse(s: &str) -> Option<JobId> {
        let u = uuid::Uuid::parse_str(s).ok()?;
        let canonical = u.hyphenated().to_string();
        (canonical == s).then_some(JobId(canonical))
    }
}

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<JobState> {
        Some(match s {
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "succeeded" => JobState::Succeeded,
            "failed" => JobState::Failed,
            "cancelled" => JobState::Cancelled,
            _ => return None,
        })
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }

    /// The seed's status literal for a poll of a job in this state.
    pub fn wire_status(self) -> Status {
        match self {
            JobState::Queued => Status::Accepted,
            JobState::Running => Status::Running,
            JobState::Succeeded => Status::Done,
            JobState::Failed | JobState::Cancelled => Status::Error,
        }
    }
}

/// Why a job left (or re-entered) a state. Each is one edge of the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A worker claimed it (attempt + 1, new fencing token).
    Claim,
    /// The worker finished it.
    Succeed,
    /// The attempt failed and will be retried later.
    Retry,
    /// The attempt failed and no attempts remain (or the error is fatal).
    Fail,
    /// A cancel request took effect.
    Cancel,
    /// The lease expired with the worker gone; the attempt counts.
    Rescue,
    /// A worker shut down gracefully and gave the job back; the attempt does not count.
    Release,
}

/// The transition function. `None` means the event is illegal in that state.
pub fn transition(from: JobState, ev: Event) -> Option<JobState> {
    use Event::*;
    use JobState::*;
    match (from, ev) {
        (Queued, Claim) => Some(Running),
        (Queued, Cancel) => Some(Cancelled),
        (Running, Succeed) => Some(Succeeded),
        (Running, Retry) | (Running, Rescue) | (Running, Release) => Some(Queued),
        (Running, Fail) => Some(Failed),
        (Running, Cancel) => Some(Cancelled),
        _ => None,
    }
}

/// What happens after an attempt ends without success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    RetryAt(i64),
    Fail,
}

/// Retry policy: exponential back-off with full jitter, capped.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub base_ms: i64,
    pub max_ms: i64,
}

impl RetryPolicy {
    /// Delay before attempt `attempt + 1`, given `jitter` uniformly drawn from [0, 1).
    /// Half the exponential delay is fixed and half is jittered, so retries spread out
    /// but never come back sooner than half the nominal delay.
    pub fn delay_ms(&self, attempt: u32, jitter: f64) -> i64 {
        let exp = self
            .base_ms
            .saturating_mul(1i64 << attempt.saturating_sub(1).min(30))
            .min(self.max_ms);
        let half = exp / 2;
        half + ((exp - half) as f64 * jitter.clamp(0.0, 1.0)) as i64
    }

    /// Decides the fate of a failed attempt number `attempt` (1-based) of `max_attempts`.
    pub fn after_failure(
        &self,
        attempt: u32,
        max_attempts: u32,
        retryable: bool,
        now_ms: i64,
        jitter: f64,
    ) -> AfterFailure {
        if retryable && attempt < max_attempts {
            AfterFailure::RetryAt(now_ms + self.delay_ms(attempt, jitter))
        } else {
            AfterFailure::Fail
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Event::*;
    use JobState::*;

    #[test]
    fn terminal_states_accept_no_event() {
        for s in [Succeeded, Failed, Cancelled] {
            for e in [Claim, Succeed, Retry, Fail, Cancel, Rescue, Release] {
                assert_eq!(transition(s, e), None, "{s:?} {e:?}");
            }
        }
    }

    #[test]
    fn queued_jobs_are_claimed_or_cancelled_only() {
        assert_eq!(transition(Queued, Claim), Some(Running));
        assert_eq!(transition(Queued, Cancel), Some(Cancelled));
        for e in [Succeed, Retry, Fail, Rescue, Release] {
            assert_eq!(transition(Queued, e), None);
        }
    }

    #[test]
    fn running_jobs_finish_or_go_back_to_the_queue() {
        assert_eq!(transition(Running, Succeed), Some(Succeeded));
        assert_eq!(transition(Running, Fail), Some(Failed));
        assert_eq!(transition(Running, Cancel), Some(Cancelled));
        for e in [Retry, Rescue, Release] {
            assert_eq!(transition(Running, e), Some(Queued));
        }
        assert_eq!(transition(Running, Claim), None);
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let p = RetryPolicy {
            base_ms: 1000,
            max_ms: 10_000,
        };
        assert_eq!(p.delay_ms(1, 0.0), 500);
        assert_eq!(p.delay_ms(1, 1.0), 1000);
        assert_eq!(p.delay_ms(2, 1.0), 2000);
        assert_eq!(p.delay_ms(3, 0.5), 3000);
        assert_eq!(p.delay_ms(30, 1.0), 10_000);
        assert!(p.delay_ms(4, 0.3) >= 4000 && p.delay_ms(4, 0.3) <= 8000);
    }

    #[test]
    fn last_attempt_fails_for_good() {
        let p = RetryPolicy {
            base_ms: 10,
            max_ms: 100,
        };
        assert_eq!(
            p.after_failure(1, 3, true, 0, 1.0),
            AfterFailure::RetryAt(10)
        );
        assert_eq!(p.after_failure(3, 3, true, 0, 1.0), AfterFailure::Fail);
        assert_eq!(p.after_failure(1, 3, false, 0, 1.0), AfterFailure::Fail);
    }

    #[test]
    fn wire_status_follows_the_seed_literals() {
        assert_eq!(Queued.wire_status(), Status::Accepted);
        assert_eq!(Running.wire_status(), Status::Running);
        assert_eq!(Succeeded.wire_status(), Status::Done);
        assert_eq!(Failed.wire_status(), Status::Error);
    }

    #[test]
    fn job_ids_round_trip_and_reject_variants() {
        let id = JobId::generate();
        assert_eq!(JobId::parse(&id.0), Some(id.clone()));
        assert_eq!(JobId::parse(&id.0.to_uppercase()), None);
        assert_eq!(JobId::parse("not-a-uuid"), None);
    }
}
