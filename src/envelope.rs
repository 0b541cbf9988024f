//! The `mcp/0.1` envelope (the signed wire contract of `POST /v1/call`, not standard MCP,
//! which is `crate::mcp`): envelopes, responses, error codes and HMAC signing.
//!
//! This module owns the shapes that cross the wire and the exact bytes that are
//! signed, byte-compatible with the seed's `seed_mcp.py`. It turns a parsed body
//! into a typed [`Envelope`] (the "strict parse" step: exact field set, exact
//! types, length limits) and a [`Response`] into signed bytes.
//!
//! It must not decide whether a caller is trusted (that is `auth`) nor run tools.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::json::{self, Json, Object};

pub const VERSION: &str = "mcp/0.1";

/// Longest accepted `request_id`, `client_id`, `server_id`, `tool` or `nonce`.
pub const MAX_ID_LEN: usize = 128;

/// Identity of a caller, as named in its envelope and in the server's key table.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub String);

impl std::fmt::Display for ClientId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A strictly parsed request envelope. `object` keeps the parsed body for signing.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub v: String,
    pub request_id: String,
    pub ts_ms: i64,
    pub client_id: ClientId,
    pub server_id: String,
    pub tool: String,
    pub args: Object,
    pub nonce: String,
    /// The signature as sent (validated as 64 hex chars by `auth`).
    pub signature: String,
    /// Optional, job tools only: the priority and schedule asked for (`{priority,
    /// delay_ms, not_before_ms}`, docs/FLOW.md); signed like every other field.
    pub job: Option<Object>,
    object: Object,
}

const ENVELOPE_FIELDS: [&str; 9] = [
    "args",
    "client_id",
    "nonce",
    "request_id",
    "server_id",
    "signature",
    "tool",
    "ts_ms",
    "v",
];

/// Fields an envelope may carry besides [`ENVELOPE_FIELDS`].
const OPTIONAL_FIELDS: [&str; 1] = ["job"];

impl Envelope {
    /// Turns a parsed body into an envelope, checking the field set and every field's type.
    pub fn from_json(body: Json) -> Result<Envelope, CallError> {
        let Json::Object(object) = body else {
            return Err(CallError::InvalidEnvelope(format!(
                "body must be a JSON object, got {}",
                body.type_name()
            )));
        };
        for key in object.keys() {
            if !ENVELOPE_FIELDS.contains(&key) && !OPTIONAL_FIELDS.contains(&key) {
                return Err(CallError::InvalidEnvelope(format!(
                    "unexpected field {key:?}"
                )));
            }
        }
        for key in ENVELOPE_FIELDS {
            if object.get(key).is_none() {
                return Err(CallError::InvalidEnvelope(format!("missing field {key:?}")));
            }
        }
        let text = |key: &str, max: usize| -> Result<String, CallError> {
            match object.get(key) {
                Some(Json::Str(s)) if s.len() <= max => Ok(s.clone()),
                Some(Json::Str(_)) => Err(CallError::InvalidEnvelope(format!(
                    "field {key:?} is longer than {max} bytes"
                ))),
                Some(other) => Err(CallError::InvalidEnvelope(format!(
                    "field {key:?} must be a string, got {}",
                    other.type_name()
                ))),
                None => Err(CallError::InvalidEnvelope(format!("missing field {key:?}"))),
            }
        };
        let ts_ms = match object.get("ts_ms") {
            Some(Json::Int(i)) => *i,
            Some(Json::BigInt(_)) => {
                return Err(CallError::InvalidEnvelope(
                    "field \"ts_ms\" is out of range for milliseconds since the epoch".into(),
                ))
            }
            Some(other) => {
                return Err(CallError::InvalidEnvelope(format!(
                    "field \"ts_ms\" must be an integer (milliseconds since the epoch), got {}",
                    other.type_name()
                )))
            }
            None => return Err(CallError::InvalidEnvelope("missing field \"ts_ms\"".into())),
        };
        let args = match object.get("args") {
            Some(Json::Object(o)) => o.clone(),
            Some(other) => {
                return Err(CallError::InvalidEnvelope(format!(
                    "field \"args\" must be an object, got {}",
                    other.type_name()
                )))
            }
            None => return Err(CallError::InvalidEnvelope("missing field \"args\"".into())),
        };
        let job = match object.get("job") {
            None => None,
            Some(Json::Object(o)) => Some(o.clone()),
            Some(other) => {
                return Err(CallError::InvalidEnvelope(format!(
                    "field \"job\" must be an object, got {}",
                    other.type_name()
                )))
            }
        };
        let env = Envelope {
            v: text("v", MAX_ID_LEN)?,
            request_id: text("request_id", MAX_ID_LEN)?,
            ts_ms,
            client_id: ClientId(text("client_id", MAX_ID_LEN)?),
            server_id: text("server_id", MAX_ID_LEN)?,
            tool: text("tool", MAX_ID_LEN)?,
            args,
            nonce: text("nonce", MAX_ID_LEN)?,
            signature: text("signature", 64)?,
            job,
            object,
        };
        if env.nonce.is_empty() {
            return Err(CallError::InvalidEnvelope(
                "field \"nonce\" must not be empty".into(),
            ));
        }
        Ok(env)
    }

