//! The tasks methods of `/mcp` (`tasks/get`, `tasks/result`, `tasks/update`,
//! `tasks/cancel`), where a task is a job: the same row, the same id, the same client
//! isolation as `/v1/call`; and how a job reads as a task, a result or a progress message.
//!
//! It must not speak HTTP: `mcp` (mod.rs) and `held` write the answers.

use std::time::Duration;

use serde_json::{json, Map, Value};

use super::call::*;
use super::error::McpError;
use super::tool_call::{tool_error, tool_result};
use super::Era;
use crate::jobs::{JobId, JobState};
use crate::store::{AnswerOutcome, CancelOutcome, JobRecord};

/// ISO 8601 (UTC, milliseconds) for task timestamps.
fn iso(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// A job's state as a task status. A failed job is a `failed` task in 2025-11-25. In
/// 2026-07-28 `failed` is for protocol errors: a job the tool itself failed (it exited
/// non-zero, its endpoint answered 4xx) is a `completed` task whose result has `isError`;
/// one that never got an answer from its tool (crash, timeout, invalid output, lost
/// worker) is `failed` with the error inline.
fn task_status(job: &JobRecord, era: Era) -> &'static str {
    match job.state {
        JobState::Queued | JobState::Running | JobState::InDoubt => "working",
        JobState::AwaitingInput => "input_required",
        JobState::Succeeded => "completed",
        JobState::Failed if era == Era::Modern && failed_by_tool(job) => "completed",
        JobState::Failed => "failed",
        JobState::Cancelled => "cancelled",
    }
}

fn failed_by_tool(job: &JobRecord) -> bool {
    crate::tools::runner::reported_by_tool(&last_error(job))
}

fn status_message(job: &JobRecord, now: i64) -> Option<String> {
    match job.state {
        JobState::Queued if job.run_at > now => {
            Some(format!("scheduled: not before {}", iso(job.run_at)))
        }
        JobState::Queued => Some("queued".into()),
        JobState::InDoubt => {
            Some("in doubt: its worker was lost mid-attempt; waiting for an operator".into())
        }
        JobState::Running => Some(
            job.progress
                .as_deref()
                .and_then(|p| serde_json::from_str::<Value>(p).ok())
                .and_then(|p| {
                    p.get("message")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .or_else(|| Some(p.to_string()))
                })
                .unwrap_or_else(|| format!("running (attempt {})", job.attempt)),
        ),
        JobState::Failed => Some(last_error(job)),
        JobState::AwaitingInput => Some(
            "waiting for input: answer its inputRequests with tasks/update (protocol 2026-07-28)"
                .into(),
        ),
        _ => None,
    }
}

pub fn last_error(job: &JobRecord) -> String {
    serde_json::from_str::<Value>(&job.errors)
        .ok()
        .and_then(|v| {
            v.as_array()?
                .last()?
                .get("error")?
                .as_str()
                .map(str::to_string)
        })
        .unwrap_or_else(|| "failed".into())
}

/// A job as an MCP `Task` (the era's field names).
pub fn task_of(job: &JobRecord, ttl_ms: u64, era: Era, now: i64) -> Value {
    let mut t = json!({
        "taskId": job.id.0,
        "status": task_status(job, era),
        "createdAt": iso(job.created_at),
        "lastUpdatedAt": iso(job.finished_at.or(job.started_at).unwrap_or(job.created_at)),
    });
    match era {
        Era::Legacy => {
            t["ttl"] = json!(ttl_ms);
            t["pollInterval"] = json!(POLL_INTERVAL_MS);
        }
        Era::Modern => {
            t["ttlMs"] = json!(ttl_ms);
            t["pollIntervalMs"] = json!(POLL_INTERVAL_MS);
        }
    }
    if let Some(m) = status_message(job, now) {
        t["statusMessage"] = Value::String(m);
    }
    t
}

/// The answer to a `tools/call` that became a task: 2025-11-25 wraps the task, 2026-07-28
/// flattens it with `resultType: "task"`. Built from what the enqueue just stored (a
/// queued job created at `now`), without reading the row back.
pub fn create_task_result(id: &JobId, now_ms: i64, ttl_ms: u64, era: Era) -> Value {
    let mut task = json!({
        "taskId": id.0,
        "status": "working",
        "statusMessage": "queued",
        "createdAt": iso(now_ms),
        "lastUpdatedAt": iso(now_ms),
    });
    let (ttl, poll) = match era {
        Era::Legacy => ("ttl", "pollInterval"),
        Era::Modern => ("ttlMs", "pollIntervalMs"),
    };
    task[ttl] = json!(ttl_ms);
    task[poll] = json!(POLL_INTERVAL_MS);
    match era {
        Era::Legacy => json!({ "task": task }),
        Era::Modern => {
            let mut t = task;
            t["resultType"] = json!("task");
            t
        }
    }
}

