//! A signing `mcp/0.1` client over one keep-alive HTTP/1.1 connection.
//!
//! Used by `mcpq call`, `mcpq bench` and the integration tests: it builds
//! envelopes with a fresh request_id, nonce and timestamp, signs them with the
//! client's key, and verifies every response's signature with the server's key.
//!
//! It must not share code paths with the server's verification beyond the
//! `envelope` module, so a bug there cannot hide itself on both sides.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::clock::{Clock, SystemClock};
use crate::config::ClientSettings;
use crate::envelope::{self, VerifiedResponse, VerifyError};
use crate::json::{Json, Object};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid url {0:?}: expected http://host:port")]
    Url(String),
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("http: {0}")]
    Http(#[from] hyper::Error),
    #[error("http request: {0}")]
    Request(#[from] hyper::http::Error),
    #[error(transparent)]
    Verify(#[from] VerifyError),
}

/// Host and port of an `http://host:port[/...]` URL.
pub fn authority(url: &str) -> Result<String, ClientError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| ClientError::Url(url.to_string()))?;
    let auth = rest.split('/').next().unwrap_or("");
    if auth.is_empty() {
        return Err(ClientError::Url(url.to_string()));
    }
    Ok(if auth.contains(':') {
        auth.to_string()
    } else {
        format!("{auth}:80")
    })
}

pub struct Client {
    settings: ClientSettings,
    authority: String,
    sender: http1::SendRequest<Full<Bytes>>,
}

/// A raw HTTP answer, before any verification.
#[derive(Debug)]
pub struct RawReply {
    pub status: u16,
    pub body: Bytes,
}

impl Client {
    pub async fn connect(settings: ClientSettings) -> Result<Client, ClientError> {
        let authority = authority(&settings.url)?;
        let stream =
            TcpStream::connect(&authority)
                .await
                .map_err(|source| ClientError::Connect {
                    addr: authority.clone(),
                    source,
                })?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Client {
            settings,
            authority,
            sender,
        })
    }

    pub fn settings(&self) -> &ClientSettings {
        &self.settings
    }

    /// A signed envelope for `tool` with a fresh request_id, nonce and the current time.
    pub fn envelope(&self, tool: &str, args: Object) -> Object {
        self.envelope_at(tool, args, SystemClock.now_ms())
    }

    pub fn envelope_at(&self, tool: &str, args: Object, ts_ms: i64) -> Object {
        envelope::sign_envelope(
            envelope::Unsigned {
                client_id: &self.settings.client_id,
                server_id: &self.settings.server_id,
                tool,
                args,
                ts_ms,
                request_id: uuid::Uuid::new_v4().to_string(),
                nonce: uuid::Uuid::new_v4().to_string(),
            },
            self.settings.secret.expose(),
        )
    }

    /// POSTs raw bytes to `path` with the given content type.
    pub async fn post(
        &mut self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<RawReply, ClientError> {
        self.post_with(path, content_type, &[], body).await
    }

    /// [`Client::post`] with extra headers (`/mcp`: a bearer token, protocol headers).
    pub async fn post_with(
        &mut self,
        path: &str,
        content_type: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<RawReply, ClientError> {
        self.sender.ready().await?;
        let mut req = Request::post(path)
            .header(HOST, &self.authority)
            .header(CONTENT_TYPE, content_type);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::from(body)))?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(RawReply { status, body })
    }

    /// Sends a prepared envelope and verifies the response signature.
    pub async fn send(
        &mut self,
        envelope: &Object,
    ) -> Result<(u16, VerifiedResponse), ClientError> {
        let body = Json::Object(envelope.clone()).to_canonical().into_bytes();
        let reply = self.post("/v1/call", "application/json", body).await?;
        let verified =
            envelope::verify_response(&reply.body, self.settings.server_secret.expose())?;
        Ok((reply.status, verified))
    }

    /// Signs, sends and verifies one call of a job tool with the envelope's `job` field
    /// (`{priority, delay_ms, not_before_ms}`, docs/FLOW.md).
    pub async fn call_job(
        &mut self,
        tool: &str,
        args: Object,
        job: Object,
    ) -> Result<VerifiedResponse, ClientError> {
        let env = envelope::with_job_options(
            self.envelope(tool, args),
            job,
            self.settings.secret.expose(),
        );
        Ok(self.send(&env).await?.1)
    }

    /// Signs, sends and verifies one call.
    pub async fn call(
        &mut self,
        tool: &str,
        args: Object,
    ) -> Result<VerifiedResponse, ClientError> {
        let env = self.envelope(tool, args);
        Ok(self.send(&env).await?.1)
    }
}
