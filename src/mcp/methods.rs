//! The JSON-RPC methods of `/mcp`, on the one tool registry and the one job store:
//! lifecycle (`initialize`, `ping`, `server/discover`), `tools/list`, `tools/call` (sync
//! tools answer at once; job tools become durable jobs: a task when the client asked for
//! one, else a held request that streams progress and answers with the result), and the
//! tasks methods (`tasks/get`, `tasks/result`, `tasks/cancel`, `tasks/list`), where a task
//! is a job: the same row, the same id, the same client isolation as `/v1/call`.
//!
//! It must not speak HTTP: `mcp` (mod.rs) reads requests and writes responses.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::error::McpError;
use super::input;
use super::Era;
use crate::jobs::{JobId, JobState};
use crate::json::{Json, Object};
use crate::protocol::ClientId;
use crate::server::App;
use crate::store::{AnswerOutcome, CancelOutcome, JobRecord};
use crate::tools::{TaskSupport, Tool};

/// Tasks extension id (2026-07-28) and the related-task `_meta` key.
pub const TASKS_EXTENSION: &str = "io.modelcontextprotocol/tasks";
pub const RELATED_TASK: &str = "io.modelcontextprotocol/related-task";
/// Where a held call names its durable job, in progress messages' and results' `_meta`.
pub const JOB_META: &str = "io.mcpq/job_id";
/// A held call or `tasks/result` re-reads its job at most this far apart; one streaming
/// progress does so at most [`PROGRESS_POLL`] apart, so that progress steps are not skipped.
pub const RESULT_POLL: Duration = Duration::from_millis(250);
pub const PROGRESS_POLL: Duration = Duration::from_millis(100);
/// How often a client should poll a task.
const POLL_INTERVAL_MS: u64 = 1000;

/// One request's context: who asked, in which era, with which declared capabilities.
#[derive(Clone)]
pub struct Call {
    pub app: Arc<App>,
    pub client: ClientId,
    pub era: Era,
    pub wants_tasks: bool,
    /// The client capabilities a 2026-07-28 request declared; `None` in 2025-11-25.
    pub capabilities: Option<Value>,
    /// The client accepts an SSE answer (a 2025-11-25 tool may then ask it questions).
    pub streams: bool,
    /// Where a sync tool's log messages go while the call's stream is open.
    pub logs: Option<crate::tools::LogSink>,
}

fn str_param<'a>(params: &'a Value, key: &str) -> Result<&'a str, McpError> {
    params
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| McpError::InvalidParams(format!("{key} must be a string")))
}

pub fn server_info() -> Value {
    json!({"name": "mcpq", "title": "mcpq tool-call daemon", "version": env!("CARGO_PKG_VERSION")})
}

pub fn capabilities(era: Era) -> Value {
    match era {
        Era::Legacy => json!({
            "tools": {"listChanged": false},
            "prompts": {"listChanged": false},
            "resources": {"listChanged": false},
            "completions": {},
            // No `list`: listing a client's jobs would walk the whole table.
            "tasks": {"cancel": {}, "requests": {"tools": {"call": {}}}},
        }),
        Era::Modern => json!({
            "tools": {},
            "prompts": {},
            "resources": {},
            "completions": {},
            "extensions": { TASKS_EXTENSION: {} },
        }),
    }
}

const INSTRUCTIONS: &str = "Tools of this daemon. Long tools run as durable jobs: ask for a task, \
or wait for the result (send a progressToken to get progress, whose first message names the job).";

