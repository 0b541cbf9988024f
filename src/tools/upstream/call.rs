//! One `tools/call` to an upstream: on a live session of its pool, its progress
//! notifications made the call's progress, a cancel or a timeout sent on as
//! `notifications/cancelled`, and its result turned into mcpq's.
//!
//! A timed-out stdio server gets its kill grace to show it still answers (a ping); one
//! that does not is killed, and the pool starts it again. The result is the upstream's
//! `content` (and `structuredContent`), which `/mcp` passes through unchanged; an
//! `isError` result is the tool's own error (`tool_error: …`). A call the upstream makes
//! a task (the tasks extension) is followed to its end by [`super::task`].
//!
//! It must not retry: the job's policy decides, from the [`JobError`] kind.

use std::time::Duration;

use rmcp::model::{CallToolRequest, CallToolRequestParams, ClientRequest, ServerResult};
use rmcp::service::PeerRequestOptions;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::asking::{InFlight, Replay, Reply, Resumed};
use super::task::{self, Followed};
use super::Upstream;
use crate::config::upstreams::Transport;
use crate::json::{Json, Object};
use crate::tools::runner::Invocation;
use crate::tools::{JobCtx, JobError};

/// How long a call waits for a session of an upstream that is (re)starting.
const SESSION_WAIT: Duration = Duration::from_secs(5);

/// What the error history says of an upstream's own error result.
pub const TOOL_ERROR: &str = "tool_error: ";

/// Calls `tool` with the arguments of the call or attempt `inv`; `max_output` bounds the
/// result's JSON. `resume`: an upstream task an earlier, lost attempt started is followed
/// instead of calling again, and a task this call starts is kept for the next attempt.
/// `inv.input`: the mcpq client's answers to what the upstream asked last round (a
/// multi-round call), or to a question it asked during a call parked since (`asking`).
pub async fn call(
    u: &Upstream,
    tool: &str,
    inv: &Invocation<'_>,
    max_output: usize,
    resume: bool,
) -> Result<Object, JobError> {
    let name = &u.def.name;
    let ctx = &inv.ctx;
    let round = inv.input;
    let mut answers = round.and_then(|r| r.input_responses.as_deref());
    let mut state = round.and_then(|r| r.request_state.clone());
    let mut replay = None;
    match u.asking.resume(state.as_deref(), inv.client_id, answers) {
        Resumed::NotParked => {}
        Resumed::Call(call, left) => {
            call.slot
                .calls
                .set_parked(&call.token, false, Some(ctx.clone()));
            let f = Following {
                u,
                ctx,
                client: inv.client_id,
                max_output,
                resume,
                deadline: Instant::now() + left,
            };
            return Box::pin(f.wait(call, None)).await;
        }
        // The answered round reached another process (a job claimed by another worker, a
        // sync round sent to another daemon), or this one restarted, or it came after the
        // park limit: the call starts again, and the answer goes to the same question.
        Resumed::Gone(again) => {
            tracing::info!(upstream = %name, "the upstream call that asked is not parked in this process; calling again");
            answers = None;
            state = None;
            replay = again;
        }
    }
    let deadline = Instant::now() + inv.timeout;
    let Some(slot) = u.session_within(SESSION_WAIT).await else {
        return Err(JobError::Retryable(format!(
            "upstream_down: upstream {name} has no live session"
        )));
    };
    // Answers to an upstream task's questions: sent to the task, which is followed again.
    if let (Some(text), Some(id)) = (answers, task::named(state.as_deref(), name)) {
        Box::pin(task::answer(&slot, &id, text, name)).await?;
        return match Box::pin(task::follow(u, &slot, &id, ctx, deadline, max_output, true)).await {
            Followed::Done(r) => r,
            Followed::Unknown(why) => Err(JobError::Fatal(format!(
                "upstream_error: the upstream no longer knows the task that asked ({why})"
            ))),
        };
    }
    if let Some(id) = task::kept(ctx, name).filter(|_| resume && answers.is_none()) {
        match Box::pin(task::follow(u, &slot, &id, ctx, deadline, max_output, true)).await {
            Followed::Done(r) => return r,
            Followed::Unknown(why) => {
                tracing::warn!(upstream = %name, task = %id, "the upstream no longer knows the task a lost attempt started ({why}); calling again");
                task::forget(ctx).await;
            }
        }
    }
    let call = match slot.direct.clone() {
        Some(direct) if super::direct::Direct::carries(tool) => {
            direct.send(slot, tool, inv.args_json, answers, state, ctx, max_output)?
        }
        _ => {
            let args = serde_json::from_str(inv.args_json)
                .map_err(|e| JobError::Fatal(format!("invalid_args: {e}")))?;
            Box::pin(send(&u.def.name, slot, tool, args, answers, state, ctx)).await?
        }
    };
    let f = Following {
        u,
        ctx,
        client: inv.client_id,
        max_output,
        resume,
        deadline,
    };
    f.wait(call, replay).await
}

