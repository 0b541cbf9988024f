//! A `tools/call` to a stateless HTTP upstream (plain `http://`; revision 2026-07-28, or a
//! 2025 revision whose server keeps no sessions) made by mcpq itself: one POST on a
//! keep-alive connection pool, its answer read as one JSON body or as the call's SSE stream
//! (progress and log notifications, then the answer).
//!
//! Why not rmcp's client for this one request: rmcp's client spends 65-90 µs of CPU per
//! call on its channels, tasks and envelopes, several times the whole `/mcp` request mcpq
//! serves in front of it, which made a pass-through cost more than the server it fronts
//! (BENCHMARKS.md, "Sync pass-through"). The session around the call stays rmcp's:
//! discovery, listing, `notifications/cancelled`, `tasks/get` and every upstream that keeps
//! sessions on the 2025 revisions (whose calls belong to a session and may carry the
//! server's own requests) or is behind TLS.
//!
//! It owns the request's bytes and reading the response into rmcp's result types. It must
//! not decide what a result means ([`super::call`] does) or keep sessions ([`super`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, CONTENT_TYPE};
use rmcp::model::{
    CallToolResult, InputResponses, NumberOrString, ProgressNotificationParam, ProgressToken,
    ProtocolVersion, ServerResult,
};
use serde::Deserialize;
use tokio::sync::mpsc;

use super::asking::{InFlight, Reply};
use super::connections::{Connections, SendError};
use super::session::{client_config, Calls};
use super::Slot;
use crate::config::upstreams::{Transport, UpstreamDef};
use crate::tools::{JobCtx, JobError};

/// Room for the JSON-RPC envelope around a result of the call's output cap.
const ENVELOPE: usize = 64 * 1024;
/// How long the probe of a 2025 upstream's sessions may take.
const PROBE_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// How one upstream is called directly.
pub struct Direct {
    upstream: String,
    connections: Connections,
    /// The endpoint's path (and query): requests go in origin form, with a `Host` header.
    path: hyper::Uri,
    /// The upstream's static headers, the revision's and ours.
    headers: HeaderMap,
    /// The revision's per-request envelope (`_meta` members without the braces and the
    /// progress token, with a trailing comma; empty before 2026-07-28), the same for
    /// every call.
    meta: String,
    /// 2026-07-28: the method and the tool's name travel in headers too.
    modern: bool,
    next: AtomicU64,
}

impl Direct {
    /// For a session on `version` with an `http://` upstream that keeps no sessions (any on
    /// 2026-07-28; on a 2025 revision, one whose answer to `initialize` names none); `None`
    /// for any other (rmcp calls those).
    pub async fn for_session(
        def: &UpstreamDef,
        version: Option<&ProtocolVersion>,
    ) -> Option<Arc<Self>> {
        let this = Self::new(def, version?)?;
        if this.modern || this.keeps_no_sessions().await {
            Some(Arc::new(this))
        } else {
            None
        }
    }

