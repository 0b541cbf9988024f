//! The job state machine: states, legal transitions, retry back-off and the
//! mapping of states onto the wire's `status` literals.
//!
//! This is the one place that says what may happen to a job. It is pure (no
//! I/O, no clock, no randomness of its own: callers pass `now` and a jitter
//! sample) so every rule is unit-tested here; the store's SQL implements exactly
//! these transitions and the store conformance suite checks it does.

use crate::envelope::Status;

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
    /// A `hold` job whose worker died mid-attempt: it may or may not have taken effect, so
    /// it waits for an operator to retry or fail it (see [`CrashPolicy::Hold`]).
    InDoubt,
    /// An attempt asked the client for input (an MCP `InputRequiredResult`): the job waits,
    /// unclaimable, until a client answers every request (`tasks/update`), then is queued
    /// again with the answers; or until it is cancelled.
    AwaitingInput,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            JobState::InDoubt => "in_doubt",
            JobState::AwaitingInput => "input_required",
        }
    }

    pub fn parse(s: &str) -> Option<JobState> {
        Some(match s {
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "succeeded" => JobState::Succeeded,
            "failed" => JobState::Failed,
            "cancelled" => JobState::Cancelled,
            "in_doubt" => JobState::InDoubt,
            "input_required" => JobState::AwaitingInput,
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
            // Alive, waiting on a client of `/mcp`; `/v1/call` has no way to answer.
            JobState::Running | JobState::AwaitingInput => Status::Running,
            JobState::Succeeded => Status::Done,
            JobState::Failed | JobState::Cancelled | JobState::InDoubt => Status::Error,
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
    /// The worker was lost mid-attempt and the tool's crash policy is `hold`.
    Hold,
    /// An operator sent an in-doubt job back to the queue.
    OperatorRetry,
    /// An operator declared an in-doubt job failed.
    OperatorFail,
    /// The attempt ended asking the client for input; the attempt does not count.
    AskInput,
    /// A client answered the last outstanding request.
    Answer,
    /// Nobody answered within `jobs.input_wait_secs`.
    Expire,
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
        (Running, Hold) => Some(InDoubt),
        (InDoubt, OperatorRetry) => Some(Queued),
        (InDoubt, OperatorFail) => Some(Failed),
        (Running, AskInput) => Some(AwaitingInput),
        (AwaitingInput, Answer) => Some(Queued),
        (AwaitingInput, Cancel) => Some(Cancelled),
        (AwaitingInput, Expire) => Some(Failed),
        _ => None,
    }
}

/// What happens to a job whose worker was lost mid-attempt (killed, crashed, partitioned, or
/// shut down with the job still running after its grace period). Fixed per job at acceptance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CrashPolicy {
    /// Run it again (the lost attempt counts). For idempotent tools.
    #[default]
    Retry,
    /// End it `failed` with `worker_lost`. For tools that must never run twice.
    Fail,
    /// Park it `in_doubt` until an operator retries or fails it. For tools whose effect
    /// (a payment, an e-mail) must be checked by a person before it is repeated.
    Hold,
}

impl CrashPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            CrashPolicy::Retry => "retry",
            CrashPolicy::Fail => "fail",
            CrashPolicy::Hold => "hold",
        }
    }

    pub fn parse(s: &str) -> Option<CrashPolicy> {
        Some(match s {
            "retry" => CrashPolicy::Retry,
            "fail" => CrashPolicy::Fail,
            "hold" => CrashPolicy::Hold,
            _ => return None,
        })
    }

    /// How the store keeps it (a small integer: rows stay short).
    pub fn code(self) -> i64 {
        match self {
            CrashPolicy::Retry => 0,
            CrashPolicy::Fail => 1,
            CrashPolicy::Hold => 2,
        }
    }

    pub fn from_code(code: i64) -> Option<CrashPolicy> {
        Some(match code {
            0 => CrashPolicy::Retry,
            1 => CrashPolicy::Fail,
            2 => CrashPolicy::Hold,
            _ => return None,
        })
    }

    /// The fate of a job whose worker was lost during attempt `attempt` of `max_attempts`.
    pub fn after_worker_lost(
        self,
        retry: &RetryPolicy,
        attempt: u32,
        max_attempts: u32,
        now_ms: i64,
        jitter: f64,
    ) -> AfterWorkerLost {
        match self {
            CrashPolicy::Retry => {
                match retry.after_failure(attempt, max_attempts, true, now_ms, jitter) {
                    AfterFailure::RetryAt(at) => AfterWorkerLost::RetryAt(at),
                    AfterFailure::Fail => AfterWorkerLost::Fail,
                }
            }
            CrashPolicy::Fail => AfterWorkerLost::Fail,
            CrashPolicy::Hold => AfterWorkerLost::Hold,
        }
    }
}

