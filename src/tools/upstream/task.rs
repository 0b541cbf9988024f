//! Following an upstream's task (the MCP tasks extension, `io.modelcontextprotocol/tasks`):
//! a `tools/call` the upstream answered with a task handle is polled with `tasks/get` until
//! it ends, its status messages made the call's progress, a cancel or a timeout sent as
//! `tasks/cancel`.
//!
//! A task that asks its client for input (`input_required`) makes its questions the tool's
//! question, the task named in the round's state; the answers are sent with
//! `tasks/update` and the task followed again.
//!
//! A job's attempt keeps the task's id in its job row before it polls (`JobCtx::keep_state`),
//! so when its worker is lost, the next attempt polls the same task instead of calling the
//! tool again (crash policy `resume`). It must not call tools ([`super::call`] does) nor
//! decide what an upstream result means beyond the task's own status.

use std::time::Duration;

use rmcp::model::{CancelTaskParams, GetTaskParams, TaskPayload, UpdateTaskParams};
use tokio::time::Instant;

use super::{call, Slot, Upstream};
use crate::json::{Json, Object};
use crate::tools::{JobCtx, JobError};

/// The key an attempt's kept state names its upstream task under.
const KEY: &str = "io.mcpq/upstream_task";

/// Bounds on the upstream's suggested poll interval.
const POLL_MIN: Duration = Duration::from_millis(20);
const POLL_MAX: Duration = Duration::from_secs(5);
/// Before the upstream suggests one.
const POLL_FIRST: Duration = Duration::from_millis(100);

/// The upstream task a lost attempt of this job started on upstream `upstream`, if any.
pub fn kept(ctx: &JobCtx, upstream: &str) -> Option<String> {
    named(
        ctx.meta.as_ref()?.input.as_ref()?.request_state.as_deref(),
        upstream,
    )
}

/// The task of upstream `upstream` a kept or a round's state names.
pub fn named(state: Option<&str>, upstream: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(state?).ok()?;
    let t = v.get(KEY)?;
    (t.get("upstream")?.as_str()? == upstream)
        .then(|| t.get("task")?.as_str().map(str::to_string))
        .flatten()
}

fn state_of(upstream: &str, task: &str) -> String {
    serde_json::json!({ KEY: { "upstream": upstream, "task": task } }).to_string()
}

/// Keeps `task` in the job row for the next attempt (nothing for a sync call).
pub async fn keep(ctx: &JobCtx, upstream: &str, task: &str) {
    let state = state_of(upstream, task);
    if let Err(e) = ctx.keep_state(Some(state)).await {
        // The task runs on; only a lost worker's successor would miss it and call again.
        tracing::warn!(upstream, task, "could not keep the upstream task's id: {e}");
    }
}

/// Forgets the kept task: an attempt that ends it (a timeout cancels it) must not leave
/// the next attempt polling a task that will never answer.
pub async fn forget(ctx: &JobCtx) {
    if let Err(e) = ctx.keep_state(None).await {
        tracing::warn!("could not forget the upstream task's id: {e}");
    }
}

/// How following a task ended.
pub enum Followed {
    Done(Result<Object, JobError>),
    /// The upstream does not know the task (it restarted, or dropped it): call again.
    Unknown(String),
}

