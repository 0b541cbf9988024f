//! One attempt of one job: its task (started by the claim loop), running the tool
//! ([`execute`]) and deciding what the attempt's result means for the job ([`decide`]):
//! success, a retry, a failure, a wait for its client's input, or a cancellation.
//!
//! It must not write to the store: an outcome goes to the completer (or, for a job this
//! worker gives back, to the release list) and is committed there, fenced.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::inflight::{lock, Inflight, Running, Stop, StopReason};
use crate::clock::Clock;
use crate::jobs::{AfterFailure, CrashPolicy, JobId, RetryPolicy};
use crate::json::{self, Json};
use crate::otel::spans::{self, JobTrace};
use crate::otel::TraceHeaders;
use crate::store::{ClaimedJob, Completion, Outcome, Store};
use crate::tools::{JobCtx, JobError, JobMeta, Registry, Tool};

/// What the worker needs to decide a job tool's outcomes, looked up once per registry.
#[derive(Clone, Copy)]
pub(super) struct ToolRules {
    pub(super) retry: RetryPolicy,
    pub(super) on_crash: CrashPolicy,
}

pub(super) fn tool_rules(
    registry: &Registry,
    default_retry: RetryPolicy,
) -> HashMap<String, ToolRules> {
    registry
        .iter()
        .filter_map(|t| match t {
            Tool::Job(j) => {
                let p = j.policy();
                Some((
                    j.name().to_string(),
                    ToolRules {
                        retry: p.retry.unwrap_or(default_retry),
                        on_crash: p.on_crash,
                    },
                ))
            }
            Tool::Sync(_) => None,
        })
        .collect()
}

/// A job this worker gives back to the queue: its id and the fence it held.
pub(super) type Release = (JobId, i64);

/// What every job task of one worker shares, built once when the worker starts.
pub(super) struct Launcher {
    pub(super) slots: Arc<Semaphore>,
    pub(super) jobs: TaskTracker,
    pub(super) inflight: Inflight,
    pub(super) done_tx: mpsc::UnboundedSender<Completion>,
    pub(super) release_tx: mpsc::UnboundedSender<Release>,
    pub(super) clock: Arc<dyn Clock>,
    /// For a job whose tool this registry lacks.
    pub(super) default_retry: RetryPolicy,
    /// This worker's id, on its spans.
    pub(super) worker: Arc<str>,
    /// Where an attempt keeps state for the next one (`JobCtx::keep_state`).
    pub(super) store: Arc<dyn Store>,
}

impl Launcher {
    /// Writes an attempt's state for the next one, fenced to this attempt.
    fn keeper(&self, job: &ClaimedJob) -> crate::tools::KeepState {
        let (store, id, fence) = (self.store.clone(), job.id.clone(), job.fence);
        Arc::new(move |state: Option<String>| {
            let (store, id) = (store.clone(), id.clone());
            Box::pin(async move {
                store
                    .save_attempt_state(&id, fence, state.as_deref())
                    .await
                    .map_err(|e| e.to_string())
            })
        })
    }

