//! Every way a `/mcp` request fails, each variant one JSON-RPC error code and one HTTP
//! status, turned into a response in one place ([`McpError::response`]).
//!
//! A tool's own failure is not here: it is a `CallToolResult` with `isError: true`.
//!
//! It must not decide when a request fails: `mcp::http` and `mcp::methods` do.

use serde_json::{json, Value};

/// JSON-RPC and MCP error codes.
pub mod code {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL_ERROR: i64 = -32603;
    /// Generic server-defined error (auth, origin, limits): JSON-RPC's reserved range.
    pub const SERVER_ERROR: i64 = -32000;
    /// 2026-07-28: a header disagrees with the body, or a required header is missing.
    pub const HEADER_MISMATCH: i64 = -32020;
    /// 2026-07-28: the request needs a client capability it did not declare.
    pub const MISSING_CAPABILITY: i64 = -32021;
    /// 2026-07-28: a protocol version this server does not speak.
    pub const UNSUPPORTED_VERSION: i64 = -32022;
}

#[derive(Debug, Clone, PartialEq)]
pub enum McpError {
    /// Not JSON, or not strict JSON (duplicate keys, too deep).
    Parse(String),
    /// JSON, but not a JSON-RPC 2.0 message we accept.
    InvalidRequest(String),
    MethodNotFound(String),
    InvalidParams(String),
    /// No resource or prompt by that name (mcpq has none): -32602 with `data` naming it.
    NotFound(&'static str, Value),
    /// A multi-round call's `requestState` was altered, is another call's, or expired.
    RequestState(String),
    /// A tool's output claims to be an MCP result but is malformed; `mcp::methods` turns
    /// it into a tool error result (the tool's fault, not the client's).
    ToolOutput(String),
    /// 2026-07-28: the per-request `_meta` lacks a required field (-32602, HTTP 400).
    BadMeta(String),
    /// A protocol version this server does not speak.
    UnsupportedVersion {
        requested: String,
        supported: Vec<&'static str>,
    },
    /// 2026-07-28: the request needs a capability it did not declare (`data`).
    MissingCapability(String, Value),
    /// A method this era does not have: 404 in 2026-07-28, 200 in 2025-11-25.
    UnknownMethod(String, bool),
    /// A header that must agree with the body does not (`Mcp-Method`, `Mcp-Name`).
    HeaderMismatch(String),
    /// No bearer token, or none of a client's live ones, or an access token refused
    /// (`why`); `challenge` is the `WWW-Authenticate` value (RFC 6750, RFC 9728).
    Unauthorized {
        challenge: String,
        why: Option<&'static str>,
    },
    /// A valid access token without the scope this request needs (RFC 6750 §3.1).
    InsufficientScope {
        scope: String,
        challenge: String,
    },
    /// A browser page of another origin, or a Host this server is not (DNS rebinding).
    ForbiddenOrigin(String),
    MethodNotAllowed,
    NotAcceptable(String),
    UnsupportedMediaType,
    BodyTooLarge(usize),
    RequestTimeout,
    RateLimited(u64),
    QueueFull(u64, u64),
    /// A 2025-11-25 client already has this many questions unanswered (the cap).
    TooManyQuestions(usize, usize),
    /// The store cannot take the request now and nothing was committed (HTTP 503,
    /// `Retry-After`): the client may send it again.
    StoreUnavailable(String),
    Internal(String),
}

impl McpError {
    pub fn http_status(&self) -> u16 {
        match self {
            McpError::Parse(_)
            | McpError::InvalidRequest(_)
            | McpError::UnsupportedVersion { .. }
            | McpError::MissingCapability(..)
            | McpError::BadMeta(_)
            | McpError::HeaderMismatch(_) => 400,
            McpError::UnknownMethod(_, modern) => {
                if *modern {
                    404
                } else {
                    200
                }
            }
            // JSON-RPC errors about the request's content travel with 200, as the
            // Streamable HTTP transport answers any well-formed request.
            McpError::MethodNotFound(_)
            | McpError::InvalidParams(_)
            | McpError::RequestState(_)
            | McpError::NotFound(..) => 200,
            McpError::ToolOutput(_) => 500,
            McpError::Unauthorized { .. } => 401,
            McpError::InsufficientScope { .. } => 403,
            McpError::ForbiddenOrigin(_) => 403,
            McpError::MethodNotAllowed => 405,
            McpError::NotAcceptable(_) => 406,
            McpError::UnsupportedMediaType => 415,
            McpError::BodyTooLarge(_) => 413,
            McpError::RequestTimeout => 408,
            McpError::RateLimited(_) | McpError::QueueFull(..) | McpError::TooManyQuestions(..) => {
                429
            }
            McpError::StoreUnavailable(_) => 503,
            McpError::Internal(_) => 500,
        }
    }

