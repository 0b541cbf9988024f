//! The job state machine: states, legal transitions, retry back-off and the
//! mapping of states onto the wire's `status` literals.
//!
//! This is the one place that says what may happen to a job. It is pure (no
//! I/O, no clock, no randomness of its own: callers pass `now` and a jitter
//! sample) so every rule is unit-tested here; the store's SQL implements exactly
//! these transitions and the store conformance suite checks it does.

use crate::envelope::Status;

mod flow;
pub use flow::{keyed_picks, rate_tokens};

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
    /// Run it again, and let the next attempt pick up the upstream task the lost one
    /// started instead of calling again (upstream tools of a server with the tasks
    /// extension, docs/UPSTREAMS.md; otherwise the same as `retry`). Stored as `retry`:
    /// the resuming is the runner's, the store only reschedules.
    Resume,
}

impl CrashPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            CrashPolicy::Retry => "retry",
            CrashPolicy::Fail => "fail",
            CrashPolicy::Hold => "hold",
            CrashPolicy::Resume => "resume",
        }
    }

    pub fn parse(s: &str) -> Option<CrashPolicy> {
        Some(match s {
            "retry" => CrashPolicy::Retry,
            "fail" => CrashPolicy::Fail,
            "hold" => CrashPolicy::Hold,
            "resume" => CrashPolicy::Resume,
            _ => return None,
        })
    }

    /// How the store keeps it (a small integer: rows stay short).
    pub fn code(self) -> i64 {
        match self {
            CrashPolicy::Retry | CrashPolicy::Resume => 0,
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
            CrashPolicy::Retry | CrashPolicy::Resume => {
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

/// The highest priority; 0 is the lowest (and the default).
pub const MAX_PRIORITY: u8 = 9;
/// A not-before time this far in the past is taken as "now" (clock skew between the
/// caller and the daemon, as the signed timestamp's window); further back it is refused.
pub const SCHEDULE_PAST_TOLERANCE_MS: i64 = 300_000;

/// What a call asked about when its job runs (`io.mcpq/job` in `/mcp` `_meta`, the `job`
/// field of a `/v1/call` envelope): each `None` takes the default. `callback` names where
/// the job's outcome is POSTed (docs/WEBHOOKS.md); the client's allowlist is checked later.
/// `idempotency_key` names the job for its client: a call with a key that one of the
/// client's jobs already has gets that job (a retried held call reattaches), for any job tool.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobOptions {
    pub priority: Option<i64>,
    pub delay_ms: Option<i64>,
    pub not_before_ms: Option<i64>,
    pub callback: Option<String>,
    pub idempotency_key: Option<String>,
}

/// The longest idempotency key, in bytes (as `start_long_task`'s argument).
pub const MAX_IDEMPOTENCY_KEY: usize = 128;

impl JobOptions {
    /// Reads `{"priority": int, "delay_ms": int, "not_before_ms": int, "callback": string,
    /// "idempotency_key": string}` (every key optional, no other key). The message names
    /// the offending key.
    pub fn from_value(v: &serde_json::Value) -> Result<JobOptions, String> {
        const KEYS: &str = "priority, delay_ms, not_before_ms, callback, idempotency_key";
        let serde_json::Value::Object(o) = v else {
            return Err(format!("must be an object {{{KEYS}}}"));
        };
        let mut out = JobOptions::default();
        for (k, v) in o {
            let slot = match k.as_str() {
                "priority" => &mut out.priority,
                "delay_ms" => &mut out.delay_ms,
                "not_before_ms" => &mut out.not_before_ms,
                "callback" => {
                    let url = v.as_str().ok_or("\"callback\" must be a string (a URL)")?;
                    out.callback = Some(url.to_string());
                    continue;
                }
                "idempotency_key" => {
                    let key = v
                        .as_str()
                        .filter(|k| {
                            !k.is_empty()
                                && k.len() <= MAX_IDEMPOTENCY_KEY
                                && !k.chars().any(char::is_control)
                        })
                        .ok_or_else(|| {
                            format!(
                                "\"idempotency_key\" must be a string of 1 to \
                                 {MAX_IDEMPOTENCY_KEY} bytes without control characters"
                            )
                        })?;
                    out.idempotency_key = Some(key.to_string());
                    continue;
                }
                _ => return Err(format!("unexpected key {k:?} ({KEYS})")),
            };
            *slot = Some(
                v.as_i64()
                    .ok_or_else(|| format!("{k:?} must be an integer"))?,
            );
        }
        Ok(out)
    }
}

/// The bounds [`plan_flow`] applies (from `[jobs]` and the client's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowBounds {
    pub aging_ms: i64,
    pub client_max_priority: u8,
    pub max_delay_ms: i64,
}

/// A job's place in the claim order: its priority, its boost (`priority × aging`) and the
/// instant it may run from. The claim takes jobs by `run_at - boost`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub priority: u8,
    pub boost_ms: i64,
    pub run_at: i64,
}