/// Sends `tools/call` on `slot` (with the client's answers and the upstream's state of a
/// multi-round call); the call in flight, its questions routed to it.
async fn send(
    name: &str,
    slot: std::sync::Arc<super::Slot>,
    tool: &str,
    args: serde_json::Map<String, serde_json::Value>,
    answers: Option<&str>,
    state: Option<String>,
    ctx: &JobCtx,
) -> Result<InFlight, JobError> {
    let mut params = CallToolRequestParams::new(tool.to_string());
    params.arguments = Some(args);
    if let Some(text) = answers {
        // The upstream asked (an InputRequiredResult) and the client answered: the same
        // call again, with the answers and the upstream's own state.
        params.input_responses = Some(
            serde_json::from_str(text)
                .map_err(|e| JobError::Fatal(format!("invalid_args: inputResponses: {e}")))?,
        );
        params.request_state = state;
    }
    let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
    let handle = slot
        .peer
        .send_request_with_option(request, PeerRequestOptions::no_options())
        .await
        .map_err(|e| JobError::Retryable(format!("upstream_unreachable: {name}: {e}")))?;
    let (questions_tx, questions) = mpsc::channel(super::session::QUESTIONS_PER_CALL);
    slot.calls.add(
        handle.progress_token.clone(),
        ctx.clone(),
        Some(questions_tx),
    );
    Ok(InFlight {
        id: handle.id.clone(),
        token: handle.progress_token.clone(),
        response: Box::pin(answer(handle.await_response(), name.to_string())),
        questions,
        slot,
    })
}

/// rmcp's answer to a call, its failures in mcpq's terms: the upstream's own error is
/// final, a lost session may fare better on another attempt.
async fn answer(
    response: impl std::future::Future<Output = Result<ServerResult, rmcp::ServiceError>>,
    name: String,
) -> Result<Reply, JobError> {
    response
        .await
        .map(|r| Reply::Server(Box::new(r)))
        .map_err(|e| match e {
            rmcp::ServiceError::McpError(e) => {
                JobError::Fatal(format!("upstream_error: {} {}", e.code.0, e.message))
            }
            e => JobError::Retryable(format!("upstream_lost: {name}: {e}")),
        })
}

/// One call's wait for its answer.
struct Following<'a> {
    u: &'a Upstream,
    ctx: &'a JobCtx,
    client: &'a str,
    max_output: usize,
    resume: bool,
    deadline: Instant,
}

impl Following<'_> {
    /// Waits for the upstream's answer to `call`: its result, a task to follow, or a
    /// question for mcpq's client, which parks the call and makes it the tool's question
    /// (unless `replay` already answers it).
    async fn wait(
        &self,
        mut call: InFlight,
        mut replay: Option<Replay>,
    ) -> Result<Object, JobError> {
        let (u, ctx) = (self.u, self.ctx);
        let name = &u.def.name;
        let response = loop {
            tokio::select! {
                r = &mut call.response => break r,
                Some(q) = call.questions.recv() => {
                    let q = match replay.take() {
                        Some(r) => match r.answer(q) {
                            Ok(()) => continue,
                            Err((r, q)) => {
                                replay = Some(r);
                                q
                            }
                        },
                        None => q,
                    };
                    let left = self.deadline.saturating_duration_since(Instant::now());
                    call.slot.calls.set_parked(&call.token, true, None);
                    match u.asking.park(self.client, call, q, left) {
                        Ok(question) => return Ok(question),
                        Err(back) => {
                            call = back;
                            call.slot.calls.set_parked(&call.token, false, None);
                        }
                    }
                }
                _ = ctx.cancel.cancelled() => {
                    Box::pin(call.cancel("cancelled")).await;
                    return Err(JobError::Fatal("cancelled".into()));
                }
                _ = tokio::time::sleep_until(self.deadline) => {
                    let slot = call.slot.clone();
                    Box::pin(call.cancel("timeout")).await;
                    Box::pin(check_alive(u, &slot)).await;
                    return Err(JobError::Retryable(format!(
                        "timeout: no result within {} s; notifications/cancelled sent",
                        (self.deadline - Instant::now()).as_secs()
                    )));
                }
            }
        };
        let slot = call.slot.clone();
        // Err: a tool result mcpq's own client read and checked (direct.rs), as it came.
        let response = response.map(|r| match r {
            Reply::Tool(value) => Err(value),
            Reply::Server(server) => Ok(*server),
        });
        let answer = match response {
            Ok(Err(value)) => result(value, self.max_output),
            // The upstream made the call a task: its progress keeps the call's token.
            Ok(Ok(ServerResult::CreateTaskResult(t))) => {
                if self.resume {
                    Box::pin(task::keep(ctx, name, &t.task.task_id)).await;
                }
                match Box::pin(task::follow(
                    u,
                    &slot,
                    &t.task.task_id,
                    ctx,
                    self.deadline,
                    self.max_output,
                    false,
                ))
                .await
                {
                    Followed::Done(r) => r,
                    Followed::Unknown(why) => {
                        Err(JobError::Fatal(format!("upstream_error: {why}")))
                    }
                }
            }
            // The upstream asks its client: mcpq's client is asked the same (docs/TOOLS.md
            // "Asking the client for input"), and its answers come back as `round`.
            Ok(Ok(ServerResult::InputRequiredResult(r))) => asked(r),
            Ok(Ok(ServerResult::CallToolResult(r))) => serde_json::to_value(&r)
                .map_err(|e| JobError::Fatal(format!("invalid_output: {e}")))
                .and_then(|value| result(value, self.max_output)),
            Ok(Ok(other)) => Err(JobError::Fatal(format!(
                "invalid_output: the upstream's answer to tools/call is not a tool result (its fields: {})",
                kind(&other)
            ))),
            Err(e) => Err(e),
        };
        slot.calls.remove(&call.token);
        answer
    }
}

