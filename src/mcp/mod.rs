//! Standard MCP at `POST /mcp`: JSON-RPC 2.0 over Streamable HTTP, serving the one tool
//! registry to off-the-shelf MCP clients, without sessions.
//!
//! Two protocol eras share the endpoint, chosen per request as the specification's
//! reference server does ([`era_of`]): the stateless **2026-07-28** revision (per-request
//! `_meta` with version and client capabilities, `server/discover`, `Mcp-Method`/`Mcp-Name`
//! headers checked against the body, `resultType` on every result) and **2025-11-25**
//! (`initialize`, `notifications/initialized`, `ping`). Authentication is a bearer token
//! per client ([`crate::auth::Authenticator::bearer`]), the same client identity as the
//! signed envelope, so a job started here is that client's on `/v1/call` too; or, with
//! `[oauth]`, an OAuth access token ([`crate::oauth`]) whose client id flows the same way
//! and whose scopes decide which tools the request sees and calls. Every limit
//! of `/v1/call` holds: body cap and timeout, strict JSON, rate and queue limits.
//!
//! Layout: `http` (who gets in: method, Host/Origin, token, accepted types), `era` (which
//! revision, and its checks), `dispatch` (the method table), `call` (one request's
//! context), `lifecycle`, `catalog` (lists and reads), `tool_call`, `tasks`, `held` (a
//! held call's progress stream), `input` (multi-round calls: sealed `requestState`,
//! capability checks), `bridge` (a tool's questions to a 2025-11-25 client over the call's
//! stream), `log` (a tool's log messages on the call's stream), `error` (every failure,
//! one code each), `reply` (the one place an outcome becomes an HTTP answer).
//!
//! [`Mcp`] holds what only this transport keeps (the Origin policy, the anonymous client,
//! questions pending over 2025-11-25 streams, the key that seals `requestState`) beside the
//! shared core.
//!
//! It must not run tools or touch the store itself: it goes through `app::App`, as
//! `/v1/call` does.

pub mod bridge;
pub mod call;
pub mod catalog;
mod dispatch;
pub mod era;
pub mod error;
mod held;
pub mod http;
pub mod input;
pub mod lifecycle;
mod log;
mod reply;
pub mod tasks;
pub mod tool_call;

use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Method, Request};
use serde_json::{json, Value};

use self::error::McpError;
use self::reply::{accepted, fail};
use crate::app::App;
use crate::config::Settings;
use crate::http::HttpResponse;
use crate::oauth::{Grant, OAuth, Refusal};

pub use self::era::era_of;

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

/// The `/mcp` transport: the shared core and what only MCP keeps.
pub struct Mcp {
    pub app: Arc<App>,
    origin_policy: http::OriginPolicy,
    anonymous_client: String,
    /// Questions tools asked 2025-11-25 clients over SSE, awaiting their answers.
    pub pending_answers: bridge::Pending,
    /// Most questions one client may have pending at once (0: no cap).
    pub max_pending_questions: usize,
    /// A held call's fallback re-read interval (`mcp.held_poll_ms`).
    pub held_poll: std::time::Duration,
    /// Derived from the server secret (so any daemon of a deployment opens what another
    /// sealed) and distinct from the key that signs responses; once, at build.
    request_state_key: Vec<u8>,
    max_body: usize,
    body_timeout: Duration,
    /// Access tokens, when `[oauth]` accepts them at `/mcp`.
    oauth: Option<Arc<OAuth>>,
    /// `[clients.ID]` tokens are accepted.
    static_tokens: bool,
}

/// Who a request is: the client id, and for an access token what its scopes allow (a
/// static token or the anonymous client may do everything).
pub type Principal = (String, Option<Arc<Grant>>);

/// The challenge of a static-token-only `/mcp`.
const STATIC_CHALLENGE: &str = r#"Bearer realm="mcpq", error="invalid_token""#;

impl Mcp {
    /// `served`: the address the daemon's listener is bound to (its Origin defaults).
    pub fn new(
        app: Arc<App>,
        settings: &Settings,
        served: std::net::SocketAddr,
        oauth: Option<Arc<OAuth>>,
    ) -> Mcp {
        Mcp {
            app,
            origin_policy: http::OriginPolicy::new(
                &settings.mcp.allowed_hosts,
                &settings.mcp.allowed_origins,
                served,
            ),
            anonymous_client: settings.mcp.anonymous_client.clone(),
            pending_answers: Default::default(),
            max_pending_questions: settings.mcp.max_pending_questions_per_client,
            held_poll: std::time::Duration::from_millis(settings.mcp.held_poll_ms.max(1)),
            request_state_key: {
                use hmac::Mac;
                let mut m = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(
                    settings.server.secret.expose(),
                )
                .expect("HMAC takes any key length");
                m.update(b"mcpq/mcp-request-state/v1");
                m.finalize().into_bytes().to_vec()
            },
            max_body: settings.server.max_body_bytes,
            body_timeout: Duration::from_millis(settings.server.body_timeout_ms),
            oauth,
            static_tokens: settings.oauth.static_tokens(),
        }
    }