/// Decides a new job's [`Flow`] from what the call asked, the tool's default priority and
/// the bounds. A refused request says why (the caller's `invalid_args`).
///
/// Aging rule: a job of priority `p` enqueued at `t` is ordered at `t - p × aging`, so a
/// job runs before a newer one of priority higher by `Δ` only if it has waited more than
/// `Δ × aging` longer; within one priority, first come first served.
pub fn plan_flow(
    opts: &JobOptions,
    tool_priority: u8,
    bounds: &FlowBounds,
    now: i64,
) -> Result<Flow, String> {
    let priority = match opts.priority {
        None => tool_priority,
        Some(p) if !(0..=i64::from(MAX_PRIORITY)).contains(&p) => {
            return Err(format!("priority {p} is outside 0..={MAX_PRIORITY}"))
        }
        Some(p) if p > i64::from(bounds.client_max_priority) => {
            return Err(format!(
                "priority {p} is above this client's maximum of {}",
                bounds.client_max_priority
            ))
        }
        Some(p) => p as u8,
    };
    let run_at = match (opts.delay_ms, opts.not_before_ms) {
        (Some(_), Some(_)) => return Err("give delay_ms or not_before_ms, not both".into()),
        (None, None) => now,
        (Some(d), None) if d < 0 => return Err(format!("delay_ms {d} is negative")),
        (Some(d), None) => now.saturating_add(d),
        (None, Some(at)) if at < now - SCHEDULE_PAST_TOLERANCE_MS => {
            return Err(format!(
                "not_before_ms {at} is more than {SCHEDULE_PAST_TOLERANCE_MS} ms in the past"
            ))
        }
        (None, Some(at)) => at.max(now),
    };
    if run_at - now > bounds.max_delay_ms {
        return Err(format!(
            "the job would wait {} ms, more than jobs.max_delay_secs allows ({} ms)",
            run_at - now,
            bounds.max_delay_ms
        ));
    }
    Ok(Flow {
        priority,
        boost_ms: i64::from(priority) * bounds.aging_ms,
        run_at,
    })
}

/// Where a tool limited per key takes a job's key from (`[tools.NAME] concurrency_key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConcurrencyKey {
    /// The calling client's id.
    Client,
    /// A JSON pointer into the arguments (`/customer_id`).
    Pointer(String),
}

impl ConcurrencyKey {
    /// `"client"` or a JSON pointer (`/…`).
    pub fn parse(s: &str) -> Option<ConcurrencyKey> {
        match s {
            "client" => Some(ConcurrencyKey::Client),
            p if p.starts_with('/') => Some(ConcurrencyKey::Pointer(p.to_string())),
            _ => None,
        }
    }

    /// The job's key: the client id, or the argument at the pointer (a string as is,
    /// anything else as its JSON text). A missing argument is refused: jobs without a key
    /// would escape the limit.
    pub fn key_of(&self, client: &str, args: &serde_json::Value) -> Result<String, String> {
        match self {
            ConcurrencyKey::Client => Ok(client.to_string()),
            ConcurrencyKey::Pointer(p) => match args.pointer(p) {
                Some(serde_json::Value::String(s)) => Ok(s.clone()),
                Some(v) if !v.is_null() => Ok(v.to_string()),
                _ => Err(format!(
                    "this tool limits running jobs per {p}: the argument is required"
                )),
            },
        }
    }
}