    /// Starts one claimed job as a task of its own, with the registry snapshot it was
    /// claimed under; it counts as running (and has its lease kept) from now on. `trace`:
    /// the context of the call that created it, when traced (docs/TRACING.md).
    pub(super) fn start(
        &self,
        job: ClaimedJob,
        registry: &Arc<Registry>,
        rules: &HashMap<String, ToolRules>,
        claimed_at: i64,
        trace: Option<TraceHeaders>,
    ) {
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            // Cannot happen (we claimed at most the free slots), but never run unbounded.
            let _ = self.release_tx.send((job.id.clone(), job.fence));
            return;
        };
        let ctx = JobCtx::for_job(
            CancellationToken::new(),
            JobMeta {
                job_id: job.id.clone(),
                attempt: job.attempt,
                client_id: job.client_id.clone(),
                input: (job.input_responses.is_some() || job.request_state.is_some()).then(|| {
                    crate::tools::runner::InputRound {
                        client_capabilities: None,
                        input_responses: job.input_responses.clone(),
                        request_state: job.request_state.clone(),
                    }
                }),
            },
        )
        .with_keep(self.keeper(&job));
        let stop = Arc::new(Stop::default());
        lock(&self.inflight).insert(
            job.id.clone(),
            Running {
                fence: job.fence,
                ctx: ctx.clone(),
                stop: stop.clone(),
                renewed_at: claimed_at,
            },
        );
        let rules = rules.get(&job.tool).copied().unwrap_or(ToolRules {
            retry: self.default_retry,
            on_crash: CrashPolicy::Retry,
        });
        let span = tracing::info_span!(
            "job",
            job_id = %job.id,
            tool = %job.tool,
            client_id = %job.client_id,
            attempt = job.attempt
        );
        if let Some(t) = &trace {
            job_trace(t, &job).wait(job.attempt, job.due_at, claimed_at, &self.worker);
        }
        let tool_label = job.tool.clone();
        metrics::histogram!(crate::telemetry::names::START_DELAY, "tool" => tool_label.clone())
            .record((claimed_at - job.due_at).max(0) as f64 / 1000.0);
        let attempt = Attempt {
            registry: registry.clone(),
            ctx,
            job,
            permit,
            stop,
            rules,
            tool_label,
            done_tx: self.done_tx.clone(),
            release_tx: self.release_tx.clone(),
            inflight: self.inflight.clone(),
            clock: self.clock.clone(),
            trace: trace.map(|t| (t, self.worker.clone())),
        };
        self.jobs
            .spawn(tracing::Instrument::instrument(attempt.run(), span));
    }
}

/// One job's task: everything it owns while its attempt runs.
struct Attempt {
    registry: Arc<Registry>,
    ctx: JobCtx,
    job: ClaimedJob,
    permit: OwnedSemaphorePermit,
    stop: Arc<Stop>,
    rules: ToolRules,
    tool_label: String,
    done_tx: mpsc::UnboundedSender<Completion>,
    release_tx: mpsc::UnboundedSender<Release>,
    inflight: Inflight,
    clock: Arc<dyn Clock>,
    /// The job's trace context and this worker's id, when traced.
    trace: Option<(TraceHeaders, Arc<str>)>,
}

fn job_trace<'a>(t: &'a TraceHeaders, job: &'a ClaimedJob) -> JobTrace<'a> {
    JobTrace {
        context: t,
        job_id: &job.id.0,
        tool: &job.tool,
    }
}

/// The attempt's span, once its outcome is known (`None`: the attempt span is not this
/// worker's to write, as for a lost lease, which the rescuer writes).
fn end_attempt(
    trace: &Option<(TraceHeaders, Arc<str>)>,
    job: &ClaimedJob,
    began: Option<std::time::SystemTime>,
    outcome: Option<&Outcome>,
) {
    let (Some((t, worker)), Some(outcome), Some(began)) = (trace, outcome, began) else {
        return;
    };
    let label = outcome_label(outcome);
    let error = match outcome {
        Outcome::Succeeded { .. } | Outcome::AwaitInput { .. } => None,
        Outcome::Cancelled { .. } => Some(("cancelled".to_string(), label.to_string())),
        _ => Some(("tool_error".to_string(), label.to_string())),
    };
    job_trace(t, job).attempt(job.attempt, began, label, worker, error);
}