/// `tools/list`: every tool of the registry, in name order.
pub fn list_tools(call: &Call) -> Value {
    let registry = call.app.registry();
    let mut tools: Vec<Value> = Vec::new();
    for t in registry.iter() {
        let (name, description, input, output, job, task_support) = match t {
            Tool::Sync(s) => (
                s.name(),
                s.description(),
                s.input_schema(),
                s.output_schema(),
                false,
                "forbidden",
            ),
            Tool::Job(j) => (
                j.name(),
                j.description(),
                j.input_schema(),
                j.output_schema(),
                true,
                match j.task_support() {
                    // The seed's explicit-handle tool answers with its handle at once.
                    _ if j.name() == "start_long_task" => "forbidden",
                    TaskSupport::Optional => "optional",
                    TaskSupport::Required => "required",
                },
            ),
        };
        let mut tool = json!({
            "name": name,
            "description": description,
            "inputSchema": input,
            "annotations": {"readOnlyHint": !job && is_read_only(name), "openWorldHint": job},
        });
        if let Some(o) = output {
            tool["outputSchema"] = o;
        }
        if call.era == Era::Legacy {
            // 2025-11-25 only; the 2026 schema has no `execution`.
            tool["execution"] = json!({"taskSupport": task_support});
        }
        tools.push(tool);
    }
    tools.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    let mut r = json!({ "tools": tools });
    if call.era == Era::Modern {
        // Tools change only with a reload; a client may keep the list a minute.
        r["ttlMs"] = json!(60_000);
        r["cacheScope"] = json!("public");
    }
    r
}

/// `resources/list`: the configured static resources (`[resources.NAME]`), in name order.
pub fn list_resources(call: &Call) -> Value {
    let registry = call.app.registry();
    let resources: Vec<Value> = registry
        .resources()
        .iter()
        .filter(|r| !r.template)
        .map(|r| {
            let mut v = json!({"uri": r.uri, "name": r.name, "mimeType": r.mime_type});
            if let Some(d) = &r.description {
                v["description"] = json!(d);
            }
            v
        })
        .collect();
    let mut out = json!({ "resources": resources });
    if call.era == Era::Modern {
        // Resources change only with a reload, as tools do.
        out["ttlMs"] = json!(60_000);
        out["cacheScope"] = json!("public");
    }
    out
}

/// `prompts/list`: the configured prompt templates (`[prompts.NAME]`), in name order.
pub fn list_prompts(call: &Call) -> Value {
    let registry = call.app.registry();
    let prompts: Vec<Value> = registry
        .prompts()
        .iter()
        .map(|p| {
            let args: Vec<Value> = p
                .arguments
                .iter()
                .map(|a| {
                    let mut v = json!({"name": a.name, "required": a.required});
                    if let Some(d) = &a.description {
                        v["description"] = json!(d);
                    }
                    v
                })
                .collect();
            json!({"name": p.name, "description": p.description, "arguments": args})
        })
        .collect();
    let mut out = json!({ "prompts": prompts });
    if call.era == Era::Modern {
        out["ttlMs"] = json!(60_000);
        out["cacheScope"] = json!("public");
    }
    out
}

/// `prompts/get`: a configured prompt's messages with its arguments filled in.
pub fn get_prompt(call: &Call, params: &Value) -> Result<Value, McpError> {
    let name = params.get("name").cloned().unwrap_or(Value::Null);
    let registry = call.app.registry();
    let Some(p) = name
        .as_str()
        .and_then(|n| registry.prompts().iter().find(|p| p.name == n))
    else {
        return Err(McpError::NotFound("prompt", name));
    };
    let args = match params.get("arguments") {
        None | Some(Value::Null) => serde_json::Map::new(),
        Some(Value::Object(o)) => o.clone(),
        Some(_) => {
            return Err(McpError::InvalidParams(
                "arguments must be an object".into(),
            ))
        }
    };
    let messages = p.render(&args).map_err(McpError::InvalidParams)?;
    Ok(json!({"description": p.description, "messages": messages}))
}

/// `resources/templates/list`: the configured `uri_template` resources.
pub fn list_resource_templates(call: &Call) -> Value {
    let registry = call.app.registry();
    let templates: Vec<Value> = registry
        .resources()
        .iter()
        .filter(|r| r.template)
        .map(|r| {
            let mut v = json!({"uriTemplate": r.uri, "name": r.name, "mimeType": r.mime_type});
            if let Some(d) = &r.description {
                v["description"] = json!(d);
            }
            v
        })
        .collect();
    let mut out = json!({ "resourceTemplates": templates });
    if call.era == Era::Modern {
        out["ttlMs"] = json!(60_000);
        out["cacheScope"] = json!("public");
    }
    out
}