/// A finished job as the `CallToolResult` of the call that created it.
pub fn job_result(job: &JobRecord) -> Option<Value> {
    let meta = json!({ RELATED_TASK: {"taskId": job.id.0}, JOB_META: job.id.0 });
    match job.state {
        JobState::Succeeded => {
            let result = job
                .result
                .as_deref()
                .and_then(|r| serde_json::from_str::<Value>(r).ok())
                .unwrap_or(Value::Null);
            Some(tool_result(result, Some(meta)))
        }
        JobState::Failed => Some(tool_error(
            &format!("job_failed: {}", last_error(job)),
            Some(meta),
        )),
        JobState::Cancelled => Some(tool_error("job_cancelled: job was cancelled", Some(meta))),
        JobState::AwaitingInput => Some(tool_error(
            &format!(
                "input_required: job {} asks its client for input, which only a client of the tasks extension can give (tasks/get shows the requests, tasks/update answers them); it waits",
                job.id.0
            ),
            Some(meta),
        )),
        _ => None,
    }
}

fn task_id(params: &Value) -> Result<JobId, McpError> {
    let id = str_param(params, "taskId")?;
    JobId::parse(id).ok_or_else(|| McpError::InvalidParams(format!("no task {id:?}")))
}

pub async fn get_job(call: &Call, id: &JobId) -> Result<JobRecord, McpError> {
    call.app()
        .store()
        .get_job(&call.client, id)
        .await
        .map_err(|e| store_error(call, e))?
        .ok_or_else(|| McpError::InvalidParams(format!("no task {:?}", id.0)))
}

pub async fn tasks_get(call: &Call, params: &Value) -> Result<Value, McpError> {
    let job = get_job(call, &task_id(params)?).await?;
    let mut t = task_of(
        &job,
        call.app().retention_ms(),
        call.era,
        call.app().now_ms(),
    );
    if call.era == Era::Modern && job.state == JobState::AwaitingInput {
        let requests = job
            .input_requests
            .as_deref()
            .and_then(|r| serde_json::from_str::<Value>(r).ok())
            .unwrap_or_else(|| json!({}));
        t["inputRequests"] = requests;
    }
    if call.era == Era::Modern {
        // The detailed task: a finished one carries its result inline.
        if let Some(mut r) = job_result(&job) {
            if let Some(m) = r.get_mut("_meta").and_then(Value::as_object_mut) {
                m.remove(RELATED_TASK);
            }
            match job.state {
                JobState::Cancelled | JobState::AwaitingInput => {}
                JobState::Failed if !failed_by_tool(&job) => {
                    t["error"] = json!({
                        "code": super::error::code::INTERNAL_ERROR,
                        "message": format!("job_failed: {}", last_error(&job)),
                        "data": { JOB_META: job.id.0 },
                    });
                }
                _ => t["result"] = r,
            }
        }
    }
    Ok(t)
}

