//! Standard MCP at `POST /mcp`: JSON-RPC 2.0 over Streamable HTTP, serving the one tool
//! registry to off-the-shelf MCP clients, without sessions.
//!
//! Two protocol eras share the endpoint, chosen per request as the specification's
//! reference server does ([`era_of`]): the stateless **2026-07-28** revision (per-request
//! `_meta` with version and client capabilities, `server/discover`, `Mcp-Method`/`Mcp-Name`
//! headers checked against the body, `resultType` on every result) and **2025-11-25**
//! (`initialize`, `notifications/initialized`, `ping`). Authentication is a bearer token
//! per client ([`crate::auth::Authenticator::bearer`]), the same client identity as the
//! signed envelope, so a job started here is that client's on `/v1/call` too. Every limit
//! of `/v1/call` holds: body cap and timeout, strict JSON, rate and queue limits.
//!
//! Layout: `http` (who gets in: method, Host/Origin, token, headers; the SSE body),
//! `methods` (what each JSON-RPC method does), `input` (multi-round calls: sealed
//! `requestState`, capability checks), `bridge` (a tool's questions to a 2025-11-25 client
//! over the call's stream), `log` (a tool's log messages on the call's stream), `error`
//! (every failure, one code each).
//!
//! It must not run tools or touch the store itself: it goes through `server::App`, as
//! `/v1/call` does.

pub mod bridge;
pub mod error;
pub mod http;
pub mod input;
mod log;
pub mod methods;

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Request};
use serde_json::{json, Value};

use self::error::McpError;
use self::methods::{Call, CallPlan};
use crate::server::{App, HttpResponse};

/// The stateless revision.
pub const MODERN: &str = "2026-07-28";
/// Revisions served with the `initialize` handshake (the newest first).
pub const LEGACY: [&str; 3] = ["2025-11-25", "2025-06-18", "2025-03-26"];
const VERSION_KEY: &str = "io.modelcontextprotocol/protocolVersion";
const CAPABILITIES_KEY: &str = "io.modelcontextprotocol/clientCapabilities";
const SERVER_INFO_KEY: &str = "io.modelcontextprotocol/serverInfo";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Era {
    /// 2025-11-25 and before.
    Legacy,
    /// 2026-07-28.
    Modern,
}

pub fn supported_versions() -> Vec<&'static str> {
    let mut v = vec![MODERN];
    v.extend(LEGACY);
    v
}

fn header<'a>(headers: &'a hyper::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A 2025-or-earlier version header, or neither header nor a version in `_meta`: the
/// handshake era. Anything else is 2026-07-28 (an unknown version is then refused with
/// -32022). `_meta` alone does not make a request modern: 2025 clients send
/// `_meta.progressToken`.
pub fn era_of(version_header: Option<&str>, body: &Value) -> Era {
    match version_header.map(str::trim) {
        Some(v) if LEGACY.contains(&v) => Era::Legacy,
        Some(_) => Era::Modern,
        None => {
            let meta_version = body
                .get("params")
                .and_then(|p| p.get("_meta"))
                .and_then(|m| m.get(VERSION_KEY));
            if meta_version.is_some() {
                Era::Modern
            } else {
                Era::Legacy
            }
        }
    }
}

/// `=?base64?…?=` header values decode to their UTF-8 text; others are taken as sent.
fn header_value(v: &str) -> Option<String> {
    let v = v.trim();
    match v
        .strip_prefix("=?base64?")
        .and_then(|r| r.strip_suffix("?="))
    {
        Some(b64) => {
            use base64::Engine;
            let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
            String::from_utf8(bytes).ok()
        }
        None => Some(v.to_string()),
    }
}