    /// The exact bytes the client signed: canonical JSON of every field but `signature`.
    pub fn signing_bytes(&self) -> String {
        let mut out = String::with_capacity(256);
        json::write_object_except(&self.object, Some("signature"), &mut out);
        out
    }
}

/// Extracts a `request_id` from a body that failed strict parsing (duplicate keys, say),
/// so its error can still be correlated. Best effort: a lenient parse, else empty.
pub fn salvage_request_id(body: &[u8]) -> String {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(o)) => match o.get("request_id") {
            Some(serde_json::Value::String(s)) if s.len() <= MAX_ID_LEN => s.clone(),
            _ => String::new(),
        },
        _ => String::new(),
    }
}

/// The `status` literal of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Accepted,
    Running,
    Done,
    Error,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Accepted => "accepted",
            Status::Running => "running",
            Status::Done => "done",
            Status::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "ok" => Status::Ok,
            "accepted" => Status::Accepted,
            "running" => Status::Running,
            "done" => Status::Done,
            "error" => Status::Error,
            _ => return None,
        })
    }
}

/// Every failure a call can end in. Each variant is one stable wire code
/// (see [`CallError::code`]) and one HTTP status; `docs/PROTOCOL.md` lists them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("request body is larger than {0} bytes")]
    BodyTooLarge(usize),
    #[error("content-type must be application/json")]
    UnsupportedMediaType,
    #[error("only POST is allowed on this path")]
    MethodNotAllowed,
    #[error("no such path; POST envelopes to /v1/call")]
    NotFound,
    #[error("request body was not received in time")]
    RequestTimeout,
    #[error("{0}")]
    MalformedJson(String),
    #[error("{0}")]
    InvalidEnvelope(String),
    #[error("unsupported protocol version {0:?}; this server speaks \"mcp/0.1\"")]
    UnsupportedVersion(String),
    #[error("envelope is addressed to server {0:?}, not to this server")]
    WrongServer(String),
    #[error("ts_ms is older than the allowed window of {0} ms")]
    StaleTimestamp(i64),
    #[error("ts_ms is further in the future than the allowed window of {0} ms")]
    FutureTimestamp(i64),
    #[error("unknown client {0:?}")]
    UnknownClient(String),
    #[error("signature does not match the envelope")]
    BadSignature,
    #[error("nonce was already used")]
    ReplayedNonce,
    #[error("unknown tool {0:?}")]
    UnknownTool(String),
    #[error("{0}")]
    InvalidArgs(String),
    /// The call's webhook callback URL is not in its client's allowlist (docs/WEBHOOKS.md).
    #[error("{0}")]
    CallbackNotAllowed(String),
    #[error("no job with that id for this client")]
    UnknownJob,
    #[error("{0}")]
    JobFailed(String),
    #[error("job was cancelled")]
    JobCancelled,
    #[error("job cannot be cancelled: it already finished ({0})")]
    JobFinished(String),
    #[error("{0}")]
    JobInDoubt(String),
    #[error("{0}")]
    Busy(String),
    #[error("{0}")]
    ToolFailed(String),
    #[error("{0}")]
    ToolUnavailable(String),
    #[error("too many calls from this client; retry after {0} ms")]
    RateLimited(u64),
    #[error("this client has {0} queued jobs, its cap; retry after {1} ms")]
    QueueFull(u64, u64),
    /// The store cannot take the call now and nothing was committed: retry with a new
    /// envelope (docs/PROTOCOL.md, "Retrying").
    #[error("{0}")]
    StoreUnavailable(String),
    #[error("internal error (reference {0})")]
    Internal(String),
}