    fn new(def: &UpstreamDef, version: &ProtocolVersion) -> Option<Self> {
        let Transport::Http {
            url,
            headers,
            connect_timeout,
        } = &def.transport
        else {
            return None;
        };
        let modern = *version >= ProtocolVersion::V_2026_07_28;
        let uri: hyper::Uri = url.parse().ok()?;
        if uri.scheme_str() != Some("http") {
            return None;
        }
        // reqwest honours the proxy variables; a call must take the same way as its session.
        if ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"]
            .iter()
            .any(|k| std::env::var_os(k).is_some_and(|v| !v.is_empty()))
        {
            return None;
        }
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            let name = HeaderName::from_bytes(k.as_bytes()).ok()?;
            let mut value = HeaderValue::from_bytes(v.expose()).ok()?;
            value.set_sensitive(true);
            h.insert(name, value);
        }
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(
            ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        h.insert(
            "mcp-protocol-version",
            HeaderValue::from_str(version.as_str()).ok()?,
        );
        if modern {
            h.insert("mcp-method", HeaderValue::from_static("tools/call"));
        }
        let config = client_config();
        let mut meta = serde_json::Map::new();
        meta.insert(
            "io.modelcontextprotocol/protocolVersion".into(),
            version.as_str().into(),
        );
        meta.insert(
            "io.modelcontextprotocol/clientInfo".into(),
            serde_json::to_value(&config.client_info).ok()?,
        );
        meta.insert(
            "io.modelcontextprotocol/clientCapabilities".into(),
            serde_json::to_value(&config.capabilities).ok()?,
        );
        let meta = if modern {
            let meta = serde_json::Value::Object(meta).to_string();
            format!("{},", &meta[1..meta.len() - 1])
        } else {
            String::new()
        };
        let authority = uri.authority()?;
        h.insert(
            hyper::header::HOST,
            HeaderValue::from_str(authority.as_str()).ok()?,
        );
        let path = uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse()
            .ok()?;
        let authority = format!(
            "{}:{}",
            authority.host(),
            authority.port_u16().unwrap_or(80)
        );
        Some(Self {
            upstream: def.name.clone(),
            connections: Connections::new(authority, *connect_timeout),
            path,
            headers: h,
            meta,
            modern,
            next: AtomicU64::new(1),
        })
    }

    /// Whether a 2025 upstream keeps no sessions: its answer to an `initialize` of its own
    /// names none. A call of a session must carry the session's id and may bring the
    /// server's requests, which only rmcp's session answers. A session the probe opened
    /// is ended again.
    async fn keeps_no_sessions(&self) -> bool {
        let init = serde_json::json!({
            "jsonrpc": "2.0",
            "id": "mcpq-probe",
            "method": "initialize",
            "params": client_config().with_protocol_version(ProtocolVersion::V_2025_11_25),
        });
        let Ok(mut req) =
            hyper::Request::post(self.path.clone()).body(Full::new(Bytes::from(init.to_string())))
        else {
            return false;
        };
        *req.headers_mut() = self.headers.clone();
        req.headers_mut().remove("mcp-protocol-version");
        let read = |resp: hyper::Response<hyper::body::Incoming>| async move {
            let ok = resp.status().is_success();
            let session = resp.headers().get("mcp-session-id").cloned();
            // Read to its end, so the connection is kept for calls.
            let read = Limited::new(resp.into_body(), ENVELOPE)
                .collect()
                .await
                .is_ok();
            (ok && read, session)
        };
        let probe = tokio::time::timeout(PROBE_LIMIT, self.connections.exchange(req, read));
        match probe.await {
            Ok(Ok((true, None))) => true,
            Ok(Ok((_, Some(session)))) => {
                if let Ok(mut end) = hyper::Request::delete(self.path.clone()).body(Full::default())
                {
                    *end.headers_mut() = self.headers.clone();
                    end.headers_mut().insert("mcp-session-id", session);
                    let drain = |resp: hyper::Response<hyper::body::Incoming>| async move {
                        let _ = Limited::new(resp.into_body(), ENVELOPE).collect().await;
                    };
                    let _ =
                        tokio::time::timeout(PROBE_LIMIT, self.connections.exchange(end, drain))
                            .await;
                }
                false
            }
            Ok(Ok((false, None))) | Ok(Err(_)) | Err(_) => false,
        }
    }

    /// Whether a call of `tool` can go this way: its name travels in a header, so it must be
    /// one a header can carry as it is (rmcp's client sends any other).
    pub fn carries(tool: &str) -> bool {
        HeaderValue::from_str(tool).is_ok()
    }