/// The 2026-07-28 request checks, in the order the specification's probes need: `_meta`
/// fields, version header against `_meta`, version supported, `Mcp-Method`/`Mcp-Name`.
/// Returns the client capabilities the request declared.
fn check_modern(req: &hyper::HeaderMap, method: &str, params: &Value) -> Result<Value, McpError> {
    let meta = params
        .get("_meta")
        .and_then(Value::as_object)
        .ok_or_else(|| {
            McpError::BadMeta(
                "params._meta is required (protocol version, client capabilities)".into(),
            )
        })?;
    let version = meta
        .get(VERSION_KEY)
        .and_then(Value::as_str)
        .ok_or_else(|| McpError::BadMeta(format!("params._meta[{VERSION_KEY:?}] is required")))?;
    let caps = meta
        .get(CAPABILITIES_KEY)
        .and_then(Value::as_object)
        .ok_or_else(|| {
            McpError::BadMeta(format!("params._meta[{CAPABILITIES_KEY:?}] is required"))
        })?;
    match header(req, "mcp-protocol-version").map(str::trim) {
        Some(h) if h == version => {}
        Some(h) => {
            return Err(McpError::HeaderMismatch(format!(
                "MCP-Protocol-Version header {h:?} does not match the body's {version:?}"
            )))
        }
        None => {
            return Err(McpError::HeaderMismatch(
                "the MCP-Protocol-Version header is required".into(),
            ))
        }
    }
    if version != MODERN {
        return Err(McpError::UnsupportedVersion {
            requested: version.to_string(),
            supported: supported_versions(),
        });
    }
    match header(req, "mcp-method").map(str::trim) {
        Some(h) if h == method => {}
        Some(h) => {
            return Err(McpError::HeaderMismatch(format!(
                "Mcp-Method header {h:?} does not match the body's {method:?}"
            )))
        }
        None => {
            return Err(McpError::HeaderMismatch(
                "the Mcp-Method header is required".into(),
            ))
        }
    }
    let named = match method {
        "tools/call" | "prompts/get" => params.get("name"),
        "resources/read" => params.get("uri"),
        "tasks/get" | "tasks/update" | "tasks/cancel" => params.get("taskId"),
        _ => None,
    };
    if let Some(body_name) = named.and_then(Value::as_str) {
        match header(req, "mcp-name").and_then(header_value) {
            Some(h) if h == body_name => {}
            Some(h) => {
                return Err(McpError::HeaderMismatch(format!(
                    "Mcp-Name header {h:?} does not match the body's {body_name:?}"
                )))
            }
            None => {
                return Err(McpError::HeaderMismatch(
                    "the Mcp-Name header is required".into(),
                ))
            }
        }
    }
    Ok(Value::Object(caps.clone()))
}

/// Builds the HTTP answer for a JSON-RPC message (or an error without one).
fn respond(status: u16, message: &Value, retry_after_ms: Option<u64>) -> HttpResponse {
    let mut r = crate::server::json_response(status, message.to_string());
    if let Some(ms) = retry_after_ms {
        if let Ok(v) = HeaderValue::from_str(&ms.div_ceil(1000).max(1).to_string()) {
            r.headers_mut().insert(hyper::header::RETRY_AFTER, v);
        }
    }
    r
}