/// How long a client should wait before retrying a `store_unavailable` call: long enough
/// not to hammer a database that is restarting, short enough to notice it is back.
pub const STORE_RETRY_AFTER_MS: u64 = 1000;

impl CallError {
    /// An `internal` error for a cause the caller must not see: the cause is logged with a
    /// fresh reference, and only the reference goes on the wire.
    pub fn internal(what: &str, cause: &dyn std::fmt::Display) -> CallError {
        let reference = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        tracing::error!(reference = %reference, error = %cause, "{what}");
        CallError::Internal(reference)
    }

    /// The stable snake_case code that starts the wire `error` string.
    pub fn code(&self) -> &'static str {
        match self {
            CallError::BodyTooLarge(_) => "body_too_large",
            CallError::UnsupportedMediaType => "unsupported_media_type",
            CallError::MethodNotAllowed => "method_not_allowed",
            CallError::NotFound => "not_found",
            CallError::RequestTimeout => "request_timeout",
            CallError::MalformedJson(_) => "malformed_json",
            CallError::InvalidEnvelope(_) => "invalid_envelope",
            CallError::UnsupportedVersion(_) => "unsupported_version",
            CallError::WrongServer(_) => "wrong_server",
            CallError::StaleTimestamp(_) => "stale_timestamp",
            CallError::FutureTimestamp(_) => "future_timestamp",
            CallError::UnknownClient(_) => "unknown_client",
            CallError::BadSignature => "bad_signature",
            CallError::ReplayedNonce => "replayed_nonce",
            CallError::UnknownTool(_) => "unknown_tool",
            CallError::InvalidArgs(_) => "invalid_args",
            CallError::CallbackNotAllowed(_) => "callback_not_allowed",
            CallError::UnknownJob => "unknown_job",
            CallError::JobFailed(_) => "job_failed",
            CallError::JobCancelled => "job_cancelled",
            CallError::JobFinished(_) => "job_finished",
            CallError::JobInDoubt(_) => "in_doubt",
            CallError::Busy(_) => "busy",
            CallError::ToolFailed(_) => "tool_failed",
            CallError::ToolUnavailable(_) => "tool_unavailable",
            CallError::RateLimited(_) => "rate_limited",
            CallError::QueueFull(..) => "queue_full",
            CallError::StoreUnavailable(_) => "store_unavailable",
            CallError::Internal(_) => "internal",
        }
    }

    /// The HTTP status that carries this error.
    pub fn http_status(&self) -> u16 {
        match self {
            CallError::BodyTooLarge(_) => 413,
            CallError::UnsupportedMediaType => 415,
            CallError::MethodNotAllowed => 405,
            CallError::NotFound => 404,
            CallError::RequestTimeout => 408,
            CallError::MalformedJson(_)
            | CallError::InvalidEnvelope(_)
            | CallError::UnsupportedVersion(_)
            | CallError::WrongServer(_)
            | CallError::InvalidArgs(_)
            | CallError::CallbackNotAllowed(_) => 400,
            CallError::StaleTimestamp(_)
            | CallError::FutureTimestamp(_)
            | CallError::UnknownClient(_)
            | CallError::BadSignature
            | CallError::ReplayedNonce => 401,
            CallError::UnknownTool(_) | CallError::UnknownJob => 404,
            // The call itself succeeded; it reports the job's outcome.
            CallError::JobFailed(_) | CallError::JobCancelled | CallError::JobInDoubt(_) => 200,
            CallError::JobFinished(_) => 409,
            // The daemon fronts the tool: its failure is a bad gateway, its (or our)
            // momentary unavailability a 503 the caller may retry.
            CallError::ToolFailed(_) => 502,
            CallError::Busy(_) | CallError::ToolUnavailable(_) | CallError::StoreUnavailable(_) => {
                503
            }
            CallError::RateLimited(_) | CallError::QueueFull(..) => 429,
            CallError::Internal(_) => 500,
        }
    }

    /// For a refusal the client should retry later: after how many ms (`Retry-After`).
    pub fn retry_after_ms(&self) -> Option<u64> {
        match self {
            CallError::RateLimited(ms) | CallError::QueueFull(_, ms) => Some(*ms),
            CallError::StoreUnavailable(_) => Some(STORE_RETRY_AFTER_MS),
            _ => None,
        }
    }

    /// The wire `error` string: `code: message`.
    pub fn wire(&self) -> String {
        format!("{}: {}", self.code(), self)
    }
}