/// Polls task `id` on `slot` until it ends, `ctx` is cancelled or `deadline` passes.
/// `resumed`: the task was started by an earlier attempt, so an upstream that answers the
/// first poll with an error no longer has it.
pub async fn follow(
    u: &Upstream,
    slot: &Slot,
    id: &str,
    ctx: &JobCtx,
    deadline: Instant,
    max_output: usize,
    resumed: bool,
) -> Followed {
    let name = &u.def.name;
    let mut wait = POLL_FIRST;
    let mut first = true;
    loop {
        let got = tokio::select! {
            r = slot.peer.get_task(GetTaskParams::new(id)) => r,
            _ = ctx.cancel.cancelled() => return Followed::Done(cancel(slot, id, "cancelled").await),
            _ = tokio::time::sleep_until(deadline) => return Followed::Done(timed_out(slot, id, ctx).await),
        };
        let task = match got {
            Ok(t) => t.task,
            Err(rmcp::ServiceError::McpError(e)) if resumed && first => {
                return Followed::Unknown(format!("{} {}", e.code.0, e.message));
            }
            Err(rmcp::ServiceError::McpError(e)) => {
                return Followed::Done(Err(JobError::Fatal(format!(
                    "upstream_error: tasks/get: {} {}",
                    e.code.0, e.message
                ))));
            }
            // The task runs on upstream; the next attempt resumes it (its id stays kept).
            Err(e) => {
                return Followed::Done(Err(JobError::Retryable(format!(
                    "upstream_lost: {name}: {e}"
                ))))
            }
        };
        first = false;
        if let Some(ms) = task.task.poll_interval_ms {
            wait = Duration::from_millis(ms).clamp(POLL_MIN, POLL_MAX);
        }
        match task.payload {
            TaskPayload::Completed { result } => {
                return Followed::Done(call::result(serde_json::Value::Object(result), max_output))
            }
            TaskPayload::Failed { error } => {
                let code = error.get("code").map(|c| c.to_string()).unwrap_or_default();
                let message = error
                    .get("message")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("");
                return Followed::Done(Err(JobError::Fatal(format!(
                    "upstream_error: {code} {message}"
                ))));
            }
            TaskPayload::Cancelled => {
                return Followed::Done(Err(JobError::Fatal(
                    "upstream_cancelled: the upstream cancelled its task".into(),
                )))
            }
            // The task's questions are the tool's question; the round's state names the
            // task, so the answers go to it (`answer`) from any process, and it runs on
            // upstream meanwhile.
            TaskPayload::InputRequired { input_requests } => {
                let asked = serde_json::json!({
                    "resultType": "input_required",
                    "inputRequests": input_requests,
                    "requestState": state_of(name, id),
                });
                return Followed::Done(match Json::from_serde(&asked) {
                    Json::Object(o) => Ok(o),
                    _ => Err(JobError::Fatal("invalid_output: inputRequests".into())),
                });
            }
            _ => {
                if let Some(m) = task.task.status_message {
                    let mut p = Object::new();
                    p.insert("message".into(), Json::Str(m));
                    ctx.report_progress(p);
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = ctx.cancel.cancelled() => return Followed::Done(cancel(slot, id, "cancelled").await),
            _ = tokio::time::sleep_until(deadline) => return Followed::Done(timed_out(slot, id, ctx).await),
        }
    }
}

/// Sends mcpq's client's answers (`inputResponses` JSON text) to task `id`, which asked
/// for them. A task that no longer waits for them (answered by an attempt whose worker was
/// lost after sending them) is followed all the same: it asks again if it must.
pub async fn answer(slot: &Slot, id: &str, answers: &str, upstream: &str) -> Result<(), JobError> {
    let responses = serde_json::from_str(answers)
        .map_err(|e| JobError::Fatal(format!("invalid_args: inputResponses: {e}")))?;
    match slot
        .peer
        .update_task(UpdateTaskParams::new(id, responses))
        .await
    {
        Ok(()) => Ok(()),
        Err(rmcp::ServiceError::McpError(e)) => {
            tracing::info!(
                upstream,
                task = id,
                "tasks/update refused ({} {}); following the task",
                e.code.0,
                e.message
            );
            Ok(())
        }
        Err(e) => Err(JobError::Retryable(format!(
            "upstream_lost: {upstream}: tasks/update: {e}"
        ))),
    }
}

async fn cancel(slot: &Slot, id: &str, why: &str) -> Result<Object, JobError> {
    // Cooperative: the upstream may finish anyway; the job is cancelled either way.
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        slot.peer.cancel_task(CancelTaskParams::new(id)),
    )
    .await;
    Err(JobError::Fatal(why.to_string()))
}

async fn timed_out(slot: &Slot, id: &str, ctx: &JobCtx) -> Result<Object, JobError> {
    let _ = cancel(slot, id, "").await;
    forget(ctx).await;
    Err(JobError::Retryable(
        "timeout: the upstream's task did not end in time; tasks/cancel sent".into(),
    ))
}
