//! The HTTP daemon: listener, connection limits and timeouts, routing, and the
//! request pipeline that turns one body into one signed response.
//!
//! Built and run apart (`Server::build` → `local_addr` → `run_until_stopped`) so
//! tests can bind port 0. The pipeline's order is the documented check order:
//! size cap → strict parse → version → server_id → timestamp → signature →
//! nonce → tool → args. Every failure becomes a signed response in exactly one
//! place (`App::respond`).
//!
//! It must not contain tool logic or SQL; it calls `auth`, `tools` and `store`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Authenticator;
use crate::clock::{Clock, SystemClock};
use crate::config::{Secret, Settings};
use crate::json::{self, Json, Object};
use crate::protocol::{self, CallError, Envelope, Response, Status};
use crate::store::{NewJob, Store, StoreError};
use crate::tools::{CallCtx, Registry, ServerInfo, SharedRegistry, Tool};
use crate::worker::{self, WorkerOptions};
use arc_swap::ArcSwap;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Activation(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Everything a request needs, shared by all connections.
pub struct App {
    auth: Authenticator,
    /// Swapped whole by a reload; shared with the embedded worker.
    registry: SharedRegistry,
    store: Arc<dyn Store>,
    info: ArcSwap<ServerInfo>,
    window_ms: i64,
    server_key: Secret,
    max_body: usize,
    body_timeout: Duration,
    max_attempts: u32,
    clock: Arc<dyn Clock>,
    /// Wakes embedded workers when a job is enqueued.
    job_added: Arc<Notify>,
    /// Count admitted calls per client (`metrics.client_labels`).
    client_labels: bool,
    limits: crate::limits::ClientLimits,
    origin_policy: crate::mcp::http::OriginPolicy,
    retention_ms: u64,
    anonymous_client: String,
    /// Questions tools asked 2025-11-25 clients over SSE, awaiting their answers.
    pending_answers: crate::mcp::bridge::Pending,
    /// Derived from the server secret (so any daemon of a deployment opens what another
    /// sealed) and distinct from the key that signs responses; once, at build.
    request_state_key: Vec<u8>,
}

/// What `/mcp` reads of the app (`crate::mcp`).
impl App {
    pub(crate) fn registry(&self) -> Arc<Registry> {
        self.registry.load_full()
    }
    pub(crate) fn pending_answers(&self) -> &crate::mcp::bridge::Pending {
        &self.pending_answers
    }
    pub(crate) fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }
    /// The key that seals multi-round calls' `requestState` (`mcp::input`).
    pub(crate) fn request_state_key(&self) -> &[u8] {
        &self.request_state_key
    }

    pub(crate) fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }
    /// How long a finished job stays readable (a task's TTL).
    pub(crate) fn retention_ms(&self) -> u64 {
        self.retention_ms
    }
    pub(crate) fn origin_policy(&self) -> &crate::mcp::http::OriginPolicy {
        &self.origin_policy
    }
    pub(crate) fn bearer_client(&self, token: &str) -> Option<String> {
        self.auth.bearer(token)
    }
    pub(crate) fn anonymous_client(&self) -> Option<String> {
        Some(self.anonymous_client.clone()).filter(|c| !c.is_empty())
    }
    pub(crate) fn admit_call(
        &self,
        client: &str,
        now: i64,
    ) -> Result<(), crate::limits::RetryAfterMs> {
        self.limits.admit_call(client, now)
    }
    /// A request body under `/v1/call`'s limits (size, time).
    pub(crate) async fn read_mcp_body(&self, body: Incoming) -> Result<Bytes, CallError> {
        read_body(body, self.max_body, self.body_timeout).await
    }
}

/// A signed answer and, for a refusal to retry later, its `Retry-After`.
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub retry_after_ms: Option<u64>,
}

pub type HttpResponse = hyper::Response<Body>;