/// `completion/complete`: the values a prompt argument declares (`completions`) that start
/// with what the user typed (case-insensitive), at most 100. Resource templates declare none.
pub fn complete(call: &Call, params: &Value) -> Result<Value, McpError> {
    let kind = params["ref"]["type"].as_str().unwrap_or("");
    let arg = params["argument"]["name"]
        .as_str()
        .ok_or_else(|| McpError::InvalidParams("argument.name must be a string".into()))?;
    let typed = params["argument"]["value"]
        .as_str()
        .unwrap_or("")
        .to_lowercase();
    let registry = call.app.registry();
    let values: Vec<&String> = match kind {
        "ref/prompt" => {
            let name = params["ref"]["name"].clone();
            let p = registry
                .prompts()
                .iter()
                .find(|p| Some(p.name.as_str()) == name.as_str())
                .ok_or(McpError::NotFound("prompt", name))?;
            let a = p.arguments.iter().find(|a| a.name == arg).ok_or_else(|| {
                McpError::InvalidParams(format!("prompt {:?} has no argument {arg:?}", p.name))
            })?;
            a.completions
                .iter()
                .filter(|v| v.to_lowercase().starts_with(&typed))
                .collect()
        }
        "ref/resource" => {
            let uri = params["ref"]["uri"].clone();
            if !registry
                .resources()
                .iter()
                .any(|r| r.template && Some(r.uri.as_str()) == uri.as_str())
            {
                return Err(McpError::NotFound("resource", uri));
            }
            Vec::new()
        }
        other => {
            return Err(McpError::InvalidParams(format!(
                "ref.type {other:?} is not ref/prompt or ref/resource"
            )))
        }
    };
    let total = values.len();
    let shown: Vec<&String> = values.into_iter().take(100).collect();
    Ok(json!({"completion": {"values": shown, "total": total, "hasMore": total > 100}}))
}

/// `resources/read` of a configured resource: its text, or its bytes base64-encoded; a
/// `uri_template` resource's text with the URI's variables filled in.
pub fn read_resource(call: &Call, params: &Value) -> Result<Value, McpError> {
    use crate::config::resources::ResourceContent;
    use base64::Engine;
    let uri = params.get("uri").cloned().unwrap_or(Value::Null);
    let registry = call.app.registry();
    let found = uri.as_str().and_then(|u| {
        let resources = registry.resources();
        resources
            .iter()
            .find(|r| !r.template && r.uri == u)
            .map(|r| (r, None))
            .or_else(|| {
                resources
                    .iter()
                    .find_map(|r| r.matches(u).map(|v| (r, Some(v))))
            })
    });
    let Some((r, vars)) = found else {
        return Err(McpError::NotFound("resource", uri));
    };
    let mut content = json!({"uri": uri, "mimeType": r.mime_type});
    match &r.content {
        ResourceContent::Text(t) => {
            content["text"] = match &vars {
                Some(v) => json!(crate::config::prompts::substitute(t, v)),
                None => json!(t),
            }
        }
        ResourceContent::Blob(b) => {
            content["blob"] = json!(base64::engine::general_purpose::STANDARD.encode(b))
        }
    }
    let mut out = json!({ "contents": [content] });
    if call.era == Era::Modern {
        // The same for every client, and changed only by a reload.
        out["ttlMs"] = json!(60_000);
        out["cacheScope"] = json!("public");
    }
    Ok(out)
}

fn is_read_only(name: &str) -> bool {
    matches!(name, "poll_job" | "server_identity" | "batch_sum")
}

/// Content block types a tool may return as they are (see [`passthrough`]).
const CONTENT_TYPES: [&str; 5] = ["text", "image", "audio", "resource", "resource_link"];

