//! Questions of a sync tool to a 2025-11-25 client. That revision has no multi-round
//! calls: a server asks by sending its own JSON-RPC request (`sampling/createMessage`,
//! `elicitation/create`, `roots/list`) on the call's SSE stream, and the client POSTs the
//! response to `/mcp`. This module bridges a tool that asks (an `InputRequiredResult`, the
//! same tool 2026-07-28 clients drive with `inputResponses`) to that: it sends each
//! request on the stream, waits for the answers, runs the tool again with them and the
//! tool's `requestState`, and ends the stream with the result.
//!
//! The answers are correlated in this process only ([`Pending`]): a client's response must
//! reach the daemon that asked (one daemon, or sticky routing). Unanswered questions end
//! the call with a tool error after [`ANSWER_TIMEOUT`].
//!
//! It must not decide what a tool may ask (`crate::asks`) or parse HTTP (`mcp::http`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio::sync::oneshot;

use super::call::Call;
use super::error::McpError;
use super::tool_call;
use crate::asks::Asked;
use crate::json::{Json, Object};
use crate::tools::runner::InputRound;
use crate::tools::SyncTool;

/// How long a question waits for the client's answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(300);
/// Rounds of questions one call may take.
const MAX_ROUNDS: usize = 10;

type Answer = Result<Value, Value>;

/// Questions sent and not yet answered, by the id of the request sent to the client,
/// with a count per client (capped) and in `mcpq_mcp_pending_questions`.
#[derive(Default)]
pub struct Pending {
    waiting: Mutex<Waiting>,
}

#[derive(Default)]
struct Waiting {
    by_id: HashMap<String, (String, oneshot::Sender<Answer>)>,
    per_client: HashMap<String, usize>,
}

impl Waiting {
    fn remove(&mut self, id: &str) -> Option<oneshot::Sender<Answer>> {
        let (client, tx) = self.by_id.remove(id)?;
        if let Some(n) = self.per_client.get_mut(&client) {
            *n -= 1;
            if *n == 0 {
                self.per_client.remove(&client);
            }
        }
        metrics::gauge!(PENDING_QUESTIONS).set(self.by_id.len() as f64);
        Some(tx)
    }
}

use crate::telemetry::names::PENDING_QUESTIONS;

/// One round's questions, forgotten when the round ends however it ends (answered,
/// refused, timed out, or its stream closed).
pub struct Round<'a> {
    pending: &'a Pending,
    ids: Vec<String>,
    answers: Vec<oneshot::Receiver<Answer>>,
}

impl Drop for Round<'_> {
    fn drop(&mut self) {
        let mut waiting = self.pending.lock();
        for id in &self.ids {
            waiting.remove(id);
        }
    }
}

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers `n` questions for `client` at once, or none if that would take the
    /// client over `cap` (0: no cap).
    pub fn reserve(&self, client: &str, n: usize, cap: usize) -> Result<Round<'_>, McpError> {
        let mut waiting = self.lock();
        let held = waiting.per_client.get(client).copied().unwrap_or(0);
        if cap > 0 && held + n > cap {
            return Err(McpError::TooManyQuestions(held, cap));
        }
        let mut round = Round {
            pending: self,
            ids: Vec::with_capacity(n),
            answers: Vec::with_capacity(n),
        };
        for _ in 0..n {
            let id = format!("mcpq-{}", uuid::Uuid::new_v4());
            let (tx, rx) = oneshot::channel();
            waiting.by_id.insert(id.clone(), (client.to_string(), tx));
            round.ids.push(id);
            round.answers.push(rx);
        }
        *waiting.per_client.entry(client.to_string()).or_default() += n;
        metrics::gauge!(PENDING_QUESTIONS).set(waiting.by_id.len() as f64);
        Ok(round)
    }

    /// A JSON-RPC response POSTed by `client`: delivered if it answers one of that
    /// client's questions (another client's response to it is ignored).
    pub fn deliver(&self, client: &str, message: &Map<String, Value>) {
        let Some(id) = message.get("id").and_then(Value::as_str) else {
            return;
        };
        let mut waiting = self.lock();
        if waiting.by_id.get(id).is_some_and(|(c, _)| c == client) {
            if let Some(tx) = waiting.remove(id) {
                let answer = match (message.get("result"), message.get("error")) {
                    (Some(r), _) => Ok(r.clone()),
                    (None, Some(e)) => Err(e.clone()),
                    (None, None) => Err(json!({"message": "a response without result or error"})),
                };
                let _ = tx.send(answer);
            }
        }
    }
}