/// A response body: whole (every answer of `/v1/call`), or server-sent events fed by a
/// task (a held `/mcp` call streaming progress).
pub enum Body {
    Full(Full<Bytes>),
    Sse(crate::mcp::http::SseBody),
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

/// One answered call in the metrics: by tool (`none` before an envelope was read,
/// `unknown` for a name no tool has) and outcome code.
fn count_request(tool: Option<&str>, code: &'static str, t0: std::time::Instant) {
    let tool = tool.map_or("none", |t| t).to_string();
    metrics::histogram!(crate::telemetry::REQUEST_SECONDS, "tool" => tool.clone())
        .record(t0.elapsed().as_secs_f64());
    metrics::counter!(crate::telemetry::REQUESTS, "tool" => tool, "code" => code).increment(1);
}

impl App {
    /// The one place an outcome becomes a signed response.
    fn respond(
        &self,
        request_id: String,
        outcome: Result<(Status, Option<Object>), CallError>,
    ) -> Answer {
        let now = self.clock.now_ms();
        let server_id = self.info.load().server_id.clone();
        let (status, retry_after_ms, resp) = match outcome {
            Ok((status, result)) => (
                200,
                None,
                Response::ok(request_id, server_id, now, status, result),
            ),
            Err(e) => (
                e.http_status(),
                e.retry_after_ms(),
                Response::error(request_id, server_id, now, &e),
            ),
        };
        Answer {
            status,
            body: resp.sign(self.server_key.expose()),
            retry_after_ms,
        }
    }

    /// Handles one `POST /v1/call` body.
    pub async fn call(&self, body: &[u8]) -> Answer {
        let t0 = std::time::Instant::now();
        let parsed = match json::parse(body) {
            Ok(v) => v,
            Err(e) => {
                count_request(None, "malformed_json", t0);
                return self.respond(
                    protocol::salvage_request_id(body),
                    Err(CallError::MalformedJson(e.to_string())),
                );
            }
        };
        let request_id = match &parsed {
            Json::Object(o) => match o.get("request_id") {
                Some(Json::Str(s)) if s.len() <= protocol::MAX_ID_LEN => s.clone(),
                _ => String::new(),
            },
            _ => String::new(),
        };
        let env = match Envelope::from_json(parsed) {
            Ok(env) => env,
            Err(e) => {
                count_request(None, e.code(), t0);
                return self.respond(request_id, Err(e));
            }
        };
        // client_id joins once the signature proves it; job_id once the job is stored.
        let span = tracing::info_span!(
            "request",
            request_id = %crate::logging::Printable(&env.request_id),
            tool = %crate::logging::Printable(&env.tool),
            client_id = tracing::field::Empty,
            job_id = tracing::field::Empty,
        );
        let outcome = tracing::Instrument::instrument(
            async {
                let outcome = self.dispatch(&env).await;
                if let Err(e) = &outcome {
                    tracing::debug!(code = e.code(), "call refused");
                }
                outcome
            },
            span,
        )
        .await;
        // A tool label only for tools that exist: clients choose the names they send.
        let known = self.registry.load().get(&env.tool).is_some();
        let code = match &outcome {
            Ok(_) => "ok",
            Err(e) => e.code(),
        };
        count_request(Some(if known { &env.tool } else { "unknown" }), code, t0);
        self.respond(env.request_id.clone(), outcome)
    }

