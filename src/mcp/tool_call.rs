//! `tools/call` on the one registry: a sync tool answers at once (or asks its client a
//! question: a multi-round call), a job tool becomes a durable job, a task when the
//! client asked for one, else a held call; and how a tool's answer becomes an MCP result.
//!
//! It must not speak HTTP or streams: `mcp` (mod.rs), `held`, `bridge` and `log` do.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::call::*;
use super::error::McpError;
use super::input;
use super::Era;
use crate::jobs::{JobId, JobOptions};
use crate::json::{Json, Object};
use crate::tools::{TaskSupport, Tool};

/// Content block types a tool may return as they are (see [`passthrough`]).
const CONTENT_TYPES: [&str; 5] = ["text", "image", "audio", "resource", "resource_link"];

/// A result that is exactly `{"content": [blocks]}`, each block an object with an MCP
/// content `type`, is MCP content already (images, audio, embedded resources): it is
/// passed as it is instead of being wrapped as JSON text. So is such a result with a
/// `structuredContent` object beside it (an upstream MCP server's result).
fn passthrough(result: &Value) -> Option<&Vec<Value>> {
    let o = result.as_object()?;
    let structured = o.get("structuredContent").is_some_and(Value::is_object);
    if o.len() != 1 + usize::from(structured) {
        return None;
    }
    let blocks = o.get("content")?.as_array()?;
    let all_blocks = !blocks.is_empty()
        && blocks.iter().all(|b| {
            b.get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| CONTENT_TYPES.contains(&t))
        });
    all_blocks.then_some(blocks)
}

/// A tool's JSON result as a `CallToolResult`: its JSON as text plus `structuredContent`,
/// or its own content blocks ([`passthrough`]).
pub fn tool_result(result: Value, meta: Option<Value>) -> Value {
    if passthrough(&result).is_some() {
        // Moved, not copied: `json!` would serialize borrowed blocks into new values.
        let mut o = match result {
            Value::Object(o) => o,
            _ => serde_json::Map::new(),
        };
        let mut r = serde_json::Map::with_capacity(4);
        r.insert("content".into(), o.remove("content").unwrap_or(json!([])));
        r.insert("isError".into(), Value::Bool(false));
        if let Some(s) = o.remove("structuredContent") {
            r.insert("structuredContent".into(), s);
        }
        let mut r = Value::Object(r);
        if let Some(m) = meta {
            r["_meta"] = m;
        }
        return r;
    }
    let text = result.to_string();
    let mut r = json!({
        "content": [{"type": "text", "text": text}],
        "isError": false,
    });
    if result.is_object() {
        r["structuredContent"] = result;
    }
    if let Some(m) = meta {
        r["_meta"] = m;
    }
    r
}

/// A tool's failure as a `CallToolResult` (not a protocol error).
pub fn tool_error(message: &str, meta: Option<Value>) -> Value {
    let mut r = json!({"content": [{"type": "text", "text": message}], "isError": true});
    if let Some(m) = meta {
        r["_meta"] = m;
    }
    r
}

/// `tools/call` for a sync tool, and validation shared by job tools.
pub enum CallPlan {
    /// Answered already.
    Done(Value),
    /// A durable job was stored: answer as a task, or hold until it finishes.
    Job { id: JobId, task: bool },
    /// A sync tool asked a 2025-11-25 client questions: ask them on the stream
    /// (`mcp::bridge`), then run it again with the answers.
    Ask {
        tool: Arc<dyn crate::tools::SyncTool>,
        args: Object,
        asked: crate::asks::Asked,
    },
}

