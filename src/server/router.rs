//! Which transport answers a request: `/mcp` (and with `[oauth]` its Protected Resource
//! Metadata under `/.well-known/oauth-protected-resource`) to standard MCP, `POST /v1/call` to the
//! signed pipeline, the two probes (`/healthz`, `/readyz`), and a signed `/v1/call`-style
//! refusal for anything else.
//!
//! It must not answer a call itself: `v1` and `mcp` do.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request};

use crate::app::App;
use crate::envelope::CallError;
use crate::http::{plain, plain_text, HttpResponse};
use crate::mcp::Mcp;
use crate::v1::V1;

/// The transports of one daemon over one core.
pub struct Router {
    pub app: Arc<App>,
    pub v1: V1,
    pub mcp: Arc<Mcp>,
}

impl Router {
    /// Ready while the store answers: a store this process found down stays not ready until
    /// its probe passes (`store::status`), so the answer does not flap with each request.
    async fn ready(&self) -> HttpResponse {
        let status = self.app.store().status();
        if let Some(outage) = status.describe() {
            return plain_text(503, format!("{outage}\n"));
        }
        match self.app.store().ping().await {
            Ok(()) => plain(200, "ready\n"),
            Err(e) => {
                let why = status.fault("readiness check", &e);
                let why = why.unwrap_or_else(|| e.to_string());
                plain_text(503, format!("database unavailable ({why})\n"))
            }
        }
    }

    pub async fn route(self: Arc<Self>, req: Request<Incoming>) -> HttpResponse {
        let path = req.uri().path();
        match (req.method(), path) {
            (_, "/mcp") => self.mcp.clone().handle(req).await,
            (&Method::GET, p) if p.starts_with("/.well-known/oauth-protected-resource") => {
                match self.mcp.resource_metadata(p) {
                    Some(r) => r,
                    None => self.v1.error_response(CallError::NotFound),
                }
            }
            (&Method::GET, "/healthz") => plain(200, "ok\n"),
            (&Method::GET, "/readyz") => self.ready().await,
            (&Method::POST, "/v1/call") => self.v1.handle(req).await,
            (_, "/v1/call") => self.v1.error_response(CallError::MethodNotAllowed),
            _ => self.v1.error_response(CallError::NotFound),
        }
    }
}