/// An upstream's `InputRequiredResult` as a tool's question (`asks` checks it).
fn asked(r: rmcp::model::InputRequiredResult) -> Result<Object, JobError> {
    let mut o = serde_json::Map::new();
    o.insert("resultType".into(), "input_required".into());
    if let Some(requests) = r.input_requests {
        let v = serde_json::to_value(requests)
            .map_err(|e| JobError::Fatal(format!("invalid_output: inputRequests: {e}")))?;
        o.insert("inputRequests".into(), v);
    }
    if let Some(state) = r.request_state {
        o.insert("requestState".into(), state.into());
    }
    match Json::from_serde(&serde_json::Value::Object(o)) {
        Json::Object(o) => Ok(o),
        _ => Err(JobError::Fatal("invalid_output: not an object".into())),
    }
}

fn kind(r: &ServerResult) -> String {
    serde_json::to_value(r)
        .ok()
        .and_then(|v| {
            v.as_object()
                .map(|o| o.keys().cloned().collect::<Vec<_>>().join(","))
        })
        .unwrap_or_default()
}

/// The upstream's `CallToolResult` as mcpq's result: `content` and `structuredContent`.
pub(super) fn result(value: serde_json::Value, max_output: usize) -> Result<Object, JobError> {
    if json_len(&value) > max_output {
        return Err(JobError::Fatal(format!(
            "output_too_large: the upstream's result exceeded {max_output} bytes"
        )));
    }
    let serde_json::Value::Object(mut o) = value else {
        return Err(JobError::Fatal("invalid_output: not an object".into()));
    };
    if o.get("isError").and_then(serde_json::Value::as_bool) == Some(true) {
        let message: Vec<&str> = o
            .get("content")
            .and_then(serde_json::Value::as_array)
            .map(|blocks| {
                blocks
                    .iter()
                    .filter_map(|b| b.get("text").and_then(serde_json::Value::as_str))
                    .collect()
            })
            .unwrap_or_default();
        return Err(JobError::Fatal(format!(
            "{TOOL_ERROR}{}",
            message.join("\n")
        )));
    }
    let mut out = serde_json::Map::new();
    out.insert(
        "content".into(),
        o.remove("content").unwrap_or(serde_json::json!([])),
    );
    if let Some(s) = o.remove("structuredContent") {
        out.insert("structuredContent".into(), s);
    }
    match Json::from_serde(&serde_json::Value::Object(out)) {
        Json::Object(o) => Ok(o),
        _ => Err(JobError::Fatal("invalid_output: not an object".into())),
    }
}

/// The length of `value` as JSON text, without building the text.
fn json_len(value: &serde_json::Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut n = Count(0);
    // Writing into a counter cannot fail; a value that could not be written counts as none.
    let _ = serde_json::to_writer(&mut n, value);
    n.0
}

/// After a timeout: a stdio server that does not answer a ping within its kill grace is
/// stuck, so its session ends (killing its process group) and the pool restarts it.
async fn check_alive(u: &Upstream, slot: &super::Slot) {
    let Transport::Stdio { kill_grace, .. } = &u.def.transport else {
        return;
    };
    let pinged = tokio::time::timeout(
        *kill_grace,
        slot.peer
            .send_request(ClientRequest::PingRequest(Default::default())),
    )
    .await;
    if !matches!(pinged, Ok(Ok(_))) {
        tracing::warn!(upstream = %u.def.name, "upstream did not answer a ping after a timeout; restarting it");
        slot.kill.cancel();
    }
}