/// Streams a tool's questions to the client and answers the call with the tool's result.
pub fn ask_over_stream(
    call: &Call,
    id: &Value,
    tool: Arc<dyn SyncTool>,
    args: Object,
    asked: Asked,
) -> Result<crate::http::HttpResponse, McpError> {
    // The first round's questions are counted before the stream opens, so a client over
    // its cap gets a plain error; later rounds end the stream with a tool error instead.
    let cap = call.mcp.max_pending_questions;
    drop(
        call.mcp
            .pending_answers
            .reserve(&call.client.0, asked.requests.len(), cap)?,
    );
    let (tx, body) = crate::http::SseBody::channel();
    let call = call.clone();
    let id = id.clone();
    // A spawned task leaves the task-local trace context behind: it goes along by hand.
    let trace = crate::otel::current();
    tokio::spawn(crate::otel::scope(trace, async move {
        let result = rounds(&call, &tx, tool.as_ref(), &args, asked).await;
        let message = json!({"jsonrpc": "2.0", "id": id, "result": result});
        let _ = tx.send(crate::http::sse::sse_event(&message)).await;
    }));
    Ok(super::reply::sse_response(body))
}

pub(super) async fn rounds(
    call: &Call,
    tx: &tokio::sync::mpsc::Sender<bytes::Bytes>,
    tool: &dyn SyncTool,
    args: &Object,
    mut asked: Asked,
) -> Value {
    let pending = &call.mcp.pending_answers;
    for _ in 0..MAX_ROUNDS {
        let keys: Vec<String> = asked.requests.keys().cloned().collect();
        let mut round =
            match pending.reserve(&call.client.0, keys.len(), call.mcp.max_pending_questions) {
                Ok(r) => r,
                Err(e) => return tool_call::tool_error(&e.message(), None),
            };
        for ((_, request), rid) in asked.requests.iter().zip(&round.ids) {
            let message = json!({
                "jsonrpc": "2.0",
                "id": rid,
                "method": request["method"],
                "params": request.get("params").cloned().unwrap_or_else(|| json!({})),
            });
            if tx
                .send(crate::http::sse::sse_event(&message))
                .await
                .is_err()
            {
                return Value::Null; // the client went away
            }
        }
        let mut answers = Map::new();
        let waits = std::mem::take(&mut round.answers);
        for (key, rx) in keys.into_iter().zip(waits) {
            let answer = tokio::select! {
                r = tokio::time::timeout(ANSWER_TIMEOUT, rx) => r,
                // The stream closed: nobody will answer; the round's questions go now.
                _ = tx.closed() => return Value::Null,
            };
            match answer {
                Ok(Ok(Ok(result))) => {
                    answers.insert(key, result);
                }
                Ok(Ok(Err(error))) => {
                    let why = error["message"].as_str().unwrap_or("an error").to_string();
                    return tool_call::tool_error(
                        &format!("input_required: the client refused {key:?}: {why}"),
                        None,
                    );
                }
                _ => {
                    return tool_call::tool_error(
                        &format!(
                            "input_required: no answer to {key:?} within {} s",
                            ANSWER_TIMEOUT.as_secs()
                        ),
                        None,
                    );
                }
            }
        }
        drop(round);
        let round = InputRound {
            client_capabilities: None,
            input_responses: Some(Value::Object(answers).to_string()),
            request_state: asked.state.clone(),
        };
        let now = call.app().now_ms();
        let reply = call
            .app()
            .call_sync(
                tool,
                &call.client,
                args,
                now,
                Some(&round),
                call.logs.clone(),
            )
            .await;
        let result = match reply {
            Ok(r) => r.result.unwrap_or_default(),
            Err(e) => return tool_call::tool_error(&e.wire(), None),
        };
        if !crate::tools::asks_for_input(&result) {
            return tool_call::tool_result(Json::Object(result).to_serde(), None);
        }
        asked = match crate::asks::parse(&Json::Object(result).to_serde()) {
            Ok(a) => a,
            Err(m) => {
                return tool_call::tool_error(
                    &format!("tool_failed: invalid InputRequiredResult: {m}"),
                    None,
                )
            }
        };
    }
    tool_call::tool_error(
        &format!("input_required: the tool asked more than {MAX_ROUNDS} rounds of questions"),
        None,
    )
}
