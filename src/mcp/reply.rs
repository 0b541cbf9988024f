//! The one place a JSON-RPC outcome of `/mcp` becomes an HTTP answer: results in their
//! era's envelope, errors with their HTTP status and headers, `202` for notifications and
//! answers, and the headers of an SSE stream.
//!
//! It must not decide outcomes: the methods do.

use hyper::header::{HeaderName, HeaderValue};
use serde_json::{json, Value};

use super::error::McpError;
use super::{Era, SERVER_INFO_KEY};
use crate::http::{HttpResponse, SseBody};

/// Builds the HTTP answer for a JSON-RPC message (or an error without one).
pub(super) fn respond(status: u16, message: &Value, retry_after_ms: Option<u64>) -> HttpResponse {
    // serde_json's own writer: `Value`'s Display goes through `fmt`'s adapter (2% of a
    // pass-through call's CPU in perf). A `Value` always serializes.
    let text = serde_json::to_string(message).unwrap_or_default();
    let mut r = crate::http::json_response(status, text);
    if let Some(ms) = retry_after_ms {
        if let Ok(v) = HeaderValue::from_str(&ms.div_ceil(1000).max(1).to_string()) {
            r.headers_mut().insert(hyper::header::RETRY_AFTER, v);
        }
    }
    r
}

pub(super) fn fail(e: &McpError, id: &Value) -> HttpResponse {
    let mut r = respond(e.http_status(), &e.to_jsonrpc(id), e.retry_after_ms());
    if let McpError::Unauthorized { challenge, .. }
    | McpError::InsufficientScope { challenge, .. } = e
    {
        if let Ok(v) = HeaderValue::from_str(challenge) {
            r.headers_mut()
                .insert(HeaderName::from_static("www-authenticate"), v);
        }
    }
    if matches!(e, McpError::MethodNotAllowed) {
        r.headers_mut()
            .insert(hyper::header::ALLOW, HeaderValue::from_static("POST"));
    }
    r
}

pub(super) fn accepted() -> HttpResponse {
    let mut r = crate::http::json_response(202, String::new());
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

pub(super) fn method_label(m: &str) -> &'static str {
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
/// An SSE answer: the stream's headers around `body`.
pub(super) fn sse_response(body: SseBody) -> HttpResponse {
    let mut r = hyper::Response::new(crate::http::Body::Sse(body));
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