/// A response before signing.
#[derive(Debug, Clone)]
pub struct Response {
    pub request_id: String,
    pub ts_ms: i64,
    pub server_id: String,
    pub status: Status,
    pub result: Option<Object>,
    pub error: Option<String>,
}

impl Response {
    pub fn ok(
        request_id: String,
        server_id: String,
        ts_ms: i64,
        status: Status,
        result: Option<Object>,
    ) -> Self {
        Response {
            request_id,
            ts_ms,
            server_id,
            status,
            result,
            error: None,
        }
    }

    pub fn error(request_id: String, server_id: String, ts_ms: i64, err: &CallError) -> Self {
        Response {
            request_id,
            ts_ms,
            server_id,
            status: Status::Error,
            result: None,
            error: Some(err.wire()),
        }
    }

    pub fn is_ok(&self) -> bool {
        self.status != Status::Error
    }

    /// Signs the response as the seed's server does (HMAC over the canonical
    /// response with `"signature": ""` in place) and returns the canonical body.
    pub fn sign(&self, key: &[u8]) -> String {
        // Keys sort as: error, ok, request_id, result, server_id, signature, status, ts_ms, v.
        // Write everything up to the signature's value and everything after it once;
        // the signed bytes are the two halves joined with the empty signature.
        let mut head = String::with_capacity(256);
        head.push_str("{\"error\":");
        match &self.error {
            Some(e) => json::write_str(e, &mut head),
            None => head.push_str("null"),
        }
        head.push_str(",\"ok\":");
        head.push_str(if self.is_ok() { "true" } else { "false" });
        head.push_str(",\"request_id\":");
        json::write_str(&self.request_id, &mut head);
        head.push_str(",\"result\":");
        match &self.result {
            Some(r) => json::write_object_except(r, None, &mut head),
            None => head.push_str("null"),
        }
        head.push_str(",\"server_id\":");
        json::write_str(&self.server_id, &mut head);
        head.push_str(",\"signature\":\"");
        let mut tail = String::with_capacity(64);
        tail.push_str("\",\"status\":\"");
        tail.push_str(self.status.as_str());
        tail.push_str("\",\"ts_ms\":");
        tail.push_str(&self.ts_ms.to_string());
        tail.push_str(",\"v\":\"mcp/0.1\"}");

        let mut mac = new_mac(key);
        mac.update(head.as_bytes());
        mac.update(tail.as_bytes());
        let sig = crate::hex::lower(&mac.finalize().into_bytes());
        head.push_str(&sig);
        head.push_str(&tail);
        head
    }
}

pub type HmacSha256 = Hmac<Sha256>;

pub fn new_mac(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; this cannot fail.
    <HmacSha256 as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
}

/// Lowercase hex HMAC-SHA256 of `bytes`.
pub fn hmac_hex(key: &[u8], bytes: &[u8]) -> String {
    let mut mac = new_mac(key);
    mac.update(bytes);
    crate::hex::lower(&mac.finalize().into_bytes())
}

/// A client-side view of a received response, with its signature checked.
#[derive(Debug, Clone)]
pub struct VerifiedResponse {
    pub request_id: String,
    pub ts_ms: i64,
    pub ok: bool,
    pub server_id: String,
    pub status: Status,
    pub result: Option<Object>,
    pub error: Option<String>,
    pub raw: String,
}

impl VerifiedResponse {
    /// The error code (text before `: `) of an error response.
    pub fn error_code(&self) -> Option<&str> {
        self.error
            .as_deref()
            .map(|e| e.split(": ").next().unwrap_or(e))
    }
}

/// Why a response body is not a valid signed response.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("response is not JSON: {0}")]
    Json(#[from] json::ParseError),
    #[error("response does not have the mcp/0.1 response shape: {0}")]
    Shape(String),
    #[error("response signature does not verify with the server key")]
    Signature,
}