    /// Sends `tools/call` of `tool` (with the client's answers and the upstream's state of a
    /// multi-round call) on `slot`'s upstream; the call in flight. Its result may be at most
    /// `max_output` bytes (plus its envelope) on the wire.
    #[allow(clippy::too_many_arguments)]
    pub fn send(
        self: &Arc<Self>,
        slot: Arc<Slot>,
        tool: &str,
        args_json: &str,
        answers: Option<&str>,
        state: Option<String>,
        ctx: &JobCtx,
        max_output: usize,
    ) -> Result<InFlight, JobError> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let id: Arc<str> = format!("mcpq-{n}").into();
        let name = HeaderValue::from_str(tool)
            .map_err(|_| JobError::Fatal(format!("invalid_args: tool name {tool:?}")))?;
        let body = self.body(&id, tool, args_json, answers, state)?;
        let mut req = hyper::Request::post(self.path.clone())
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| JobError::Fatal(format!("invalid_args: {e}")))?;
        *req.headers_mut() = self.headers.clone();
        if self.modern {
            req.headers_mut().insert("mcp-name", name);
        }
        let token = ProgressToken(NumberOrString::String(id.clone()));
        slot.calls.add(token.clone(), ctx.clone(), None);
        let (this, calls) = (self.clone(), slot.calls.clone());
        let limit = max_output.saturating_add(ENVELOPE);
        let answer_id = id.clone();
        let response = Box::pin(async move { this.exchange(req, &answer_id, &calls, limit).await });
        // Nothing asks during a call on this revision (a question is a result), so no
        // question ever arrives here.
        let (_, questions) = mpsc::channel(1);
        Ok(InFlight {
            id: NumberOrString::String(id),
            token,
            response,
            questions,
            slot,
        })
    }

    fn body(
        &self,
        id: &str,
        tool: &str,
        args_json: &str,
        answers: Option<&str>,
        state: Option<String>,
    ) -> Result<Vec<u8>, JobError> {
        let invalid = |e: serde_json::Error| JobError::Fatal(format!("invalid_args: {e}"));
        let mut b = Vec::with_capacity(self.meta.len() + args_json.len() + 160);
        b.extend_from_slice(br#"{"jsonrpc":"2.0","id":""#);
        b.extend_from_slice(id.as_bytes());
        b.extend_from_slice(br#"","method":"tools/call","params":{"_meta":{"#);
        b.extend_from_slice(self.meta.as_bytes());
        b.extend_from_slice(br#""progressToken":""#);
        b.extend_from_slice(id.as_bytes());
        b.extend_from_slice(br#""},"name":"#);
        serde_json::to_writer(&mut b, tool).map_err(invalid)?;
        // The call's arguments as mcpq keeps them: one JSON object, checked against the
        // tool's schema before anything ran.
        b.extend_from_slice(br#","arguments":"#);
        b.extend_from_slice(args_json.as_bytes());
        if let Some(text) = answers {
            // Checked as the revision's type, as rmcp's client would before sending.
            let answers: InputResponses = serde_json::from_str(text)
                .map_err(|e| JobError::Fatal(format!("invalid_args: inputResponses: {e}")))?;
            b.extend_from_slice(br#","inputResponses":"#);
            serde_json::to_writer(&mut b, &answers).map_err(invalid)?;
        }
        if let Some(state) = state {
            b.extend_from_slice(br#","requestState":"#);
            serde_json::to_writer(&mut b, &state).map_err(invalid)?;
        }
        b.extend_from_slice(b"}}");
        Ok(b)
    }

    /// The POST and its answer.
    async fn exchange(
        &self,
        req: hyper::Request<Full<Bytes>>,
        id: &str,
        calls: &Calls,
        limit: usize,
    ) -> Result<Reply, JobError> {
        let name = &self.upstream;
        let read = |resp| self.read(resp, id, calls, limit);
        match self.connections.exchange(req, read).await {
            Ok(answer) => answer,
            Err(SendError::Connect(e)) => Err(JobError::Retryable(format!(
                "upstream_unreachable: {name}: {e}"
            ))),
            Err(SendError::Lost(e)) => {
                Err(JobError::Retryable(format!("upstream_lost: {name}: {e}")))
            }
        }
    }

    /// The answer to the POST, read while its connection moves.
    async fn read(
        &self,
        resp: hyper::Response<hyper::body::Incoming>,
        id: &str,
        calls: &Calls,
        limit: usize,
    ) -> Result<Reply, JobError> {
        let name = &self.upstream;
        let status = resp.status();
        let sse = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if sse && status.is_success() {
            return Box::pin(self.stream(resp.into_body(), id, calls, limit)).await;
        }
        let body = Limited::new(resp.into_body(), limit)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    too_large(limit)
                } else {
                    JobError::Retryable(format!("upstream_lost: {name}: {e}"))
                }
            })?
            .to_bytes();
        let parsed: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
        if !status.is_success() {
            // A JSON-RPC error says more than the status; without one the status decides
            // whether another attempt could fare better.
            if let Some(e) = parsed.as_ref().and_then(|v| v.get("error")) {
                return Err(rpc_error(e));
            }
            let preview = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            let why = format!("{name}: HTTP {status}: {preview}");
            return Err(if status.is_server_error() || status.as_u16() == 429 {
                JobError::Retryable(format!("upstream_lost: {why}"))
            } else {
                JobError::Fatal(format!("upstream_error: {why}"))
            });
        }
        match parsed {
            Some(v) if is_answer(&v, id) => reply(v),
            _ => Err(JobError::Fatal(format!(
                "invalid_output: the upstream's answer to tools/call is not a JSON-RPC response to it: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ))),
        }
    }

    /// The call's SSE stream: notifications until the answer. Each event may be at most
    /// `limit` bytes.
    async fn stream(
        &self,
        mut body: hyper::body::Incoming,
        id: &str,
        calls: &Calls,
        limit: usize,
    ) -> Result<Reply, JobError> {
        let name = &self.upstream;
        let mut buf = BytesMut::new();
        let mut data = Vec::new();
        loop {
            while let Some(end) = buf.iter().position(|b| *b == b'\n') {
                let line = buf.split_to(end + 1);
                let line = line.strip_suffix(b"\n").unwrap_or(&line);
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if line.is_empty() {
                    if !data.is_empty() {
                        if let Some(answer) = self.event(&data, id, calls) {
                            return answer;
                        }
                        data.clear();
                    }
                } else if let Some(d) = line.strip_prefix(b"data:") {
                    if !data.is_empty() {
                        data.push(b'\n');
                    }
                    data.extend_from_slice(d.strip_prefix(b" ").unwrap_or(d));
                }
                // `event:`, `id:`, `retry:` and comments say nothing a call needs.
            }
            if buf.len() + data.len() > limit {
                return Err(too_large(limit));
            }
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(mut chunk) = frame.into_data() {
                        while chunk.has_remaining() {
                            let c = chunk.chunk();
                            buf.extend_from_slice(c);
                            let n = c.len();
                            chunk.advance(n);
                        }
                    }
                }
                Some(Err(e)) => {
                    return Err(JobError::Retryable(format!("upstream_lost: {name}: {e}")))
                }
                None => {
                    return Err(JobError::Retryable(format!(
                        "upstream_lost: {name}: the call's stream ended without its answer"
                    )))
                }
            }
        }
    }

    /// One SSE event's message: the call's answer, or a notification passed on.
    fn event(&self, data: &[u8], id: &str, calls: &Calls) -> Option<Result<Reply, JobError>> {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
            tracing::warn!(upstream = %self.upstream, "an event on the call's stream is not JSON; ignored");
            return None;
        };
        match v.get("method").and_then(serde_json::Value::as_str) {
            Some(method) if v.get("id").is_some() => {
                // The 2026 revision asks with a result, not a request on the stream; a
                // server without sessions could not take the answer.
                tracing::warn!(upstream = %self.upstream, method, "the upstream sent a request on a stateless call's stream; not answered");
                None
            }
            Some("notifications/progress") => {
                if let Some(p) = v.get("params").and_then(|p| {
                    serde_json::from_value::<ProgressNotificationParam>(p.clone()).ok()
                }) {
                    calls.progress(p);
                }
                None
            }
            Some("notifications/message") => {
                #[allow(deprecated)]
                if let Some(p) = v.get("params").and_then(|p| {
                    serde_json::from_value::<rmcp::model::LoggingMessageNotificationParam>(
                        p.clone(),
                    )
                    .ok()
                }) {
                    calls.log(p);
                }
                None
            }
            Some(_) => None,
            None if is_answer(&v, id) => Some(reply(v)),
            None => None,
        }
    }
}

fn is_answer(v: &serde_json::Value, id: &str) -> bool {
    v.get("id").and_then(serde_json::Value::as_str) == Some(id)
}

fn too_large(limit: usize) -> JobError {
    JobError::Fatal(format!(
        "output_too_large: the upstream's result exceeded {} bytes",
        limit.saturating_sub(ENVELOPE)
    ))
}

fn rpc_error(e: &serde_json::Value) -> JobError {
    let code = e
        .get("code")
        .and_then(serde_json::Value::as_i64)
        .unwrap_or(0);
    let message = e
        .get("message")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("");
    JobError::Fatal(format!("upstream_error: {code} {message}"))
}

/// A JSON-RPC response to `tools/call` as rmcp's result: a tool result, or (a task, a
/// question for the client) whichever of the revision's results it is.
fn reply(mut v: serde_json::Value) -> Result<Reply, JobError> {
    if let Some(e) = v.get("error") {
        return Err(rpc_error(e));
    }
    let Some(result) = v.get_mut("result").map(serde_json::Value::take) else {
        return Err(JobError::Fatal(
            "invalid_output: the upstream's answer has neither result nor error".into(),
        ));
    };
    let plain = result.get("task").is_none()
        && matches!(
            result.get("resultType").and_then(serde_json::Value::as_str),
            None | Some("complete")
        );
    let invalid = |e: serde_json::Error| {
        JobError::Fatal(format!(
            "invalid_output: the upstream's answer to tools/call is not a tool result: {e}"
        ))
    };
    if plain {
        // Checked as rmcp's type would read it, then passed on as it came.
        CallToolResult::deserialize(&result).map_err(invalid)?;
        Ok(Reply::Tool(result))
    } else {
        serde_json::from_value::<ServerResult>(result)
            .map(|r| Reply::Server(Box::new(r)))
            .map_err(invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_tool_whose_name_a_header_cannot_carry_goes_through_rmcp() {
        assert!(Direct::carries("batch_sum"));
        assert!(Direct::carries("get-sum.v2"));
        assert!(!Direct::carries("line\nbreak"));
    }

    #[test]
    fn a_tool_result_is_read_as_one_and_an_error_is_the_upstreams() {
        let r = reply(
            json!({"jsonrpc":"2.0","id":"mcpq-1","result":{"resultType":"complete","content":[{"type":"text","text":"hi"}],"isError":false}}),
        );
        assert!(matches!(r, Ok(Reply::Tool(_))), "{r:?}");
        let e = reply(
            json!({"jsonrpc":"2.0","id":"mcpq-1","error":{"code":-32602,"message":"no such tool"}}),
        );
        assert!(
            matches!(&e, Err(JobError::Fatal(m)) if m == "upstream_error: -32602 no such tool"),
            "{e:?}"
        );
        let q = reply(
            json!({"jsonrpc":"2.0","id":"mcpq-1","result":{"resultType":"input_required","inputRequests":{},"requestState":"s"}}),
        );
        assert!(
            matches!(q, Ok(Reply::Server(ref r)) if matches!(**r, ServerResult::InputRequiredResult(_))),
            "{q:?}"
        );
        let bad = reply(json!({"jsonrpc":"2.0","id":"mcpq-1"}));
        assert!(
            matches!(&bad, Err(JobError::Fatal(m)) if m.starts_with("invalid_output")),
            "{bad:?}"
        );
    }
}