/// A result that is exactly `{"content": [blocks]}`, each block an object with an MCP
/// content `type`, is MCP content already (images, audio, embedded resources): it is
/// passed as it is instead of being wrapped as JSON text.
fn passthrough(result: &Value) -> Option<&Vec<Value>> {
    let o = result.as_object()?;
    if o.len() != 1 {
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
    if let Some(blocks) = passthrough(&result) {
        let mut r = json!({"content": blocks, "isError": false});
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
    let registry = call.app.registry();
    let now = call.app.now_ms();
    match registry.get(name) {
        None => Err(McpError::InvalidParams(format!("unknown tool {name:?}"))),
        Some(Tool::Sync(t)) => {
            if as_task && call.era == Era::Legacy {
                return Err(McpError::MethodNotFound(format!(
                    "{name} answers at once; it cannot run as a task (taskSupport: forbidden)"
                )));
            }
            let binding = input::Binding {
                tool: name,
                client: &call.client.0,
                args: &args,
            };
            let key = call.app.request_state_key();
            // 2025-11-25 has no multi-round calls (its server-to-client requests need a
            // session): without a round, a tool that asks is refused by the tool layer.
            let round = match &call.capabilities {
                Some(caps) => Some(input::read_round(params, caps, key, &binding, now)?),
                // 2025-11-25 over SSE: questions are bridged to server-to-client requests.
                None if call.streams => Some(crate::tools::runner::InputRound::default()),
                None => None,
            };
            let reply = match call
                .app
                .call_sync(
                    t.as_ref(),
                    &call.client,
                    &args,
                    now,
                    round.as_ref(),
                    call.logs.clone(),
                )
                .await
            {
                Ok(reply) => reply,
                Err(e) => return call_failure(e),
            };
            let result = reply.result.unwrap_or_default();
            match &call.capabilities {
                Some(caps) if crate::tools::asks_for_input(&result) => {
                    let out = Json::Object(result).to_serde();
                    match input::input_required(&out, caps, key, &binding, now) {
                        Ok(asked) => Ok(CallPlan::Done(asked)),
                        Err(McpError::ToolOutput(m)) => Ok(CallPlan::Done(tool_error(
                            &format!("tool_failed: {m}"),
                            None,
                        ))),
                        Err(e) => Err(e),
                    }
                }
                None if crate::tools::asks_for_input(&result) => {
                    match crate::asks::parse(&Json::Object(result).to_serde()) {
                        Ok(asked) => Ok(CallPlan::Ask {
                            tool: t.clone(),
                            args,
                            asked,
                        }),
                        Err(m) => Ok(CallPlan::Done(tool_error(
                            &format!("tool_failed: invalid InputRequiredResult: {m}"),
                            None,
                        ))),
                    }
                }
                _ => Ok(CallPlan::Done(tool_result(
                    Json::Object(result).to_serde(),
                    None,
                ))),
            }
        }
        Some(Tool::Job(t)) => {
            let t = t.clone();
            if t.task_support() == TaskSupport::Required && !as_task {
                return Err(task_required(name, call.era));
            }
            // Questions declared up front are asked before anything is stored; the job is
            // accepted with the answers (MRTR first, then the task).
            let mut answers = None;
            if let (Some(asked), Some(caps)) = (t.ask_first(), &call.capabilities) {
                let binding = input::Binding {
                    tool: name,
                    client: &call.client.0,
                    args: &args,
                };
                let key = call.app.request_state_key();
                let round = input::read_round(params, caps, key, &binding, now)?;
                let given: serde_json::Map<String, Value> = round
                    .input_responses
                    .as_deref()
                    .and_then(|r| serde_json::from_str(r).ok())
                    .unwrap_or_default();
                let missing: serde_json::Map<String, Value> = asked
                    .iter()
                    .filter(|(k, _)| !given.contains_key(*k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                if !missing.is_empty() {
                    let out = json!({"resultType": "input_required", "inputRequests": missing});
                    return input::input_required(&out, caps, key, &binding, now)
                        .map(CallPlan::Done);
                }
                let only_asked: serde_json::Map<String, Value> = given
                    .into_iter()
                    .filter(|(k, _)| asked.contains_key(k))
                    .collect();
                answers = Some(Value::Object(only_asked).to_string());
            }
            // The seed's explicit-handle tool keeps its contract: the handle, at once.
            let handle_only = t.name() == "start_long_task";
            match call
                .app
                .enqueue_job(&t, &call.client, &args, None, now, answers)
                .await
            {
                Ok(id) if handle_only && !(as_task && call.era == Era::Legacy) => {
                    Ok(CallPlan::Done(tool_result(json!({"job_id": id.0}), None)))
                }
                Ok(id) => Ok(CallPlan::Job { id, task: as_task }),
                Err(e) => call_failure(e),
            }
        }
    }
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
fn call_failure(e: crate::protocol::CallError) -> Result<CallPlan, McpError> {
    use crate::protocol::CallError as C;
    match e {
        C::Internal(_) | C::RateLimited(_) | C::QueueFull(..) => Err(e.into()),
        other => Ok(CallPlan::Done(tool_error(&other.wire(), None))),
    }
}

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

fn status_message(job: &JobRecord) -> Option<String> {
    match job.state {
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
pub fn task_of(job: &JobRecord, ttl_ms: u64, era: Era) -> Value {
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
    if let Some(m) = status_message(job) {
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
    call.app
        .store()
        .get_job(&call.client, id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| McpError::InvalidParams(format!("no task {:?}", id.0)))
}

pub async fn tasks_get(call: &Call, params: &Value) -> Result<Value, McpError> {
    let job = get_job(call, &task_id(params)?).await?;
    let mut t = task_of(&job, call.app.retention_ms(), call.era);
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

/// Waits for a job to finish (polling its row, at most `max_delay` apart: workers may be
/// other processes), calling `on_progress` whenever its progress changes. Returns the
/// finished row.
pub async fn wait_finished(
    call: &Call,
    id: &JobId,
    max_delay: Duration,
    mut on_progress: impl FnMut(&JobRecord) -> bool,
) -> Result<JobRecord, McpError> {
    let mut delay = Duration::from_millis(20);
    let mut last_progress: Option<String> = None;
    loop {
        let job = get_job(call, id).await?;
        // A job waiting for input waits for a task client: nothing to wait for here.
        if job.state.is_terminal() || job.state == JobState::AwaitingInput {
            return Ok(job);
        }
        if job.progress != last_progress {
            last_progress = job.progress.clone();
            if !on_progress(&job) {
                // The client went away: the job runs on; nothing to wait for.
                return Ok(job);
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(max_delay);
    }
}

pub async fn tasks_result(call: &Call, params: &Value) -> Result<Value, McpError> {
    let id = task_id(params)?;
    let job = wait_finished(call, &id, RESULT_POLL, |_| true).await?;
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
    let now = call.app.now_ms();
    match call
        .app
        .store()
        .answer_input(&call.client, &id, &answers, now)
        .await
        .map_err(store_error)?
    {
        AnswerOutcome::NotFound => Err(McpError::InvalidParams(format!("no task {:?}", id.0))),
        _ => Ok(json!({})),
    }
}

pub async fn tasks_cancel(call: &Call, params: &Value) -> Result<Value, McpError> {
    let id = task_id(params)?;
    let now = call.app.now_ms();
    let outcome = call
        .app
        .store()
        .cancel(&call.client, &id, now)
        .await
        .map_err(store_error)?;
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
            let mut t = task_of(&job, call.app.retention_ms(), Era::Legacy);
            // A running job stops at its worker's next heartbeat; for the client it is
            // cancelled now (its result will say so).
            t["status"] = json!("cancelled");
            Ok(t)
        }
    }
}

fn store_error(e: crate::store::StoreError) -> McpError {
    match crate::protocol::CallError::internal("store error", &e) {
        crate::protocol::CallError::Internal(r) => McpError::Internal(r),
        other => McpError::Internal(other.wire()),
    }
}

/// `notifications/progress` for a held call.
pub fn progress_notification(token: &Value, job: &JobRecord, first: bool) -> Value {
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
        status_message(job).unwrap_or_default()
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

pub fn initialize_result(version: &str) -> Value {
    json!({
        "protocolVersion": version,
        "capabilities": capabilities(Era::Legacy),
        "serverInfo": server_info(),
        "instructions": INSTRUCTIONS,
    })
}

/// `server/discover` (2026-07-28).
pub fn discover_result(supported: &[&str]) -> Value {
    json!({
        "supportedVersions": supported,
        "capabilities": capabilities(Era::Modern),
        "instructions": INSTRUCTIONS,
        "ttlMs": 60_000,
        "cacheScope": "public",
    })
}