/// Parses a response body and verifies its signature with the server's key.
pub fn verify_response(body: &[u8], server_key: &[u8]) -> Result<VerifiedResponse, VerifyError> {
    let parsed = json::parse(body)?;
    let Json::Object(o) = parsed else {
        return Err(VerifyError::Shape("not an object".into()));
    };
    let fields = [
        "error",
        "ok",
        "request_id",
        "result",
        "server_id",
        "signature",
        "status",
        "ts_ms",
        "v",
    ];
    if o.len() != fields.len() || fields.iter().any(|f| o.get(f).is_none()) {
        return Err(VerifyError::Shape(format!(
            "fields are {:?}",
            o.keys().collect::<Vec<_>>()
        )));
    }
    let s = |k: &str| -> Result<String, VerifyError> {
        o.get(k)
            .and_then(Json::as_str)
            .map(str::to_string)
            .ok_or_else(|| VerifyError::Shape(format!("{k} is not a string")))
    };
    let signature = s("signature")?;
    let mut unsigned = o.clone();
    unsigned.insert("signature".into(), Json::Str(String::new()));
    let expected = hex::decode(&signature).map_err(|_| VerifyError::Signature)?;
    let mut mac = new_mac(server_key);
    mac.update(Json::Object(unsigned).to_canonical().as_bytes());
    mac.verify_slice(&expected)
        .map_err(|_| VerifyError::Signature)?;
    if s("v")? != VERSION {
        return Err(VerifyError::Shape("v is not mcp/0.1".into()));
    }
    let status =
        Status::parse(&s("status")?).ok_or_else(|| VerifyError::Shape("bad status".into()))?;
    Ok(VerifiedResponse {
        request_id: s("request_id")?,
        ts_ms: match o.get("ts_ms") {
            Some(Json::Int(i)) => *i,
            _ => return Err(VerifyError::Shape("ts_ms is not an integer".into())),
        },
        ok: matches!(o.get("ok"), Some(Json::Bool(true))),
        server_id: s("server_id")?,
        status,
        result: match o.get("result") {
            Some(Json::Object(r)) => Some(r.clone()),
            Some(Json::Null) => None,
            _ => {
                return Err(VerifyError::Shape(
                    "result is neither object nor null".into(),
                ))
            }
        },
        error: match o.get("error") {
            Some(Json::Str(e)) => Some(e.clone()),
            Some(Json::Null) => None,
            _ => {
                return Err(VerifyError::Shape(
                    "error is neither string nor null".into(),
                ))
            }
        },
        raw: String::from_utf8_lossy(body).into_owned(),
    })
}

/// The fields of a request envelope, before signing.
#[derive(Debug, Clone)]
pub struct Unsigned<'a> {
    pub client_id: &'a str,
    pub server_id: &'a str,
    pub tool: &'a str,
    pub args: Object,
    pub ts_ms: i64,
    pub request_id: String,
    pub nonce: String,
}

/// Builds and signs a request envelope (the client side of the contract).
pub fn sign_envelope(u: Unsigned<'_>, key: &[u8]) -> Object {
    let mut o = Object::new();
    o.insert("v".into(), Json::str(VERSION));
    o.insert("request_id".into(), Json::Str(u.request_id));
    o.insert("ts_ms".into(), Json::Int(u.ts_ms));
    o.insert("client_id".into(), Json::str(u.client_id));
    o.insert("server_id".into(), Json::str(u.server_id));
    o.insert("tool".into(), Json::str(u.tool));
    o.insert("args".into(), Json::Object(u.args));
    o.insert("nonce".into(), Json::Str(u.nonce));
    let sig = hmac_hex(key, Json::Object(o.clone()).to_canonical().as_bytes());
    o.insert("signature".into(), Json::Str(sig));
    o
}

/// Adds the optional `job` field (priority, schedule: docs/FLOW.md) to a signed envelope
/// and signs it again over every field but `signature`.
pub fn with_job_options(mut envelope: Object, job: Object, key: &[u8]) -> Object {
    envelope.insert("job".into(), Json::Object(job));
    let mut bytes = String::with_capacity(256);
    json::write_object_except(&envelope, Some("signature"), &mut bytes);
    envelope.insert(
        "signature".into(),
        Json::Str(hmac_hex(key, bytes.as_bytes())),
    );
    envelope
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_response_verifies_and_tamper_fails() {
        let mut result = Object::new();
        result.insert("count".into(), Json::Int(3));
        let r = Response::ok("r1".into(), "srv".into(), 5, Status::Ok, Some(result));
        let body = r.sign(b"k");
        let v = verify_response(body.as_bytes(), b"k").unwrap();
        assert_eq!(v.status, Status::Ok);
        assert!(verify_response(body.as_bytes(), b"other").is_err());
        let tampered = body.replace("\"count\":3", "\"count\":4");
        assert!(verify_response(tampered.as_bytes(), b"k").is_err());
    }

    #[test]
    fn response_body_is_canonical() {
        let r = Response::error("r".into(), "s".into(), 1, &CallError::BadSignature);
        let body = r.sign(b"k");
        let reparsed = json::parse(body.as_bytes()).unwrap().to_canonical();
        assert_eq!(body, reparsed);
    }
}
