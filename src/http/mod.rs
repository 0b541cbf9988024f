//! HTTP plumbing every transport shares: the response body (whole, or server-sent events
//! fed by a task), the few response builders, bounded body reading, and the listener with
//! its connection limits.
//!
//! It must not know any endpoint or what a request means: routing is `server::router`,
//! `/v1/call` is `v1`, `/mcp` is `mcp`.

pub mod body;
pub mod listener;
pub mod overload;
pub mod sse;

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, StatusCode};

pub use self::body::{linger, read_body};
pub use self::sse::SseBody;

pub type HttpResponse = hyper::Response<Body>;

/// A handler another module hands to a listener it does not know (the console on the
/// metrics listener).
pub type Handler = std::sync::Arc<
    dyn Fn(
            Request<Incoming>,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = HttpResponse> + Send>>
        + Send
        + Sync,
>;

/// A response body: whole (every answer of `/v1/call`), or server-sent events fed by a
/// task (a held `/mcp` call streaming progress).
pub enum Body {
    Full(Full<Bytes>),
    Sse(SseBody),
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Body::Full(b) => std::pin::Pin::new(b).poll_frame(cx),
            Body::Sse(b) => std::pin::Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Full(b) => b.is_end_stream(),
            Body::Sse(_) => false,
        }
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self {
            Body::Full(b) => b.size_hint(),
            Body::Sse(_) => hyper::body::SizeHint::default(),
        }
    }
}

pub fn json_response(status: u16, body: String) -> HttpResponse {
    let mut r = hyper::Response::new(Body::Full(Full::new(Bytes::from(body))));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

pub fn plain(status: u16, body: &'static str) -> HttpResponse {
    plain_text(status, Bytes::from_static(body.as_bytes()))
}

/// A plain-text answer whose text is made per request (a probe saying why it fails).
pub fn plain_text(status: u16, body: impl Into<Bytes>) -> HttpResponse {
    let mut r = hyper::Response::new(Body::Full(Full::new(body.into())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

/// Adds `Retry-After` in whole seconds, rounded up: a client waiting that long finds room.
pub fn with_retry_after(mut r: HttpResponse, retry_after_ms: Option<u64>) -> HttpResponse {
    if let Some(ms) = retry_after_ms {
        let secs = ms.div_ceil(1000).max(1);
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            r.headers_mut().insert(hyper::header::RETRY_AFTER, v);
        }
    }
    r
}

/// Whether the request declares a JSON body (`application/json`, parameters allowed).
pub fn json_content_type(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/json")
        })
        .unwrap_or(false)
}

/// The names a loopback listener answers to (DNS-rebinding protection): a page of another
/// site that rebinds its name to 127.0.0.1 still sends its own name as `Host`.
pub const LOOPBACK_NAMES: [&str; 4] = ["localhost", "127.0.0.1", "[::1]", "::1"];

/// `host:port` or `[v6]:port` → the host.
pub fn strip_port(host: &str) -> String {
    if let Some(rest) = host.strip_prefix('[') {
        if let Some((h, _)) = rest.split_once(']') {
            return format!("[{h}]");
        }
    }
    match host.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h.to_string(),
        _ => host.to_string(),
    }
}

/// Whether a request to a listener bound to `bound` names a host it may serve: on
/// loopback only the loopback names; elsewhere any (the operator firewalls it).
pub fn host_allowed(bound: std::net::SocketAddr, headers: &hyper::HeaderMap) -> bool {
    if !bound.ip().is_loopback() {
        return true;
    }
    let host = headers
        .get(hyper::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    LOOPBACK_NAMES.contains(&strip_port(&host).as_str())
}