impl Attempt {
    async fn run(self) {
        let Attempt {
            registry,
            ctx,
            job,
            permit,
            stop,
            rules,
            tool_label,
            done_tx,
            release_tx,
            inflight,
            clock,
            trace,
        } = self;
        let id = job.id.clone();
        let fence = job.fence;
        let hooked = job.hooked;
        let running = metrics::gauge!(crate::telemetry::names::RUNNING);
        running.increment(1.0);
        let started = std::time::Instant::now();
        let result = match &trace {
            None => execute(&registry, ctx, &job).await,
            Some((t, _)) => {
                // The tool's context names this attempt's span (see `attempt_span_id`).
                let own = spans::attempt_headers(t, &id.0, job.attempt);
                crate::otel::scope(own, execute(&registry, ctx, &job)).await
            }
        };
        let began = trace
            .is_some()
            .then(|| std::time::SystemTime::now() - started.elapsed());
        metrics::histogram!(crate::telemetry::names::RUN_SECONDS, "tool" => tool_label.clone())
            .record(started.elapsed().as_secs_f64());
        running.decrement(1.0);
        drop(permit);
        // The job stays in `inflight` (and so keeps its lease alive through heartbeats)
        // until its completion is committed; the completer removes it.
        match stop.get() {
            Some(StopReason::LeaseLost) => {
                count_attempt(tool_label, "lease_lost");
                lock(&inflight).remove(&id);
                tracing::warn!("lease lost; result discarded");
            }
            Some(StopReason::Shutdown) => match interrupted(rules.on_crash) {
                // Stopped mid-attempt by this worker's shutdown: a retry tool goes
                // back to the queue without losing an attempt; the others get what
                // their crash policy promises, as if the worker had died.
                None => {
                    end_attempt(&trace, &job, began, Some(&released()));
                    lock(&inflight).remove(&id);
                    let _ = release_tx.send((id, fence));
                }
                Some(outcome) => {
                    end_attempt(&trace, &job, began, Some(&outcome));
                    let _ = done_tx.send(Completion {
                        id,
                        fence,
                        outcome,
                        hooked,
                    });
                }
            },
            reason => {
                let outcome = decide(result, reason, &job, rules.retry, clock.now_ms());
                end_attempt(&trace, &job, began, Some(&outcome));
                log_outcome(&outcome, clock.now_ms());
                count_attempt(tool_label, outcome_label(&outcome));
                let _ = done_tx.send(Completion {
                    id,
                    fence,
                    outcome,
                    hooked,
                });
            }
        }
    }
}

/// How a released attempt shows in its span: given back by this worker's shutdown.
fn released() -> Outcome {
    Outcome::Cancelled {
        error: "released: the worker stopped; the job went back to the queue".into(),
    }
}

pub(super) async fn execute(
    registry: &Registry,
    ctx: JobCtx,
    job: &ClaimedJob,
) -> Result<json::Object, JobError> {
    let Some(tool) = registry.job_tool(&job.tool) else {
        return Err(JobError::Fatal(format!(
            "no job tool named {:?} in this worker",
            job.tool
        )));
    };
    let args = match json::parse(job.args.as_bytes()) {
        Ok(Json::Object(o)) => o,
        _ => {
            return Err(JobError::Fatal(
                "stored arguments are not a JSON object".into(),
            ))
        }
    };
    // A panicking tool must not take the worker down. Catching the unwind in place, rather
    // than running the tool as a task of its own, saves a task (and its wake-ups) per job.
    // Unwind safety: a panicked tool's future is dropped, and it shares nothing with the
    // worker but its `JobCtx`, whose state is atomics and channels.
    let panicked = || Err(JobError::Retryable("job panicked".into()));
    let Ok(attempt) = std::panic::catch_unwind(AssertUnwindSafe(|| tool.run(ctx, args))) else {
        return panicked();
    };
    match AssertUnwindSafe(attempt).catch_unwind().await {
        Ok(r) => r,
        Err(_) => panicked(),
    }
}

/// What an attempt's result means for its job. `stop`: why the job's token was cancelled
/// while it ran, if it was (a lost lease or a shutdown never get here).
pub(super) fn decide(
    result: Result<json::Object, JobError>,
    stop: Option<StopReason>,
    job: &ClaimedJob,
    retry: RetryPolicy,
    now: i64,
) -> Outcome {
    if stop == Some(StopReason::CancelRequested) {
        return Outcome::Cancelled {
            error: "cancelled: cancel_job was called while the job ran".into(),
        };
    }
    // The tool asked its client for input: the job waits for the answers. A malformed
    // question is the tool breaking its contract, as output that is not JSON would be.
    let result = match result {
        Ok(o) if crate::tools::asks_for_input(&o) => {
            match crate::asks::parse(&Json::Object(o).to_serde()) {
                Ok(asked) => {
                    return Outcome::AwaitInput {
                        requests: serde_json::Value::Object(asked.requests).to_string(),
                        state: asked.state,
                    }
                }
                Err(m) => Err(JobError::Fatal(format!(
                    "invalid_output: invalid InputRequiredResult: {m}"
                ))),
            }
        }
        other => other,
    };
    match result {
        Ok(o) => Outcome::Succeeded {
            result: Json::Object(o).to_canonical(),
        },
        Err(e) => {
            let (retryable, not_before) = match &e {
                JobError::Retryable(_) => (true, now),
                JobError::RetryAfter(_, ms) => (true, now.saturating_add(*ms)),
                JobError::Fatal(_) => (false, now),
            };
            match retry.after_failure(
                job.attempt,
                job.max_attempts,
                retryable,
                now,
                rand::random(),
            ) {
                AfterFailure::RetryAt(run_at) => Outcome::Retry {
                    run_at: run_at.max(not_before),
                    error: e.to_string(),
                },
                AfterFailure::Fail => Outcome::Failed {
                    error: e.to_string(),
                },
            }
        }
    }
}