    async fn dispatch(&self, env: &Envelope) -> Result<(Status, Option<Object>), CallError> {
        let now = self.clock.now_ms();
        let nonce = self.auth.check(env, now).inspect_err(|e| {
            metrics::counter!(crate::telemetry::AUTH_FAILURES, "reason" => e.code()).increment(1);
        })?;
        tracing::Span::current().record("client_id", tracing::field::display(&env.client_id));
        if self.client_labels {
            // Only once the signature proved the id: a refused caller picks any name.
            metrics::counter!("mcpq_client_calls_total", "client" => env.client_id.0.clone())
                .increment(1);
        }
        // A job-creating call's nonce commits with its job; every other admitted nonce goes
        // to the store before the answer: written behind on a store of our own, decided by
        // the shared table on a shared one (see docs/PROTOCOL.md, "Replay protection").
        let write_behind = || async {
            match self.store.admit_nonce(nonce, now).await {
                Ok(true) => Ok(()),
                Ok(false) => Err(CallError::ReplayedNonce),
                Err(e) => Err(internal(e)),
            }
        };
        if let Err(crate::limits::RetryAfterMs(ms)) = self.limits.admit_call(&env.client_id.0, now)
        {
            write_behind().await?;
            return Err(CallError::RateLimited(ms));
        }
        // One registry for the whole call, even if a reload swaps it meanwhile.
        let registry = self.registry.load();
        match registry.get(&env.tool) {
            None => {
                write_behind().await?;
                Err(CallError::UnknownTool(env.tool.clone()))
            }
            Some(Tool::Sync(t)) => {
                write_behind().await?;
                let reply = self
                    .call_sync(t.as_ref(), &env.client_id, &env.args, now, None, None)
                    .await?;
                Ok((reply.status, reply.result))
            }
            Some(Tool::Job(t)) => {
                // The nonce commits with the job; a refused job writes it behind.
                match self
                    .enqueue_job(t, &env.client_id, &env.args, Some(nonce), now, None)
                    .await
                {
                    Ok(id) => {
                        let result = Object::from_pairs([("job_id".to_string(), Json::str(id.0))]);
                        Ok((Status::Accepted, Some(result)))
                    }
                    Err(e) => {
                        write_behind().await?;
                        Err(e)
                    }
                }
            }
        }
    }

    /// Runs a sync tool for a verified client (both endpoints).
    pub(crate) async fn call_sync(
        &self,
        t: &dyn crate::tools::SyncTool,
        client: &crate::protocol::ClientId,
        args: &Object,
        now: i64,
        input: Option<&crate::tools::runner::InputRound>,
        logs: Option<crate::tools::LogSink>,
    ) -> Result<crate::tools::Reply, CallError> {
        let info = self.info.load();
        let ctx = CallCtx {
            client_id: client,
            now_ms: now,
            store: self.store.as_ref(),
            server: &info,
            input,
            logs,
        };
        t.call(ctx, args).await
    }

    /// Validates a job tool's arguments and stores the job durably for a verified client
    /// (both endpoints): the id is returned only once the job is on disk. `answers`: what a
    /// `/mcp` client answered to the tool's declared questions, for its first attempt.
    pub(crate) async fn enqueue_job(
        &self,
        t: &Arc<dyn crate::tools::JobTool>,
        client: &crate::protocol::ClientId,
        args: &Object,
        nonce: Option<crate::auth::NonceRecord>,
        now: i64,
        answers: Option<String>,
    ) -> Result<crate::jobs::JobId, CallError> {
        let req = t.validate(args)?;
        if t.ask_first().is_some() && answers.is_none() {
            return Err(CallError::ToolFailed(
                "input_required: this tool asks its client questions before it runs, which only a \
                 standard MCP client of revision 2026-07-28 can answer (POST /mcp)"
                    .into(),
            ));
        }
        let admitted = self
            .limits
            .admit_job(&client.0, now, self.store.as_ref())
            .await
            .map_err(internal)?;
        if let Err(crate::limits::RetryAfterMs(ms)) = admitted {
            return Err(CallError::QueueFull(self.limits.max_queued(), ms));
        }
        let policy = t.policy();
        let job = NewJob {
            id: crate::jobs::JobId::generate(),
            client_id: client.clone(),
            tool: t.name().to_string(),
            args: Json::Object(req.args).to_canonical(),
            max_attempts: policy.max_attempts.unwrap_or(self.max_attempts),
            idempotency_key: req.idempotency_key,
            nonce,
            created_at: now,
            def: policy.definition,
            on_crash: policy.on_crash,
            capped: policy.concurrency.is_some(),
            input_responses: answers,
        };
        let enqueued = self.store.enqueue(job).await.map_err(|e| match e {
            StoreError::Replayed => CallError::ReplayedNonce,
            e => internal(e),
        })?;
        metrics::counter!(crate::telemetry::JOBS_ENQUEUED, "tool" => t.name().to_string())
            .increment(1);
        tracing::Span::current().record("job_id", tracing::field::display(&enqueued.id().0));
        self.job_added.notify_waiters();
        Ok(enqueued.id().clone())
    }