/// What happens to a job whose worker was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterWorkerLost {
    RetryAt(i64),
    Fail,
    Hold,
}

/// What happens after an attempt ends without success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    RetryAt(i64),
    Fail,
}

/// Retry policy: exponential back-off with full jitter, capped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

    const ALL_EVENTS: [Event; 13] = [
        Claim,
        Succeed,
        Retry,
        Fail,
        Cancel,
        Rescue,
        Release,
        Hold,
        OperatorRetry,
        OperatorFail,
        AskInput,
        Answer,
        Expire,
    ];

    #[test]
    fn terminal_states_accept_no_event() {
        for s in [Succeeded, Failed, Cancelled] {
            for e in ALL_EVENTS {
                assert_eq!(transition(s, e), None, "{s:?} {e:?}");
            }
        }
    }

    #[test]
    fn queued_jobs_are_claimed_or_cancelled_only() {
        assert_eq!(transition(Queued, Claim), Some(Running));
        assert_eq!(transition(Queued, Cancel), Some(Cancelled));
        for e in [
            Succeed,
            Retry,
            Fail,
            Rescue,
            Release,
            Hold,
            OperatorRetry,
            OperatorFail,
        ] {
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
        assert_eq!(transition(Running, Hold), Some(InDoubt));
        for e in [Claim, OperatorRetry, OperatorFail] {
            assert_eq!(transition(Running, e), None);
        }
    }

    #[test]
    fn a_job_waiting_for_input_is_answered_back_into_the_queue_cancelled_or_expired() {
        assert_eq!(transition(Running, AskInput), Some(AwaitingInput));
        assert_eq!(transition(AwaitingInput, Answer), Some(Queued));
        assert_eq!(transition(AwaitingInput, Cancel), Some(Cancelled));
        assert_eq!(transition(AwaitingInput, Expire), Some(Failed));
        for e in [
            Claim,
            Succeed,
            Retry,
            Fail,
            Rescue,
            Release,
            Hold,
            OperatorRetry,
            OperatorFail,
            AskInput,
        ] {
            assert_eq!(transition(AwaitingInput, e), None, "{e:?}");
        }
        for s in [Queued, Running, InDoubt, Succeeded, Failed, Cancelled] {
            assert_eq!(transition(s, Expire), None, "{s:?}");
        }
        for s in [Queued, InDoubt] {
            assert_eq!(transition(s, AskInput), None);
            assert_eq!(transition(s, Answer), None);
        }
        assert!(!AwaitingInput.is_terminal());
        assert_eq!(JobState::parse("input_required"), Some(AwaitingInput));
    }

    #[test]
    fn in_doubt_jobs_move_only_by_an_operator() {
        assert_eq!(transition(InDoubt, OperatorRetry), Some(Queued));
        assert_eq!(transition(InDoubt, OperatorFail), Some(Failed));
        for e in [Claim, Succeed, Retry, Fail, Cancel, Rescue, Release, Hold] {
            assert_eq!(transition(InDoubt, e), None, "{e:?}");
        }
        assert!(!InDoubt.is_terminal());
        assert_eq!(InDoubt.wire_status(), Status::Error);
    }

    #[test]
    fn a_lost_worker_is_retried_failed_or_held_as_the_tool_says() {
        let p = RetryPolicy {
            base_ms: 100,
            max_ms: 100,
        };
        assert_eq!(
            CrashPolicy::Retry.after_worker_lost(&p, 1, 3, 0, 1.0),
            AfterWorkerLost::RetryAt(100)
        );
        assert_eq!(
            CrashPolicy::Retry.after_worker_lost(&p, 3, 3, 0, 1.0),
            AfterWorkerLost::Fail
        );
        assert_eq!(
            CrashPolicy::Fail.after_worker_lost(&p, 1, 3, 0, 1.0),
            AfterWorkerLost::Fail
        );
        assert_eq!(
            CrashPolicy::Hold.after_worker_lost(&p, 1, 3, 0, 1.0),
            AfterWorkerLost::Hold
        );
        for c in [CrashPolicy::Retry, CrashPolicy::Fail, CrashPolicy::Hold] {
            assert_eq!(CrashPolicy::parse(c.as_str()), Some(c));
            assert_eq!(CrashPolicy::from_code(c.code()), Some(c));
        }
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