/// The `outcome` label of the attempt and rescue counters.
pub(super) fn outcome_label(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Succeeded { .. } => "succeeded",
        Outcome::Retry { .. } => "retry",
        Outcome::Failed { .. } => "failed",
        Outcome::Cancelled { .. } => "cancelled",
        Outcome::InDoubt { .. } => "in_doubt",
        Outcome::AwaitInput { .. } => "input_required",
    }
}

fn count_attempt(tool: String, outcome: &'static str) {
    metrics::counter!(crate::telemetry::names::ATTEMPTS, "tool" => tool, "outcome" => outcome)
        .increment(1);
}

/// One line for an attempt that did not succeed (successes stay quiet: they are the hot
/// path). Never the error text: a tool may quote its arguments in it; the text is in the
/// job's history for whoever may poll it.
fn log_outcome(outcome: &Outcome, now_ms: i64) {
    match outcome {
        Outcome::Succeeded { .. } => {}
        Outcome::Retry { run_at, .. } => {
            tracing::info!(retry_in_ms = run_at - now_ms, "attempt failed; will retry")
        }
        Outcome::Failed { .. } => tracing::warn!("job failed"),
        Outcome::Cancelled { .. } => tracing::info!("job cancelled while running"),
        Outcome::InDoubt { .. } => tracing::warn!("job held in doubt"),
        Outcome::AwaitInput { .. } => tracing::info!("job waits for input from its client"),
    }
}