    /// The OAuth validator, when `/mcp` takes access tokens.
    pub fn oauth(&self) -> Option<&Arc<OAuth>> {
        self.oauth.as_ref()
    }

    /// The Protected Resource Metadata (RFC 9728) if `path` is one of its well-known paths.
    pub fn resource_metadata(&self, path: &str) -> Option<HttpResponse> {
        let oauth = self.oauth.as_ref()?;
        if !oauth.metadata_paths().iter().any(|p| p == path) {
            return None;
        }
        let tools: Vec<String> = self
            .app
            .registry()
            .iter()
            .map(|t| t.name().to_string())
            .collect();
        Some(crate::http::json_response(
            200,
            oauth.metadata(&tools).to_string(),
        ))
    }

    fn refused(&self, refusal: Option<Refusal>) -> McpError {
        let Some(oauth) = &self.oauth else {
            return McpError::Unauthorized {
                challenge: STATIC_CHALLENGE.into(),
                why: None,
            };
        };
        let challenge = oauth.challenge(refusal.as_ref());
        match refusal {
            Some(Refusal::InsufficientScope(scope)) => {
                McpError::InsufficientScope { scope, challenge }
            }
            Some(Refusal::Invalid(why)) => McpError::Unauthorized {
                challenge,
                why: Some(why),
            },
            None => McpError::Unauthorized {
                challenge,
                why: None,
            },
        }
    }

    /// The 403 for a grant that lacks `scope`.
    pub fn insufficient_scope(&self, scope: String) -> McpError {
        self.refused(Some(Refusal::InsufficientScope(scope)))
    }

    /// The key that seals multi-round calls' `requestState` (`input`).
    pub fn request_state_key(&self) -> &[u8] {
        &self.request_state_key
    }

    /// Who a request is: its static bearer token's client, its access token's grant, or
    /// with no credentials at all the configured anonymous client, if any (loopback only).
    async fn client_of(&self, headers: &hyper::HeaderMap) -> Result<Principal, McpError> {
        let Some(token) = http::bearer(headers) else {
            if !headers.contains_key(hyper::header::AUTHORIZATION)
                && !self.anonymous_client.is_empty()
            {
                return Ok((self.anonymous_client.clone(), None));
            }
            return Err(self.refused(None));
        };
        if self.static_tokens {
            if let Some(c) = self.app.bearer_client(token) {
                return Ok((c, None));
            }
        }
        let Some(oauth) = &self.oauth else {
            return Err(self.refused(None));
        };
        let now_secs = self.app.now_ms().div_euclid(1000);
        match Box::pin(oauth.validate(token, now_secs)).await {
            Ok(grant) => Ok((grant.client.clone(), Some(grant))),
            Err(r) => Err(self.refused(Some(r))),
        }
    }

    /// Who gets in, before the body is read: method, Host/Origin, token, content type,
    /// accepted response types.
    async fn admit(&self, req: &Request<Incoming>) -> Result<(Principal, http::Accepts), McpError> {
        if req.method() != Method::POST {
            return Err(McpError::MethodNotAllowed);
        }
        self.origin_policy.check(req.headers())?;
        let client = self.client_of(req.headers()).await.inspect_err(|e| {
            let reason = match e {
                McpError::InsufficientScope { .. } => "insufficient_scope",
                _ => "bad_token",
            };
            metrics::counter!(crate::telemetry::names::AUTH_FAILURES, "reason" => reason)
                .increment(1);
            // Who and what are unknown before the token is: coalesced (docs/AUDIT.md).
            let facts = crate::audit::writer::CallFacts {
                via: "mcp",
                client: "",
                tool: "",
                args: None,
                request_id: "",
            };
            self.app
                .audit()
                .refusal(self.app.now_ms(), &facts, e.audit_code());
        })?;
        if !crate::http::json_content_type(req) {
            return Err(McpError::UnsupportedMediaType);
        }
        Ok((client, http::accepts(req.headers())?))
    }

    /// The body as JSON, under `/v1/call`'s limits (size, time, strict JSON).
    async fn read_message(&self, body: Incoming) -> Result<Value, McpError> {
        let body = crate::http::read_body(body, self.max_body, self.body_timeout).await?;
        Ok(crate::json::parse(&body)
            .map_err(|e| McpError::Parse(e.to_string()))?
            .to_serde())
    }

    /// Serves one request to `/mcp`.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> HttpResponse {
        let null = Value::Null;
        let ((client, grant), accepts) = match self.admit(&req).await {
            Ok(a) => a,
            Err(e) => return fail(&e, &null),
        };
        let (parts, body) = req.into_parts();
        let head = Request::from_parts(parts, ());
        let message = match self.read_message(body).await {
            Ok(m) => m,
            Err(e) => return fail(&e, &null),
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
                self.pending_answers.deliver(&client, obj);
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
        let request = dispatch::Request {
            head,
            client,
            grant,
            method,
            id: &id,
            params: obj.get("params").cloned().unwrap_or_else(|| json!({})),
            accepts,
        };
        dispatch::serve(self.clone(), request, &message).await
    }
}