fn fail(e: &McpError, id: &Value) -> HttpResponse {
    let mut r = respond(e.http_status(), &e.to_jsonrpc(id), e.retry_after_ms());
    if matches!(e, McpError::Unauthorized) {
        r.headers_mut().insert(
            HeaderName::from_static("www-authenticate"),
            HeaderValue::from_static(r#"Bearer realm="mcpq", error="invalid_token""#),
        );
    }
    if matches!(e, McpError::MethodNotAllowed) {
        r.headers_mut()
            .insert(hyper::header::ALLOW, HeaderValue::from_static("POST"));
    }
    r
}

fn accepted() -> HttpResponse {
    let mut r = crate::server::json_response(202, String::new());
    r.headers_mut().remove(hyper::header::CONTENT_TYPE);
    r
}

/// A result in its era's envelope: 2026-07-28 results carry `resultType` and the server's
/// identity in `_meta`.
pub(crate) fn result_message(id: &Value, mut result: Value, era: Era) -> Value {
    if era == Era::Modern {
        if result.get("resultType").is_none() {
            result["resultType"] = json!("complete");
        }
        if !result.get("_meta").is_some_and(Value::is_object) {
            result["_meta"] = json!({});
        }
        result["_meta"][SERVER_INFO_KEY] =
            json!({"name": "mcpq", "version": env!("CARGO_PKG_VERSION")});
    }
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

fn method_label(m: &str) -> &'static str {
    match m {
        "initialize" => "initialize",
        "ping" => "ping",
        "server/discover" => "server/discover",
        "tools/list" => "tools/list",
        "tools/call" => "tools/call",
        "tasks/get" => "tasks/get",
        "tasks/result" => "tasks/result",
        "tasks/cancel" => "tasks/cancel",
        "tasks/list" => "tasks/list",
        "tasks/update" => "tasks/update",
        "prompts/list" => "prompts/list",
        "resources/list" => "resources/list",
        "resources/templates/list" => "resources/templates/list",
        _ => "other",
    }
}

/// Serves one request to `/mcp`.
pub async fn handle(app: Arc<App>, req: Request<Incoming>) -> HttpResponse {
    let null = Value::Null;
    if req.method() != Method::POST {
        return fail(&McpError::MethodNotAllowed, &null);
    }
    if let Err(e) = app.origin_policy().check(req.headers()) {
        return fail(&e, &null);
    }
    let client = match http::bearer(req.headers()) {
        Some(token) => app.bearer_client(token),
        // No credentials at all: the configured anonymous client, if any (loopback only).
        None if !req.headers().contains_key(hyper::header::AUTHORIZATION) => app.anonymous_client(),
        None => None,
    };
    let Some(client) = client else {
        metrics::counter!(crate::telemetry::AUTH_FAILURES, "reason" => "bad_token").increment(1);
        return fail(&McpError::Unauthorized, &null);
    };
    if !http::json_content_type(&req) {
        return fail(&McpError::UnsupportedMediaType, &null);
    }
    let accepts = match http::accepts(req.headers()) {
        Ok(a) => a,
        Err(e) => return fail(&e, &null),
    };
    let (parts, body) = req.into_parts();
    let req_head = Request::from_parts(parts, ());
    let body = match app.read_mcp_body(body).await {
        Ok(b) => b,
        Err(e) => return fail(&McpError::from(e), &null),
    };
    let message = match crate::json::parse(&body) {
        Ok(v) => v.to_serde(),
        Err(e) => return fail(&McpError::Parse(e.to_string()), &null),
    };
    let Some(obj) = message.as_object() else {
        return fail(
            &McpError::InvalidRequest(
                "a single JSON-RPC message object is expected (no batches)".into(),
            ),
            &null,
        );
    };
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return fail(
            &McpError::InvalidRequest("jsonrpc must be \"2.0\"".into()),
            obj.get("id").unwrap_or(&null),
        );
    }
    let Some(method) = obj.get("method").and_then(Value::as_str) else {
        // A client's answer to a question a tool asked it over SSE (`bridge`); anything
        // else that looks like a response is accepted and ignored.
        if obj.contains_key("result") || obj.contains_key("error") {
            app.pending_answers().deliver(&client, obj);
            return accepted();
        }
        return fail(
            &McpError::InvalidRequest("method is required".into()),
            obj.get("id").unwrap_or(&null),
        );
    };
    let Some(id) = obj.get("id").cloned() else {
        // A notification (notifications/initialized, notifications/cancelled, …).
        return accepted();
    };
    if !(id.is_string() || id.is_i64() || id.is_u64()) {
        return fail(
            &McpError::InvalidRequest("id must be a string or an integer".into()),
            &null,
        );
    }
    let params = obj.get("params").cloned().unwrap_or_else(|| json!({}));
    let req = req_head.map(|_| ());
    let version_header = req
        .headers()
        .get("mcp-protocol-version")
        .and_then(|v| v.to_str().ok());
    let era = era_of(version_header, &message);
    let span = tracing::info_span!(
        "mcp",
        request_id = %crate::logging::Printable(&id.to_string()),
        method = %method_label(method),
        client_id = %client,
        tool = tracing::field::Empty,
        job_id = tracing::field::Empty,
    );
    let outcome = tracing::Instrument::instrument(
        dispatch(
            app.clone(),
            &req,
            client,
            era,
            method,
            &id,
            &params,
            accepts,
        ),
        span,
    )
    .await;
    let label = method_label(method);
    match outcome {
        Ok(Reply::Now(result)) => {
            metrics::counter!("mcpq_mcp_requests_total", "method" => label, "outcome" => "ok")
                .increment(1);
            respond(200, &result_message(&id, result, era), None)
        }
        Ok(Reply::Stream(body)) => {
            metrics::counter!("mcpq_mcp_requests_total", "method" => label, "outcome" => "ok")
                .increment(1);
            body
        }
        Err(e) => {
            metrics::counter!("mcpq_mcp_requests_total", "method" => label, "outcome" => "error")
                .increment(1);
            fail(&e, &id)
        }
    }
}

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