/// The outcome of an attempt stopped by this worker's shutdown, for tools whose crash policy
/// is not `retry` (`None`: release the job).
fn interrupted(on_crash: CrashPolicy) -> Option<Outcome> {
    let error =
        "worker_lost: the worker shut down during the attempt (grace period over)".to_string();
    match on_crash {
        CrashPolicy::Retry | CrashPolicy::Resume => None,
        CrashPolicy::Fail => Some(Outcome::Failed { error }),
        CrashPolicy::Hold => Some(Outcome::InDoubt { error }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::CallError;
    use crate::json::Object;
    use crate::store::BoxFuture;
    use crate::tools::{JobRequest, JobTool, Tool};

    /// Panics while its attempt runs, or (`eager`) while building it.
    struct Panics {
        eager: bool,
    }

    impl JobTool for Panics {
        fn name(&self) -> &str {
            if self.eager {
                "panics_eagerly"
            } else {
                "panics"
            }
        }
        fn description(&self) -> &'static str {
            "panics"
        }
        fn input_schema(&self) -> serde_json::Value {
            serde_json::json!({})
        }
        fn validate(&self, _args: &Object) -> Result<JobRequest, CallError> {
            Ok(JobRequest {
                args: Object::new(),
                idempotency_key: None,
            })
        }
        fn run(&self, _ctx: JobCtx, _args: Object) -> BoxFuture<'static, Result<Object, JobError>> {
            assert!(!self.eager, "tool panicked building its attempt");
            Box::pin(async {
                tokio::task::yield_now().await;
                panic!("tool panicked mid-attempt")
            })
        }
    }

    fn job(tool: &str) -> ClaimedJob {
        ClaimedJob {
            id: JobId("0193b3c4-5d6e-7f80-9a1b-000000000001".into()),
            client_id: crate::envelope::ClientId("c".into()),
            tool: tool.into(),
            args: "{}".into(),
            attempt: 1,
            max_attempts: 3,
            fence: 1,
            due_at: 0,
            input_responses: None,
            request_state: None,
            hooked: false,
        }
    }

    #[tokio::test]
    async fn a_panicking_job_is_a_retryable_error_and_the_worker_goes_on() {
        let mut registry = Registry::default();
        registry.add(Tool::Job(Arc::new(Panics { eager: false })));
        registry.add(Tool::Job(Arc::new(Panics { eager: true })));
        for tool in ["panics", "panics_eagerly"] {
            let ctx = JobCtx::new(CancellationToken::new());
            match execute(&registry, ctx, &job(tool)).await {
                Err(JobError::Retryable(e)) => assert_eq!(e, "job panicked", "{tool}"),
                other => panic!("{tool}: {other:?}"),
            }
        }
        let ctx = JobCtx::new(CancellationToken::new());
        assert!(matches!(
            execute(&registry, ctx, &job("missing")).await,
            Err(JobError::Fatal(_))
        ));
    }

    const RETRY: RetryPolicy = RetryPolicy {
        base_ms: 1000,
        max_ms: 60_000,
    };
    const NOW: i64 = 1_000_000;

    fn object(v: serde_json::Value) -> Object {
        match json::parse(v.to_string().as_bytes()) {
            Ok(Json::Object(o)) => o,
            other => panic!("{other:?}"),
        }
    }

    fn decide_at(
        result: Result<Object, JobError>,
        stop: Option<StopReason>,
        attempt: u32,
    ) -> Outcome {
        let mut j = job("t");
        j.attempt = attempt;
        decide(result, stop, &j, RETRY, NOW)
    }

    #[test]
    fn a_result_succeeds_with_its_canonical_json() {
        let out = decide_at(Ok(object(serde_json::json!({"b": 1, "a": 2}))), None, 1);
        match out {
            Outcome::Succeeded { result } => assert_eq!(result, r#"{"a":2,"b":1}"#),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_requested_cancel_wins_over_any_result() {
        for result in [Ok(Object::new()), Err(JobError::Fatal("x".into()))] {
            let out = decide_at(result, Some(StopReason::CancelRequested), 1);
            assert!(matches!(out, Outcome::Cancelled { .. }), "{out:?}");
        }
    }

    #[test]
    fn retryable_errors_retry_until_the_last_attempt() {
        match decide_at(Err(JobError::Retryable("busy".into())), None, 1) {
            Outcome::Retry { run_at, error } => {
                assert_eq!(error, "busy");
                // Half the base delay at least, the base at most (jitter).
                assert!((NOW + 500..=NOW + 1000).contains(&run_at), "{run_at}");
            }
            other => panic!("{other:?}"),
        }
        let out = decide_at(Err(JobError::Retryable("busy".into())), None, 3);
        assert!(
            matches!(out, Outcome::Failed { ref error } if error == "busy"),
            "{out:?}"
        );
    }

    #[test]
    fn retry_after_is_honoured_as_the_earliest_retry() {
        match decide_at(
            Err(JobError::RetryAfter("slow down".into(), 30_000)),
            None,
            1,
        ) {
            Outcome::Retry { run_at, .. } => assert_eq!(run_at, NOW + 30_000),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn fatal_errors_fail_at_once() {
        let out = decide_at(Err(JobError::Fatal("bad".into())), None, 1);
        assert!(
            matches!(out, Outcome::Failed { ref error } if error == "bad"),
            "{out:?}"
        );
    }

    #[test]
    fn asking_for_input_waits_and_a_malformed_question_fails() {
        let asked = object(serde_json::json!({
            "resultType": "input_required",
            "inputRequests": {"q": {"method": "roots/list"}},
            "requestState": "s1",
        }));
        match decide_at(Ok(asked), None, 1) {
            Outcome::AwaitInput { requests, state } => {
                assert_eq!(requests, r#"{"q":{"method":"roots/list"}}"#);
                assert_eq!(state.as_deref(), Some("s1"));
            }
            other => panic!("{other:?}"),
        }
        let malformed = object(serde_json::json!({"resultType": "input_required"}));
        match decide_at(Ok(malformed), None, 1) {
            Outcome::Failed { error } => {
                assert!(
                    error.starts_with("invalid_output: invalid InputRequiredResult: "),
                    "{error}"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_interrupted_attempt_follows_the_crash_policy() {
        assert!(interrupted(CrashPolicy::Retry).is_none());
        assert!(matches!(
            interrupted(CrashPolicy::Fail),
            Some(Outcome::Failed { .. })
        ));
        assert!(matches!(
            interrupted(CrashPolicy::Hold),
            Some(Outcome::InDoubt { .. })
        ));
    }
}
