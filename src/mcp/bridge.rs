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

use super::http;
use super::methods::{self, Call};
use crate::asks::Asked;
use crate::json::{Json, Object};
use crate::tools::runner::InputRound;
use crate::tools::SyncTool;

/// How long a question waits for the client's answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(300);
/// Rounds of questions one call may take.
const MAX_ROUNDS: usize = 10;

type Answer = Result<Value, Value>;

/// Questions sent and not yet answered, by the id of the request sent to the client.
#[derive(Default)]
pub struct Pending {
    waiting: Mutex<HashMap<String, (String, oneshot::Sender<Answer>)>>,
}

impl Pending {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, (String, oneshot::Sender<Answer>)>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn ask(&self, id: &str, client: &str) -> oneshot::Receiver<Answer> {
        let (tx, rx) = oneshot::channel();
        self.lock().insert(id.to_string(), (client.to_string(), tx));
        rx
    }

    fn forget(&self, id: &str) {
        self.lock().remove(id);
    }

    /// A JSON-RPC response POSTed by `client`: delivered if it answers one of that
    /// client's questions (another client's response to it is ignored).
    pub fn deliver(&self, client: &str, message: &Map<String, Value>) {
        let Some(id) = message.get("id").and_then(Value::as_str) else {
            return;
        };
        let mut waiting = self.lock();
        if waiting.get(id).is_some_and(|(c, _)| c == client) {
            if let Some((_, tx)) = waiting.remove(id) {
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
) -> crate::server::HttpResponse {
    let (tx, body) = http::SseBody::channel();
    let call = call.clone();
    let id = id.clone();
    tokio::spawn(async move {
        let result = rounds(&call, &tx, tool.as_ref(), &args, asked).await;
        let message = json!({"jsonrpc": "2.0", "id": id, "result": result});
        let _ = tx.send(http::sse_event(&message)).await;
    });
    super::sse_response(body)
}

pub(super) async fn rounds(
    call: &Call,
    tx: &tokio::sync::mpsc::Sender<bytes::Bytes>,
    tool: &dyn SyncTool,
    args: &Object,
    mut asked: Asked,
) -> Value {
    let pending = call.app.pending_answers();
    for _ in 0..MAX_ROUNDS {
        let mut answers = Map::new();
        let mut waits = Vec::new();
        for (key, request) in &asked.requests {
            let rid = format!("mcpq-{}", uuid::Uuid::new_v4());
            let rx = pending.ask(&rid, &call.client.0);
            let message = json!({
                "jsonrpc": "2.0",
                "id": rid,
                "method": request["method"],
                "params": request.get("params").cloned().unwrap_or_else(|| json!({})),
            });
            if tx.send(http::sse_event(&message)).await.is_err() {
                pending.forget(&rid);
                return Value::Null; // the client went away
            }
            waits.push((key.clone(), rid, rx));
        }
        for (key, rid, rx) in waits {
            match tokio::time::timeout(ANSWER_TIMEOUT, rx).await {
                Ok(Ok(Ok(result))) => {
                    answers.insert(key, result);
                }
                Ok(Ok(Err(error))) => {
                    pending.forget(&rid);
                    let why = error["message"].as_str().unwrap_or("an error").to_string();
                    return methods::tool_error(
                        &format!("input_required: the client refused {key:?}: {why}"),
                        None,
                    );
                }
                _ => {
                    pending.forget(&rid);
                    return methods::tool_error(
                        &format!(
                            "input_required: no answer to {key:?} within {} s",
                            ANSWER_TIMEOUT.as_secs()
                        ),
                        None,
                    );
                }
            }
        }
        let round = InputRound {
            client_capabilities: None,
            input_responses: Some(Value::Object(answers).to_string()),
            request_state: asked.state.clone(),
        };
        let now = call.app.now_ms();
        let reply = call
            .app
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
            Err(e) => return methods::tool_error(&e.wire(), None),
        };
        if !crate::tools::asks_for_input(&result) {
            return methods::tool_result(Json::Object(result).to_serde(), None);
        }
        asked = match crate::asks::parse(&Json::Object(result).to_serde()) {
            Ok(a) => a,
            Err(m) => {
                return methods::tool_error(
                    &format!("tool_failed: invalid InputRequiredResult: {m}"),
                    None,
                )
            }
        };
    }
    methods::tool_error(
        &format!("input_required: the tool asked more than {MAX_ROUNDS} rounds of questions"),
        None,
    )
}