#[allow(clippy::too_many_arguments)]
async fn dispatch(
    app: Arc<App>,
    req: &Request<()>,
    client: String,
    era: Era,
    method: &str,
    id: &Value,
    params: &Value,
    accepts: http::Accepts,
) -> Result<Reply, McpError> {
    let capabilities = match era {
        Era::Modern => Some(check_modern(req.headers(), method, params)?),
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
            None
        }
    };
    let wants_tasks = capabilities
        .as_ref()
        .and_then(|c| c.get("extensions"))
        .and_then(|e| e.get(methods::TASKS_EXTENSION))
        .is_some();
    let now = app.now_ms();
    if let Err(crate::limits::RetryAfterMs(ms)) = app.admit_call(&client, now) {
        return Err(McpError::RateLimited(ms));
    }
    let call = Call {
        app: app.clone(),
        client: crate::protocol::ClientId(client),
        era,
        wants_tasks,
        capabilities,
        streams: accepts.sse,
        logs: None,
    };
    let needs_tasks = || {
        McpError::MissingCapability(
            format!(
                "{} (declare it in clientCapabilities.extensions)",
                methods::TASKS_EXTENSION
            ),
            json!({"extensions": { methods::TASKS_EXTENSION: {} }}),
        )
    };
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
            methods::initialize_result(version)
        }
        (Era::Legacy, "ping") | (Era::Legacy, "logging/setLevel") => json!({}),
        (Era::Modern, "server/discover") => methods::discover_result(&supported_versions()),
        (_, "tools/list") => methods::list_tools(&call),
        (_, "prompts/list") => methods::list_prompts(&call),
        (_, "resources/list") => methods::list_resources(&call),
        (_, "resources/templates/list") => methods::list_resource_templates(&call),
        (_, "completion/complete") => methods::complete(&call, params)?,
        (_, "resources/read") => methods::read_resource(&call, params)?,
        (_, "prompts/get") => methods::get_prompt(&call, params)?,
        (_, "tools/call") => {
            tracing::Span::current().record(
                "tool",
                params.get("name").and_then(Value::as_str).unwrap_or(""),
            );
            return call_tool(&call, id, params, accepts).await;
        }
        (Era::Modern, "tasks/get" | "tasks/cancel" | "tasks/update") if !wants_tasks => {
            return Err(needs_tasks())
        }
        (_, "tasks/get") => methods::tasks_get(&call, params).await?,
        (_, "tasks/cancel") => methods::tasks_cancel(&call, params).await?,
        (Era::Modern, "tasks/update") => methods::tasks_update(&call, params).await?,
        (Era::Legacy, "tasks/result") => methods::tasks_result(&call, params).await?,
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
    match methods::call_tool(call, params).await? {
        CallPlan::Done(r) => Ok(Reply::Now(r)),
        CallPlan::Ask { tool, args, asked } => Ok(Reply::Stream(bridge::ask_over_stream(
            call, id, tool, args, asked,
        ))),
        CallPlan::Job {
            id: job_id,
            task: true,
        } => {
            tracing::Span::current().record("job_id", job_id.0.as_str());
            Ok(Reply::Now(methods::create_task_result(
                &job_id,
                call.app.now_ms(),
                call.app.retention_ms(),
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
                (Some(token), true) => {
                    Ok(Reply::Stream(held_with_progress(call, id, job_id, token)))
                }
                _ => {
                    let job = methods::wait_finished(call, &job_id, methods::RESULT_POLL, |_| true)
                        .await?;
                    let r = methods::job_result(&job)
                        .ok_or_else(|| McpError::Internal("job ended unfinished".into()))?;
                    Ok(Reply::Now(r))
                }
            }
        }
    }
}

/// Holds a long call open as server-sent events: a progress notification naming the job
/// (so a client that loses the connection can still poll it), one per progress change,
/// then the result. The job does not depend on the stream: it runs to the end whatever
/// happens to the connection.
fn held_with_progress(
    call: &Call,
    id: &Value,
    job_id: crate::jobs::JobId,
    token: Value,
) -> HttpResponse {
    let (tx, body) = http::SseBody::channel();
    let call = call.clone();
    let id = id.clone();
    tokio::spawn(async move {
        let mut first = true;
        let mut last = 0.0f64;
        let sent = methods::wait_finished(&call, &job_id, methods::PROGRESS_POLL, |job| {
            let mut n = methods::progress_notification(&token, job, first);
            // Progress must increase: never report less than before.
            let p = n["params"]["progress"].as_f64().unwrap_or(0.0).max(last);
            last = p;
            n["params"]["progress"] = json!(p);
            first = false;
            tx.try_send(http::sse_event(&n)).is_ok() || !tx.is_closed()
        })
        .await;
        let message = match sent.map(|job| methods::job_result(&job)) {
            Ok(Some(r)) => result_message(&id, r, call.era),
            Ok(None) => return, // the client went away; the job runs on
            Err(e) => e.to_jsonrpc(&id),
        };
        let _ = tx.send(http::sse_event(&message)).await;
    });
    sse_response(body)
}

/// An SSE answer: the stream's headers around `body`.
fn sse_response(body: http::SseBody) -> HttpResponse {
    let mut r = hyper::Response::new(crate::server::Body::Sse(body));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    r.headers_mut().insert(
        hyper::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    r.headers_mut().insert(
        HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    r
}
