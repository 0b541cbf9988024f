//! From an admitted JSON-RPC request to its outcome: the revision's checks, the client's
//! call rate, then the method table; `tools/call` chooses between an answer now, a task,
//! a held call, a log stream and a bridged question.
//!
//! It must not read requests or write responses: `mcp` (mod.rs) and `reply` do.

use std::sync::Arc;

use serde_json::{json, Value};

use super::call::{Call, TASKS_EXTENSION};
use super::era::check_modern;
use super::error::McpError;
use super::reply::{fail, method_label, respond, result_message};
use super::tool_call::CallPlan;
use super::{
    bridge, catalog, era_of, held, http, lifecycle, log, supported_versions, tasks, tool_call,
};
use super::{Era, Mcp, LEGACY};
use crate::http::HttpResponse;
use crate::otel::spans;

enum Reply {
    Now(Value),
    /// An SSE response already built (progress, then the result).
    Stream(HttpResponse),
}

fn progress_token(params: &Value) -> Option<Value> {
    params
        .get("_meta")
        .and_then(|m| m.get("progressToken"))
        .filter(|t| t.is_string() || t.is_i64() || t.is_u64())
        .cloned()
}

/// One admitted JSON-RPC request (not a notification, not an answer).
pub struct Request<'a> {
    pub head: hyper::Request<()>,
    pub client: String,
    pub grant: Option<Arc<crate::oauth::Grant>>,
    pub method: &'a str,
    pub id: &'a Value,
    pub params: Value,
    pub accepts: http::Accepts,
}

/// Dispatches `r` under its span, counts it, and writes its answer.
pub async fn serve(mcp: Arc<Mcp>, r: Request<'_>, message: &Value) -> HttpResponse {
    let version_header = r
        .head
        .headers()
        .get("mcp-protocol-version")
        .and_then(|v| v.to_str().ok());
    let era = era_of(version_header, message);
    let label = method_label(r.method);
    let span = tracing::info_span!(
        "mcp",
        request_id = %crate::logging::Printable(&r.id.to_string()),
        method = %label,
        client_id = %r.client,
        tool = tracing::field::Empty,
        job_id = tracing::field::Empty,
    );
    let enqueued = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The trace's server span (when on) encloses the log span, which stays the current one.
    let otel = crate::otel::enabled().then(|| request_span(&mcp, &r, label, version_header));
    let headers = otel.as_ref().and_then(spans::headers_of);
    let logged =
        tracing::Instrument::instrument(dispatch(mcp.clone(), &r, era, enqueued.clone()), span);
    let outcome = match &otel {
        None => logged.await,
        Some(o) => {
            // Boxed: inline, the traced arm would double the size of every request's future.
            let outcome = Box::pin(tracing::Instrument::instrument(
                crate::otel::scope(headers.clone(), logged),
                o.clone(),
            ))
            .await;
            end_request_span(o, &outcome);
            outcome
        }
    };
    // In the request's trace context, so its record names the trace.
    crate::otel::sync_scope(headers, || {
        audit(
            &mcp,
            &r,
            &outcome,
            enqueued.load(std::sync::atomic::Ordering::Relaxed),
        )
    });
    match outcome {
        Ok(Reply::Now(result)) => {
            metrics::counter!("mcpq_mcp_requests_total", "method" => label, "outcome" => "ok")
                .increment(1);
            respond(200, &result_message(r.id, result, era), None)
        }
        Ok(Reply::Stream(body)) => {
            metrics::counter!("mcpq_mcp_requests_total", "method" => label, "outcome" => "ok")
                .increment(1);
            body
        }
        Err(e) => {
            metrics::counter!("mcpq_mcp_requests_total", "method" => label, "outcome" => "error")
                .increment(1);
            fail(&e, r.id)
        }
    }
}

/// The request's server span (docs/TRACING.md): `{mcp.method.name} {tool}`, a child of the
/// context in `params._meta` (as the MCP conventions say), else of the `traceparent`
/// header; when both came, the header's is linked.
fn request_span(
    mcp: &Mcp,
    r: &Request<'_>,
    label: &str,
    version_header: Option<&str>,
) -> tracing::Span {
    let meta = r.params.get("_meta");
    let meta_str = |k: &str| meta.and_then(|m| m.get(k)).and_then(Value::as_str);
    let headers = r.head.headers();
    let header_str = |k: &str| headers.get(k).and_then(|v| v.to_str().ok());
    let from_meta = crate::otel::remote(meta_str("traceparent"), meta_str("tracestate"));
    let from_http = crate::otel::remote(header_str("traceparent"), header_str("tracestate"));
    let (parent, link) = match from_meta {
        Some(m) => (Some(m), from_http),
        None => (from_http, None),
    };
    // Only a tool this server has names a span: clients choose the names they send.
    let tool = (r.method == "tools/call")
        .then(|| r.params.get("name").and_then(Value::as_str))
        .flatten()
        .filter(|t| mcp.app.tools().get(t).is_some());
    let span = spans::request_span(label, tool, parent, link);
    spans::set(&span, "mcpq.endpoint", "/mcp");
    spans::set(&span, "mcpq.client.id", r.client.clone());
    match r.id {
        Value::String(s) => spans::set(&span, "jsonrpc.request.id", s.clone()),
        Value::Number(n) => spans::set(&span, "jsonrpc.request.id", n.to_string()),
        _ => {}
    }
    if let Some(v) = version_header {
        spans::set(&span, "mcp.protocol.version", v.trim().to_string());
    }
    span
}