/// What a queued job reads as to a caller: `scheduled` until its not-before time (or a
/// retry's back-off) has come, then `queued`.
pub fn shown_state(state: JobState, run_at: i64, now: i64) -> &'static str {
    match state {
        JobState::Queued if run_at > now => "scheduled",
        s => s.as_str(),
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

    const BOUNDS: FlowBounds = FlowBounds {
        aging_ms: 60_000,
        client_max_priority: 5,
        max_delay_ms: 3_600_000,
    };

    fn opts(v: serde_json::Value) -> JobOptions {
        JobOptions::from_value(&v).unwrap()
    }

    #[test]
    fn priority_defaults_to_the_tool_and_is_bounded_by_the_client() {
        let f = plan_flow(&JobOptions::default(), 7, &BOUNDS, 1000).unwrap();
        assert_eq!(
            f,
            Flow {
                priority: 7,
                boost_ms: 420_000,
                run_at: 1000
            }
        );
        let f = plan_flow(&opts(serde_json::json!({"priority": 5})), 0, &BOUNDS, 0).unwrap();
        assert_eq!((f.priority, f.boost_ms), (5, 300_000));
        let e = plan_flow(&opts(serde_json::json!({"priority": 6})), 0, &BOUNDS, 0).unwrap_err();
        assert!(e.contains("above this client's maximum of 5"), "{e}");
        let e = plan_flow(&opts(serde_json::json!({"priority": -1})), 0, &BOUNDS, 0).unwrap_err();
        assert!(e.contains("outside 0..=9"), "{e}");
    }

    #[test]
    fn aging_lets_a_long_waiting_low_job_go_first() {
        let low = plan_flow(&JobOptions::default(), 0, &BOUNDS, 0).unwrap();
        let key = |f: Flow| f.run_at - f.boost_ms;
        let high =
            |at| plan_flow(&opts(serde_json::json!({"priority": 2})), 0, &BOUNDS, at).unwrap();
        // Within 2 levels × 60 s the high job goes first; after, the low one does.
        assert!(key(high(119_999)) < key(low));
        assert!(key(high(120_001)) > key(low));
    }

    #[test]
    fn schedules_are_bounded() {
        let f = plan_flow(
            &opts(serde_json::json!({"delay_ms": 5000})),
            0,
            &BOUNDS,
            100,
        )
        .unwrap();
        assert_eq!(f.run_at, 5100);
        let f = plan_flow(
            &opts(serde_json::json!({"not_before_ms": 90})),
            0,
            &BOUNDS,
            100,
        )
        .unwrap();
        assert_eq!(f.run_at, 100, "a slightly past time is now");
        for (v, want) in [
            (
                serde_json::json!({"not_before_ms": -300_000}),
                "in the past",
            ),
            (serde_json::json!({"delay_ms": -1}), "negative"),
            (serde_json::json!({"delay_ms": 3_600_001}), "max_delay_secs"),
            (
                serde_json::json!({"delay_ms": 1, "not_before_ms": 1}),
                "not both",
            ),
        ] {
            let e = plan_flow(&opts(v), 0, &BOUNDS, 100).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
        for bad in [
            serde_json::json!({"prio": 1}),
            serde_json::json!({"priority": "1"}),
            serde_json::json!(3),
        ] {
            assert!(JobOptions::from_value(&bad).is_err());
        }
        assert_eq!(shown_state(JobState::Queued, 5100, 100), "scheduled");
        assert_eq!(shown_state(JobState::Queued, 100, 100), "queued");
    }

    #[test]
    fn concurrency_keys_come_from_the_client_or_an_argument() {
        let args = serde_json::json!({"customer_id": "c1", "n": 7, "o": {"x": null}});
        let k = |s: &str| ConcurrencyKey::parse(s).unwrap();
        assert_eq!(k("client").key_of("alice", &args).unwrap(), "alice");
        assert_eq!(k("/customer_id").key_of("a", &args).unwrap(), "c1");
        assert_eq!(k("/n").key_of("a", &args).unwrap(), "7");
        assert!(k("/o/x").key_of("a", &args).unwrap_err().contains("/o/x"));
        assert!(k("/missing").key_of("a", &args).is_err());
        assert_eq!(ConcurrencyKey::parse("customer_id"), None);
    }

    #[test]
    fn job_ids_round_trip_and_reject_variants() {
        let id = JobId::generate();
        assert_eq!(JobId::parse(&id.0), Some(id.clone()));
        assert_eq!(JobId::parse(&id.0.to_uppercase()), None);
        assert_eq!(JobId::parse("not-a-uuid"), None);
    }
}