    /// The outcome code of an audit record (docs/AUDIT.md).
    pub fn audit_code(&self) -> &'static str {
        match self {
            McpError::Parse(_) => "parse_error",
            McpError::InvalidRequest(_) | McpError::HeaderMismatch(_) | McpError::BadMeta(_) => {
                "invalid_request"
            }
            McpError::MethodNotFound(_) | McpError::UnknownMethod(..) => "method_not_found",
            McpError::InvalidParams(_) | McpError::NotFound(..) => "invalid_params",
            McpError::RequestState(_) => "request_state",
            McpError::ToolOutput(_) => "tool_failed",
            McpError::UnsupportedVersion { .. } => "unsupported_version",
            McpError::MissingCapability(..) => "missing_capability",
            McpError::Unauthorized { .. } => "unauthorized",
            McpError::InsufficientScope { .. } => "insufficient_scope",
            McpError::ForbiddenOrigin(_) => "forbidden_origin",
            McpError::MethodNotAllowed => "method_not_allowed",
            McpError::NotAcceptable(_) => "not_acceptable",
            McpError::UnsupportedMediaType => "unsupported_media_type",
            McpError::BodyTooLarge(_) => "body_too_large",
            McpError::RequestTimeout => "request_timeout",
            McpError::RateLimited(_) => "rate_limited",
            McpError::QueueFull(..) => "queue_full",
            McpError::TooManyQuestions(..) => "too_many_questions",
            McpError::StoreUnavailable(_) => "store_unavailable",
            McpError::Internal(_) => "internal",
        }
    }