    async fn route(self: Arc<Self>, req: Request<Incoming>) -> HttpResponse {
        let path = req.uri().path();
        match (req.method(), path) {
            (_, "/mcp") => crate::mcp::handle(self, req).await,
            (&Method::GET, "/healthz") => plain(200, "ok\n"),
            (&Method::GET, "/readyz") => match self.store.ping().await {
                Ok(()) => plain(200, "ready\n"),
                Err(e) => {
                    tracing::warn!(error = %e, "readiness check failed");
                    plain(503, "database unavailable\n")
                }
            },
            (&Method::POST, "/v1/call") => self.route_call(req).await,
            (_, "/v1/call") => self.error_response(CallError::MethodNotAllowed),
            _ => self.error_response(CallError::NotFound),
        }
    }

    async fn route_call(&self, req: Request<Incoming>) -> HttpResponse {
        let json_type = crate::mcp::http::json_content_type(&req);
        if !json_type {
            return self.error_response(CallError::UnsupportedMediaType);
        }
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.max_body as u64) {
            // Read (and drop) what the client is sending before answering, as nginx does:
            // a client that writes its whole body before reading (Python's http.client)
            // would otherwise get a reset instead of the 413.
            linger(req.into_body(), self.body_timeout).await;
            return self.error_response(CallError::BodyTooLarge(self.max_body));
        }
        let body = match read_body(req.into_body(), self.max_body, self.body_timeout).await {
            Ok(b) => b,
            Err(e) => return self.error_response(e),
        };
        http_answer(self.call(&body).await)
    }

    fn error_response(&self, e: CallError) -> HttpResponse {
        http_answer(self.respond(String::new(), Err(e)))
    }
}

fn internal(e: StoreError) -> CallError {
    CallError::internal("store error", &e)
}

/// Most bytes read and dropped after a body is refused as too large, before the connection
/// closes anyway.
const LINGER_BYTES: usize = 64 << 20;

/// Reads a body of at most `max` bytes within `timeout`. A larger one is read on (and
/// dropped, up to [`LINGER_BYTES`]) so the client can read the 413.
async fn read_body(body: Incoming, max: usize, timeout: Duration) -> Result<Bytes, CallError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut body = body;
    let mut buf = bytes::BytesMut::new();
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(CallError::RequestTimeout),
            Ok(None) => return Ok(buf.freeze()),
            Ok(Some(Err(e))) => {
                return Err(CallError::MalformedJson(format!(
                    "could not read the request body: {e}"
                )))
            }
            Ok(Some(Ok(f))) => f,
        };
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > max {
                linger_until(body, deadline, LINGER_BYTES.saturating_sub(buf.len())).await;
                return Err(CallError::BodyTooLarge(max));
            }
            buf.extend_from_slice(&data);
        }
    }
}

async fn linger(body: Incoming, timeout: Duration) {
    linger_until(body, tokio::time::Instant::now() + timeout, LINGER_BYTES).await
}

async fn linger_until(mut body: Incoming, deadline: tokio::time::Instant, mut budget: usize) {
    while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline, body.frame()).await {
        if let Ok(data) = frame.into_data() {
            budget = budget.saturating_sub(data.len());
            if budget == 0 {
                return;
            }
        }
    }
}

fn http_answer(a: Answer) -> HttpResponse {
    let mut r = json_response(a.status, a.body);
    if let Some(ms) = a.retry_after_ms {
        // Whole seconds, rounded up: a client waiting that long finds room.
        let secs = ms.div_ceil(1000).max(1);
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            r.headers_mut().insert(hyper::header::RETRY_AFTER, v);
        }
    }
    r
}