pub async fn call_tool(call: &Call, params: &Value) -> Result<CallPlan, McpError> {
    let name = str_param(params, "name")?;
    let args = match params.get("arguments") {
        None | Some(Value::Null) => Object::new(),
        Some(v @ Value::Object(_)) => match Json::from_serde(v) {
            Json::Object(o) => o,
            _ => Object::new(),
        },
        Some(_) => {
            return Err(McpError::InvalidParams(
                "arguments must be an object".into(),
            ))
        }
    };
    // 2025-11-25: the client asks (`params.task`); 2026-07-28: the server decides, for a
    // request that declared the extension (a legacy `task` param is tolerated, ignored).
    let as_task = match call.era {
        Era::Legacy => params.get("task").is_some_and(Value::is_object),
        Era::Modern => call.wants_tasks,
    };
    let registry = call.app().registry();
    let now = call.app().now_ms();
    let named = Named {
        name,
        args,
        params,
        now,
    };
    match registry.get(name) {
        None => Err(McpError::InvalidParams(format!("unknown tool {name:?}"))),
        Some(Tool::Sync(t)) => {
            if as_task && call.era == Era::Legacy {
                return Err(McpError::MethodNotFound(format!(
                    "{name} answers at once; it cannot run as a task (taskSupport: forbidden)"
                )));
            }
            call_sync_tool(call, t, named).await
        }
        Some(Tool::Job(t)) => call_job_tool(call, t.clone(), named, as_task).await,
    }
}

/// A `tools/call`'s tool name, arguments, raw params and time.
struct Named<'a> {
    name: &'a str,
    args: Object,
    params: &'a Value,
    now: i64,
}

impl Named<'_> {
    fn binding<'b>(&'b self, call: &'b Call) -> input::Binding<'b> {
        input::Binding {
            tool: self.name,
            client: &call.client.0,
            args: &self.args,
        }
    }
}

async fn call_sync_tool(
    call: &Call,
    t: &Arc<dyn crate::tools::SyncTool>,
    n: Named<'_>,
) -> Result<CallPlan, McpError> {
    let key = call.mcp.request_state_key();
    // 2025-11-25 has no multi-round calls (its server-to-client requests need a
    // session): without a round, a tool that asks is refused by the tool layer.
    let round = match &call.capabilities {
        Some(caps) => Some(input::read_round(
            n.params,
            caps,
            key,
            &n.binding(call),
            n.now,
        )?),
        // 2025-11-25 over SSE: questions are bridged to server-to-client requests.
        None if call.streams => Some(crate::tools::runner::InputRound::default()),
        None => None,
    };
    let reply = match call
        .app()
        .call_sync(
            t.as_ref(),
            &call.client,
            &n.args,
            n.now,
            round.as_ref(),
            call.logs.clone(),
        )
        .await
    {
        Ok(reply) => reply,
        Err(e) => return call_failure(e),
    };
    let result = reply.result.unwrap_or_default();
    if !crate::tools::asks_for_input(&result) {
        return Ok(CallPlan::Done(tool_result(
            Json::Object(result).to_serde(),
            None,
        )));
    }
    match &call.capabilities {
        Some(caps) => {
            let out = Json::Object(result).to_serde();
            match input::input_required(&out, caps, key, &n.binding(call), n.now) {
                Ok(asked) => Ok(CallPlan::Done(asked)),
                Err(McpError::ToolOutput(m)) => Ok(CallPlan::Done(tool_error(
                    &format!("tool_failed: {m}"),
                    None,
                ))),
                Err(e) => Err(e),
            }
        }
        None => match crate::asks::parse(&Json::Object(result).to_serde()) {
            Ok(asked) => Ok(CallPlan::Ask {
                tool: t.clone(),
                args: n.args,
                asked,
            }),
            Err(m) => Ok(CallPlan::Done(tool_error(
                &format!("tool_failed: invalid InputRequiredResult: {m}"),
                None,
            ))),
        },
    }
}