/// The outcome on the request's server span: `error.type` is the JSON-RPC error code, or
/// `tool_error` for a tool result with `isError`.
fn end_request_span(span: &tracing::Span, outcome: &Result<Reply, McpError>) {
    match outcome {
        Ok(Reply::Now(result)) if result.get("isError") == Some(&Value::Bool(true)) => {
            spans::fail(span, "tool_error", "tool_error")
        }
        Ok(_) => {}
        Err(e) => {
            let code = e.code().to_string();
            spans::set(span, "rpc.response.status_code", code.clone());
            spans::fail(span, &code, &e.message());
        }
    }
}

/// The revision's checks (2026-07-28: `_meta` and headers; 2025: a known version header),
/// returning the capabilities a 2026-07-28 request declared.
fn check_era(
    req: &hyper::Request<()>,
    era: Era,
    method: &str,
    params: &Value,
) -> Result<Option<Value>, McpError> {
    match era {
        Era::Modern => Ok(Some(check_modern(req.headers(), method, params)?)),
        Era::Legacy => {
            if let Some(v) = req
                .headers()
                .get("mcp-protocol-version")
                .and_then(|v| v.to_str().ok())
            {
                if !LEGACY.contains(&v.trim()) {
                    return Err(McpError::InvalidRequest(format!(
                        "unsupported MCP-Protocol-Version {v:?}"
                    )));
                }
            }
            Ok(None)
        }
    }
}

/// The audit record of a request (docs/AUDIT.md): every `tools/call` (unless it stored a
/// job, whose record committed with it), and refusals before admission of any method
/// (coalesced). Other methods are reads and protocol housekeeping: not recorded.
fn audit(mcp: &Mcp, r: &Request<'_>, outcome: &Result<Reply, McpError>, enqueued: bool) {
    let audit = mcp.app.audit();
    let is_call = r.method == "tools/call";
    let refusal = matches!(outcome, Err(e) if e.is_refusal());
    if !audit.enabled() || enqueued || !(is_call || refusal) {
        return;
    }
    let tool = match is_call {
        true => r.params.get("name").and_then(Value::as_str).unwrap_or(""),
        false => "",
    };
    let args = r
        .params
        .get("arguments")
        .filter(|a| a.is_object() && is_call)
        .map(|a| crate::json::Json::from_serde(a).to_canonical());
    let request_id = rpc_id(r.id);
    let facts = crate::audit::writer::CallFacts {
        via: "mcp",
        client: &r.client,
        tool,
        args: args.as_deref(),
        request_id: &request_id,
    };
    let now = mcp.app.now_ms();
    match outcome {
        Err(e) if refusal => audit.refusal(now, &facts, e.audit_code()),
        Err(e) => audit.call(now, &facts, e.audit_code()),
        Ok(Reply::Now(result)) => audit.call(now, &facts, result_code(result)),
        Ok(Reply::Stream(_)) => audit.call(now, &facts, "ok"),
    }
}