pub(crate) fn json_response(status: u16, body: String) -> HttpResponse {
    let mut r = hyper::Response::new(Body::Full(Full::new(Bytes::from(body))));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn plain(status: u16, body: &'static str) -> HttpResponse {
    let mut r = hyper::Response::new(Body::Full(Full::new(Bytes::from_static(body.as_bytes()))));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

/// How long, at shutdown, a connection that has sent no request yet gets to send it.
const FIRST_REQUEST_GRACE: Duration = Duration::from_millis(500);

/// Whether a connection's first request has arrived (see the shutdown path).
#[derive(Default)]
struct FirstRequest {
    arrived: std::sync::atomic::AtomicBool,
    notify: Notify,
}

impl FirstRequest {
    fn arrived(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        if !self.arrived.load(Relaxed) {
            self.arrived.store(true, Relaxed);
            // Keeps a permit if nobody waits yet.
            self.notify.notify_one();
        }
    }

    fn has_arrived(&self) -> bool {
        self.arrived.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A built, bound, not yet running daemon.
pub struct Server {
    listener: TcpListener,
    app: Arc<App>,
    store: Arc<dyn Store>,
    settings: Settings,
}

impl Server {
    /// Opens the database (applying migrations), restores live nonces and binds the listener.
    pub async fn build(settings: Settings) -> Result<Server, ServerError> {
        Server::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> Result<Server, ServerError> {
        // A socket held by systemd (socket activation), else our own.
        let listener =
            match crate::systemd::inherited_listener().map_err(ServerError::Activation)? {
                Some(l) => TcpListener::from_std(l).map_err(|source| ServerError::Bind {
                    addr: settings.server.listen,
                    source,
                })?,
                None => TcpListener::bind(settings.server.listen)
                    .await
                    .map_err(|source| ServerError::Bind {
                        addr: settings.server.listen,
                        source,
                    })?,
            };
        let served = listener.local_addr().unwrap_or(settings.server.listen);
        settings.check_safe_to_serve_on(served)?;
        let store = crate::store::open::open(&settings).await?.store();
        let auth = Authenticator::new(
            settings.server.id.clone(),
            settings.server.timestamp_window_ms,
            settings.clients.clone(),
        );
        if !store.shares_nonces() {
            // The store is this daemon's alone: its nonce set is the whole truth, so it must
            // hold every nonce still live. (A shared store decides each nonce itself.)
            let live = store.live_nonces(clock.now_ms()).await?;
            tracing::info!(nonces = live.len(), "restored live nonces");
            auth.nonces().preload(live);
        }

        let registry = Registry::from_settings(&settings)?;
        let fingerprint =
            hex::encode(Sha256::digest(settings.server.secret.expose()))[..16].to_string();
        let info = ServerInfo {
            server_id: settings.server.id.clone(),
            fingerprint,
            capabilities: registry.capabilities(
                settings.server.timestamp_window_ms,
                settings.server.max_body_bytes,
            ),
        };
        let app = App {
            auth,
            registry: Arc::new(ArcSwap::from_pointee(registry)),
            store: store.clone(),
            info: ArcSwap::from_pointee(info),
            window_ms: settings.server.timestamp_window_ms,
            server_key: settings.server.secret.clone(),
            max_body: settings.server.max_body_bytes,
            body_timeout: Duration::from_millis(settings.server.body_timeout_ms),
            max_attempts: settings.jobs.max_attempts,
            clock,
            job_added: Arc::new(Notify::new()),
            client_labels: settings.metrics.client_labels,
            limits: crate::limits::ClientLimits::new(&settings.limits),
            origin_policy: crate::mcp::http::OriginPolicy::new(
                &settings.mcp.allowed_hosts,
                &settings.mcp.allowed_origins,
                settings.server.listen,
            ),
            retention_ms: settings.jobs.retention_secs.saturating_mul(1000),
            anonymous_client: settings.mcp.anonymous_client.clone(),
            pending_answers: Default::default(),
            request_state_key: {
                use hmac::Mac;
                let mut m =
                    <hmac::Hmac<Sha256> as Mac>::new_from_slice(settings.server.secret.expose())
                        .expect("HMAC takes any key length");
                m.update(b"mcpq/mcp-request-state/v1");
                m.finalize().into_bytes().to_vec()
            },
        };
        Ok(Server {
            listener,
            app: Arc::new(app),
            store,
            settings,
        })
    }

    /// The watchdog's health check: a read through the pool and a round trip through the
    /// writer thread (`flush`), so a stalled database or a wedged writer fails it.
    pub fn health_check(&self) -> crate::systemd::Check {
        let store = self.store.clone();
        let clock = self.app.clock.clone();
        let addr = self.local_addr();
        Box::new(move || {
            let store = store.clone();
            let clock = clock.clone();
            Box::pin(async move {
                store.ping().await.map_err(|e| e.to_string())?;
                store.flush().await.map_err(|e| e.to_string())?;
                let now = clock.now_ms();
                let stats = store.queue_stats(now).await.map_err(|e| e.to_string())?;
                Ok(format!("serving on {addr}; {}", stats.summary(now)))
            })
        })
    }

    /// What the metrics endpoint reads at each scrape (this server's store and clock).
    pub fn scrape(&self) -> crate::telemetry::Scrape {
        crate::telemetry::Scrape {
            store: self.store.clone(),
            clock: self.app.clock.clone(),
            lease_ms: self.settings.jobs.lease_ms,
        }
    }

    /// A handle that applies a new configuration's client keys and tools to this server.
    pub fn reloader(&self) -> Reloader {
        Reloader {
            app: self.app.clone(),
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.settings.server.listen)
    }

    /// Serves until `shutdown` fires, then drains connections, stops embedded workers
    /// (releasing their jobs) and flushes pending nonce writes.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), ServerError> {
        let Server {
            listener,
            app,
            store,
            settings,
        } = self;
        tracing::info!(addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            server_id = %settings.server.id, db = %settings.database.display(), "serving");

        let background = TaskTracker::new();
        let workers_stop = CancellationToken::new();
        background.spawn(worker::maintenance(
            store.clone(),
            app.auth_nonces_pruner(),
            settings.jobs.clone(),
            app.clock.clone(),
            workers_stop.clone(),
        ));
        if settings.server.embedded_workers > 0 {
            let opts = WorkerOptions::from_settings(&settings, settings.server.embedded_workers);
            background.spawn(worker::run(
                store.clone(),
                app.registry.clone(),
                opts,
                app.clock.clone(),
                workers_stop.clone(),
                Some(app.job_added.clone()),
            ));
        }

        let conns = TaskTracker::new();
        let max_conns = settings.server.max_connections;
        let limit = Arc::new(Semaphore::new(max_conns));
        let header_timeout = Duration::from_millis(settings.server.header_timeout_ms);
        let per_ip = crate::overload::PerAddress::new(settings.limits.max_connections_per_ip);
        let shed = Arc::new(Notify::new());
        let mut last_shed = tokio::time::Instant::now();
        'accept: loop {
            // Every connection slot taken: while waiting for one, keep asking idle
            // connections to make room.
            let permit = loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break 'accept,
                    p = limit.clone().acquire_owned() => match p { Ok(p) => break p, Err(_) => break 'accept },
                    _ = tokio::time::sleep(crate::overload::SHED_EVERY) => {
                        shed.notify_waiters();
                        last_shed = tokio::time::Instant::now();
                    }
                }
            };
            let (stream, peer) = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = listener.accept() => match r {
                    Ok(s) => s,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                },
            };
            let Some(address_slot) = per_ip.admit(peer.ip()) else {
                // Over its address's cap: closed before a byte is read, so one peer cannot
                // hold the slots every other client needs.
                metrics::counter!("mcpq_connections_refused_total", "reason" => "per_address")
                    .increment(1);
                drop(stream);
                continue;
            };
            // Under pressure (three quarters of the slots taken), as Envoy's overload
            // manager does: new connections get a short head timeout, and connections idle
            // between requests are closed to make room.
            let in_use = max_conns - limit.available_permits();
            let pressure = crate::overload::under_pressure(in_use, max_conns);
            if pressure && last_shed.elapsed() >= crate::overload::SHED_EVERY {
                shed.notify_waiters();
                last_shed = tokio::time::Instant::now();
            }
            let head_timeout = if pressure {
                header_timeout.min(crate::overload::PRESSURE_HEAD_TIMEOUT)
            } else {
                header_timeout
            };
            let _ = stream.set_nodelay(true);
            let app = app.clone();
            let shutdown = shutdown.clone();
            let shed = shed.clone();
            conns.spawn(async move {
                let _permit = permit;
                let _address_slot = address_slot;
                let first = Arc::new(FirstRequest::default());
                let activity = Arc::new(crate::overload::Activity::new());
                let seen = first.clone();
                let busy = activity.clone();
                let service = hyper::service::service_fn(move |req| {
                    seen.arrived();
                    let app = app.clone();
                    let busy = busy.clone();
                    async move {
                        let _in_request = busy.begin();
                        Ok::<_, Infallible>(app.route(req).await)
                    }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(head_timeout)
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service);
                tokio::pin!(conn);
                loop {
                tokio::select! {
                    r = conn.as_mut() => {
                        if let Err(e) = r { tracing::debug!(error = %e, "connection ended with error"); }
                        return;
                    }
                    _ = shed.notified() => {
                        if activity.idle_for(crate::overload::SHED_MIN_IDLE) {
                            metrics::counter!("mcpq_connections_shed_total").increment(1);
                            return;
                        }
                    }
                    _ = shutdown.cancelled() => {
                        // A connection accepted just before the stop has not sent its
                        // request yet, or it is not parsed yet: closing it now would fail a
                        // request a restart under socket activation must not lose. Let its
                        // first request in (briefly), then drain.
                        if !first.has_arrived() {
                            tokio::select! {
                                r = conn.as_mut() => {
                                    if let Err(e) = r { tracing::debug!(error = %e, "connection ended with error"); }
                                    return;
                                }
                                _ = first.notify.notified() => {}
                                _ = tokio::time::sleep(FIRST_REQUEST_GRACE) => {}
                            }
                        }
                        conn.as_mut().graceful_shutdown();
                        let _ = conn.await;
                        return;
                    }
                }
                }
            });
        }
        drop(listener);
        conns.close();
        // In-flight requests finish; idle keep-alive connections close at once.
        let _ = tokio::time::timeout(Duration::from_secs(10), conns.wait()).await;
        workers_stop.cancel();
        background.close();
        background.wait().await;
        store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

impl App {
    fn auth_nonces_pruner(self: &Arc<Self>) -> Arc<dyn Fn(i64) + Send + Sync> {
        let app = self.clone();
        Arc::new(move |now| {
            app.auth.nonces().prune(now);
        })
    }
}

/// Applies a reloaded configuration (SIGHUP) to a running server: its client keys and its
/// tools. Open connections, running jobs and the nonce set are untouched; other settings
/// (addresses, database, limits) need a restart.
#[derive(Clone)]
pub struct Reloader {
    app: Arc<App>,
}

impl Reloader {
    /// Validates `settings` completely first; on any error nothing changes.
    pub fn reload(&self, settings: &Settings) -> Result<String, ServerError> {
        settings.check_safe_to_serve()?;
        let registry = Registry::from_settings(settings)?;
        let app = &self.app;
        let old = app.info.load();
        let info = ServerInfo {
            server_id: old.server_id.clone(),
            fingerprint: old.fingerprint.clone(),
            capabilities: registry.capabilities(app.window_ms, app.max_body),
        };
        let summary = format!(
            "{} clients, {} tools",
            settings.clients.len(),
            registry.iter().count()
        );
        app.auth.set_clients(settings.clients.clone());
        app.registry.store(Arc::new(registry));
        app.info.store(Arc::new(info));
        Ok(summary)
    }
}