async fn call_job_tool(
    call: &Call,
    t: Arc<dyn crate::tools::JobTool>,
    n: Named<'_>,
    as_task: bool,
) -> Result<CallPlan, McpError> {
    if t.task_support() == TaskSupport::Required && !as_task {
        return Err(task_required(n.name, call.era));
    }
    // Questions declared up front are asked before anything is stored; the job is
    // accepted with the answers (MRTR first, then the task).
    let mut answers = None;
    if let (Some(asked), Some(caps)) = (t.ask_first(), &call.capabilities) {
        match declared_answers(call, &n, asked, caps)? {
            Ok(given) => answers = Some(given),
            Err(ask) => return Ok(CallPlan::Done(ask)),
        }
    }
    let opts = match n.params.get("_meta").and_then(|m| m.get(JOB_OPTIONS_META)) {
        None => JobOptions::default(),
        Some(v) => JobOptions::from_value(v).map_err(|m| {
            McpError::InvalidParams(format!("params._meta[{JOB_OPTIONS_META:?}]: {m}"))
        })?,
    };
    // The seed's explicit-handle tool keeps its contract: the handle, at once.
    let handle_only = t.name() == "start_long_task";
    match call
        .app()
        .enqueue_job(
            &t,
            &call.client,
            &n.args,
            None,
            n.now,
            answers,
            &opts,
            &call.request_id,
        )
        .await
        .inspect(|_| {
            call.enqueued
                .store(true, std::sync::atomic::Ordering::Relaxed)
        }) {
        Ok(id) if handle_only && !(as_task && call.era == Era::Legacy) => {
            Ok(CallPlan::Done(tool_result(json!({"job_id": id.0}), None)))
        }
        Ok(id) => Ok(CallPlan::Job { id, task: as_task }),
        Err(e) => call_failure(e),
    }
}

/// The answers to a job tool's declared questions (only those it asked, as JSON text),
/// or, while some are missing, the `input_required` result that asks for them.
fn declared_answers(
    call: &Call,
    n: &Named<'_>,
    asked: &Map<String, Value>,
    caps: &Value,
) -> Result<Result<String, Value>, McpError> {
    let key = call.mcp.request_state_key();
    let binding = n.binding(call);
    let round = input::read_round(n.params, caps, key, &binding, n.now)?;
    let given: Map<String, Value> = round
        .input_responses
        .as_deref()
        .and_then(|r| serde_json::from_str(r).ok())
        .unwrap_or_default();
    let missing: Map<String, Value> = asked
        .iter()
        .filter(|(k, _)| !given.contains_key(*k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !missing.is_empty() {
        let out = json!({"resultType": "input_required", "inputRequests": missing});
        return input::input_required(&out, caps, key, &binding, n.now).map(Err);
    }
    let only_asked: Map<String, Value> = given
        .into_iter()
        .filter(|(k, _)| asked.contains_key(k))
        .collect();
    Ok(Ok(Value::Object(only_asked).to_string()))
}

/// A `task_support = "required"` tool called without a task: 2026-07-28 names the missing
/// extension (-32021); 2025-11-25 answers -32601 for a call that is not task-augmented.
fn task_required(name: &str, era: Era) -> McpError {
    match era {
        Era::Modern => McpError::MissingCapability(
            format!("{TASKS_EXTENSION}: {name} runs only as a task (declare the extension in clientCapabilities.extensions)"),
            json!({"extensions": { TASKS_EXTENSION: {} }}),
        ),
        Era::Legacy => McpError::MethodNotFound(format!(
            "{name} runs only as a task (taskSupport: required): send params.task"
        )),
    }
}

/// A tool's refusal: arguments that fail the tool's schema and the tool's own failure are
/// results with `isError`, so the model sees them and can correct itself (as the
/// specification asks since 2025-11-25); limits and internal faults are protocol errors.
fn call_failure(e: crate::envelope::CallError) -> Result<CallPlan, McpError> {
    use crate::envelope::CallError as C;
    match e {
        C::Internal(_)
        | C::RateLimited(_)
        | C::QueueFull(..)
        | C::StoreUnavailable(_)
        | C::CallbackNotAllowed(_) => Err(e.into()),
        other => Ok(CallPlan::Done(tool_error(&other.wire(), None))),
    }
}