/// A JSON-RPC id as the audit trail keeps it: a string as it is, a number as digits.
fn rpc_id(id: &Value) -> String {
    match id {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A `CallToolResult`'s outcome: `ok`, `input_required`, or the code its error text starts
/// with (`invalid_args: …`), else `tool_error`.
fn result_code(result: &Value) -> &str {
    if result.get("resultType").and_then(Value::as_str) == Some("input_required") {
        return "input_required";
    }
    if result.get("isError").and_then(Value::as_bool) != Some(true) {
        return "ok";
    }
    let text = result
        .get("content")
        .and_then(|c| c.get(0))
        .and_then(|b| b.get("text"))
        .and_then(Value::as_str)
        .unwrap_or("");
    match text.split_once(':') {
        Some((code, _))
            if !code.is_empty() && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') =>
        {
            code
        }
        _ => "tool_error",
    }
}

async fn dispatch(
    mcp: Arc<Mcp>,
    r: &Request<'_>,
    era: Era,
    enqueued: Arc<std::sync::atomic::AtomicBool>,
) -> Result<Reply, McpError> {
    let (method, id, params, accepts) = (r.method, r.id, &r.params, r.accepts);
    let capabilities = check_era(&r.head, era, method, params)?;
    let wants_tasks = capabilities
        .as_ref()
        .and_then(|c| c.get("extensions"))
        .and_then(|e| e.get(TASKS_EXTENSION))
        .is_some();
    let now = mcp.app.now_ms();
    if let Err(crate::limits::RetryAfterMs(ms)) = mcp.app.admit_call(&r.client, now) {
        return Err(McpError::RateLimited(ms));
    }
    let call = Call {
        mcp: mcp.clone(),
        client: crate::envelope::ClientId(r.client.clone()),
        grant: r.grant.clone(),
        era,
        wants_tasks,
        capabilities,
        streams: accepts.sse,
        logs: None,
        request_id: rpc_id(id),
        enqueued,
    };
    let needs_tasks = || {
        McpError::MissingCapability(
            format!(
                "{} (declare it in clientCapabilities.extensions)",
                TASKS_EXTENSION
            ),
            json!({"extensions": { TASKS_EXTENSION: {} }}),
        )
    };
    if method.starts_with("tasks/") {
        call.check_tasks_scope()?;
    }
    let result = match (era, method) {
        (Era::Legacy, "initialize") => {
            let asked = params
                .get("protocolVersion")
                .and_then(Value::as_str)
                .unwrap_or("");
            let version = if LEGACY.contains(&asked) {
                asked
            } else {
                LEGACY[0]
            };
            lifecycle::initialize_result(version)
        }
        (Era::Legacy, "ping") | (Era::Legacy, "logging/setLevel") => json!({}),
        (Era::Modern, "server/discover") => lifecycle::discover_result(&supported_versions()),
        (_, "tools/list") => catalog::list_tools(&call),
        (_, "prompts/list") => catalog::list_prompts(&call),
        (_, "resources/list") => catalog::list_resources(&call),
        (_, "resources/templates/list") => catalog::list_resource_templates(&call),
        (_, "completion/complete") => catalog::complete(&call, params)?,
        (_, "resources/read") => catalog::read_resource(&call, params)?,
        (_, "prompts/get") => catalog::get_prompt(&call, params)?,
        (_, "tools/call") => {
            let tool = params.get("name").and_then(Value::as_str).unwrap_or("");
            tracing::Span::current().record("tool", tool);
            // A tool the client may not see is unknown to it, whatever its token's scopes.
            if !call.sees(tool) {
                return Err(McpError::InvalidParams(format!("unknown tool {tool:?}")));
            }
            call.check_tool_scope(tool)?;
            return call_tool(&call, id, params, accepts).await;
        }
        (Era::Modern, "tasks/get" | "tasks/cancel" | "tasks/update") if !wants_tasks => {
            return Err(needs_tasks())
        }
        (_, "tasks/get") => tasks::tasks_get(&call, params).await?,
        (_, "tasks/cancel") => tasks::tasks_cancel(&call, params).await?,
        (Era::Modern, "tasks/update") => tasks::tasks_update(&call, params).await?,
        (Era::Legacy, "tasks/result") => tasks::tasks_result(&call, params).await?,
        (era, other) => {
            return Err(McpError::UnknownMethod(
                other.to_string(),
                era == Era::Modern,
            ))
        }
    };
    Ok(Reply::Now(result))
}

/// A tools/call: at once, as a task, or held until the job finishes. A sync tool called
/// by a client that listens for log messages runs behind a stream that carries them.
async fn call_tool(
    call: &Call,
    id: &Value,
    params: &Value,
    accepts: http::Accepts,
) -> Result<Reply, McpError> {
    if let Some(floor) = log::wanted(call, params, accepts.sse) {
        return Ok(Reply::Stream(log::stream_sync_call(
            call.clone(),
            id.clone(),
            params.clone(),
            floor,
        )));
    }
    match tool_call::call_tool(call, params).await? {
        CallPlan::Done(r) => Ok(Reply::Now(r)),
        CallPlan::Ask { tool, args, asked } => Ok(Reply::Stream(bridge::ask_over_stream(
            call, id, tool, args, asked,
        )?)),
        CallPlan::Job {
            id: job_id,
            task: true,
        } => {
            tracing::Span::current().record("job_id", job_id.0.as_str());
            Ok(Reply::Now(tasks::create_task_result(
                &job_id,
                call.app().now_ms(),
                call.app().retention_ms(),
                call.era,
            )))
        }
        CallPlan::Job {
            id: job_id,
            task: false,
        } => {
            tracing::Span::current().record("job_id", job_id.0.as_str());
            let token = progress_token(params);
            match (token, accepts.sse) {
                (Some(token), true) => Ok(Reply::Stream(held::held_with_progress(
                    call, id, job_id, token,
                ))),
                _ => {
                    // Without a stream the request future itself is the call: dropped when
                    // the client leaves, so nothing waits for a caller that left.
                    let _held = held::HeldCall::new();
                    let job = tasks::wait_finished(
                        call,
                        &job_id,
                        call.mcp.held_poll,
                        std::future::pending(),
                        |_| true,
                    )
                    .await?;
                    let r = tasks::job_result(&job)
                        .ok_or_else(|| McpError::Internal("job ended unfinished".into()))?;
                    Ok(Reply::Now(r))
                }
            }
        }
    }
}