    /// A refusal before the call was admitted (authentication, scope, rate): coalesced in
    /// the audit trail.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            McpError::Unauthorized { .. }
                | McpError::InsufficientScope { .. }
                | McpError::ForbiddenOrigin(_)
                | McpError::RateLimited(_)
        )
    }

    pub fn code(&self) -> i64 {
        match self {
            McpError::Parse(_) => code::PARSE_ERROR,
            McpError::InvalidRequest(_) => code::INVALID_REQUEST,
            McpError::HeaderMismatch(_) => code::HEADER_MISMATCH,
            McpError::MissingCapability(..) => code::MISSING_CAPABILITY,
            McpError::UnsupportedVersion { .. } => code::UNSUPPORTED_VERSION,
            McpError::MethodNotFound(_) | McpError::UnknownMethod(..) => code::METHOD_NOT_FOUND,
            McpError::InvalidParams(_)
            | McpError::BadMeta(_)
            | McpError::RequestState(_)
            | McpError::NotFound(..) => code::INVALID_PARAMS,
            McpError::Internal(_) | McpError::ToolOutput(_) => code::INTERNAL_ERROR,
            _ => code::SERVER_ERROR,
        }
    }

    pub fn message(&self) -> String {
        match self {
            McpError::Parse(m) => format!("parse error: {m}"),
            McpError::InvalidRequest(m) => format!("invalid request: {m}"),
            McpError::MethodNotFound(m) | McpError::UnknownMethod(m, _) => {
                format!("method not found: {m}")
            }
            McpError::MissingCapability(m, _) => format!("missing required client capability: {m}"),
            McpError::InvalidParams(m) | McpError::BadMeta(m) => format!("invalid params: {m}"),
            McpError::RequestState(m) => format!("invalid params: {m}"),
            McpError::ToolOutput(m) => format!("tool_failed: {m}"),
            McpError::NotFound(what, name) => format!("{what} not found: {name}"),
            McpError::UnsupportedVersion {
                requested,
                supported,
            } => format!(
                "unsupported protocol version {requested:?}; supported: {}",
                supported.join(", ")
            ),
            McpError::HeaderMismatch(m) => format!("header mismatch: {m}"),
            McpError::Unauthorized { why: None, .. } => {
                "unauthorized: a valid bearer token is required".into()
            }
            McpError::Unauthorized { why: Some(w), .. } => format!("unauthorized: {w}"),
            McpError::InsufficientScope { scope, .. } => {
                format!("insufficient_scope: this needs the scope {scope:?}")
            }
            McpError::ForbiddenOrigin(m) => format!("forbidden: {m}"),
            McpError::MethodNotAllowed => {
                "method not allowed: POST JSON-RPC messages to this endpoint".into()
            }
            McpError::NotAcceptable(m) => format!("not acceptable: {m}"),
            McpError::UnsupportedMediaType => {
                "unsupported media type: Content-Type must be application/json".into()
            }
            McpError::BodyTooLarge(n) => format!("request body is larger than {n} bytes"),
            McpError::RequestTimeout => "request body was not received in time".into(),
            McpError::RateLimited(ms) => format!("rate_limited: retry after {ms} ms"),
            McpError::QueueFull(cap, ms) => {
                format!("queue_full: {cap} jobs queued for this client; retry after {ms} ms")
            }
            McpError::TooManyQuestions(n, cap) => format!(
                "too_many_questions: this client has {n} pending questions unanswered \
                 (mcp.max_pending_questions_per_client = {cap}); answer or abandon them first"
            ),
            McpError::StoreUnavailable(m) => format!("store_unavailable: {m}"),
            McpError::Internal(r) => format!("internal error (reference {r})"),
        }
    }

    /// `error.data`, where the spec gives it a shape.
    pub fn data(&self) -> Option<Value> {
        match self {
            McpError::UnsupportedVersion {
                requested,
                supported,
            } => Some(json!({"supported": supported, "requested": requested})),
            McpError::MissingCapability(_, caps) => Some(json!({"requiredCapabilities": caps})),
            McpError::NotFound("resource", uri) => Some(json!({ "uri": uri })),
            McpError::NotFound(_, name) => Some(json!({ "name": name })),
            McpError::RateLimited(ms) | McpError::QueueFull(_, ms) => {
                Some(json!({"retryAfterMs": ms}))
            }
            McpError::StoreUnavailable(_) => Some(json!({
                "retryAfterMs": crate::envelope::STORE_RETRY_AFTER_MS,
                "reason": "store_unavailable"
            })),
            _ => None,
        }
    }

    pub fn retry_after_ms(&self) -> Option<u64> {
        match self {
            McpError::RateLimited(ms) | McpError::QueueFull(_, ms) => Some(*ms),
            McpError::StoreUnavailable(_) => Some(crate::envelope::STORE_RETRY_AFTER_MS),
            _ => None,
        }
    }

    /// The JSON-RPC error object for request `id` (`null` when the id is unknown).
    pub fn to_jsonrpc(&self, id: &Value) -> Value {
        let mut err = json!({"code": self.code(), "message": self.message()});
        if let Some(d) = self.data() {
            err["data"] = d;
        }
        json!({"jsonrpc": "2.0", "id": id, "error": err})
    }
}

impl From<crate::envelope::CallError> for McpError {
    fn from(e: crate::envelope::CallError) -> Self {
        use crate::envelope::CallError as C;
        match e {
            C::InvalidArgs(m) => McpError::InvalidParams(m),
            C::UnknownTool(t) => McpError::InvalidParams(format!("unknown tool {t:?}")),
            C::RateLimited(ms) => McpError::RateLimited(ms),
            C::QueueFull(cap, ms) => McpError::QueueFull(cap, ms),
            C::BodyTooLarge(n) => McpError::BodyTooLarge(n),
            C::RequestTimeout => McpError::RequestTimeout,
            C::MalformedJson(m) => McpError::Parse(m),
            C::Internal(r) => McpError::Internal(r),
            C::StoreUnavailable(m) => McpError::StoreUnavailable(m),
            other => McpError::InvalidParams(other.wire()),
        }
    }
}