/// Re-reads a job until it is finished (or waits for input): at once when the store
/// signals that it changed (its completion, in this process or a worker's), else on a
/// timer backing off up to `max_delay` (the fallback when a signal is lost, and how
/// progress steps are seen). `on_progress` sees the first read and every progress change
/// after it; it returns `false` once nobody listens. `gone` resolves when the caller's
/// stream closed: the job runs on, but nothing reads it for a caller that left.
pub async fn wait_finished(
    call: &Call,
    id: &JobId,
    max_delay: Duration,
    gone: impl std::future::Future<Output = ()>,
    mut on_progress: impl FnMut(&JobRecord) -> bool,
) -> Result<JobRecord, McpError> {
    let mut delay = Duration::from_millis(20);
    // `None` until the first read, so the first read is always reported.
    let mut last_progress: Option<Option<String>> = None;
    // Watching before the first read: a change between a read and the wait is not lost.
    let watching = call.app().store().job_changes().map(|c| c.watch(&id.0));
    let changed = || async {
        match &watching {
            Some(w) => w.changed().await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(gone);
    loop {
        let job = get_job(call, id).await?;
        // A job waiting for input waits for a task client: nothing to wait for here.
        if job.state.is_terminal() || job.state == JobState::AwaitingInput {
            return Ok(job);
        }
        if last_progress.as_ref() != Some(&job.progress) {
            last_progress = Some(job.progress.clone());
            if !on_progress(&job) {
                // The client went away: the job runs on; nothing to wait for.
                return Ok(job);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => delay = (delay * 2).min(max_delay),
            _ = changed() => {}
            _ = &mut gone => return Ok(job),
        }
    }
}

pub async fn tasks_result(call: &Call, params: &Value) -> Result<Value, McpError> {
    let id = task_id(params)?;
    let job = wait_finished(
        call,
        &id,
        call.mcp.held_poll,
        std::future::pending(),
        |_| true,
    )
    .await?;
    job_result(&job).ok_or_else(|| McpError::Internal("job ended unfinished".into()))
}

/// `tasks/update` (2026-07-28): a client's answers to its task's `inputRequests`. An
/// acknowledgement whatever they did (the next `tasks/get` shows it); a task that is not
/// the client's is -32602.
pub async fn tasks_update(call: &Call, params: &Value) -> Result<Value, McpError> {
    let id = task_id(params)?;
    let answers = match params.get("inputResponses") {
        None => serde_json::Map::new(),
        Some(Value::Object(o)) if o.values().all(Value::is_object) => o.clone(),
        Some(_) => {
            return Err(McpError::InvalidParams(
                "inputResponses must be an object of result objects keyed by request".into(),
            ))
        }
    };
    let now = call.app().now_ms();
    match call
        .app()
        .store()
        .answer_input(&call.client, &id, &answers, now)
        .await
        .map_err(|e| store_error(call, e))?
    {
        AnswerOutcome::NotFound => Err(McpError::InvalidParams(format!("no task {:?}", id.0))),
        _ => Ok(json!({})),
    }
}

pub async fn tasks_cancel(call: &Call, params: &Value) -> Result<Value, McpError> {
    let id = task_id(params)?;
    let now = call.app().now_ms();
    let outcome = call
        .app()
        .store()
        .cancel(&call.client, &id, now)
        .await
        .map_err(|e| store_error(call, e))?;
    match (outcome, call.era) {
        (CancelOutcome::NotFound, _) => Err(McpError::InvalidParams(format!("no task {:?}", id.0))),
        // 2026-07-28: an acknowledgement, also for a task that already ended.
        (_, Era::Modern) => Ok(json!({})),
        (CancelOutcome::AlreadyFinished(_), Era::Legacy) => {
            let job = get_job(call, &id).await?;
            Err(McpError::InvalidParams(format!(
                "cannot cancel task {:?}: already in terminal status {:?}",
                id.0,
                task_status(&job, Era::Legacy)
            )))
        }
        (CancelOutcome::Cancelled | CancelOutcome::Requested, Era::Legacy) => {
            let job = get_job(call, &id).await?;
            let mut t = task_of(
                &job,
                call.app().retention_ms(),
                Era::Legacy,
                call.app().now_ms(),
            );
            // A running job stops at its worker's next heartbeat; for the client it is
            // cancelled now (its result will say so).
            t["status"] = json!("cancelled");
            Ok(t)
        }
    }
}

fn store_error(call: &Call, e: crate::store::StoreError) -> McpError {
    call.app().store_error("tasks: store", e).into()
}

/// `notifications/progress` for a held call.
pub fn progress_notification(token: &Value, job: &JobRecord, first: bool, now: i64) -> Value {
    let progress = job
        .progress
        .as_deref()
        .and_then(|p| serde_json::from_str::<Value>(p).ok());
    let fraction = progress
        .as_ref()
        .and_then(|p| p.get("progress"))
        .and_then(Value::as_f64);
    let message = if first {
        format!(
            "job {} accepted (durable: poll it with poll_job if this connection drops)",
            job.id.0
        )
    } else {
        status_message(job, now).unwrap_or_default()
    };
    let mut params = Map::new();
    params.insert("progressToken".into(), token.clone());
    params.insert("progress".into(), json!(fraction.unwrap_or(0.0)));
    if fraction.is_some() {
        params.insert("total".into(), json!(1.0));
    }
    params.insert("message".into(), json!(message));
    params.insert("_meta".into(), json!({ JOB_META: job.id.0 }));
    json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": params})
}
