//! `POST /v1/call`: the signed `mcp/0.1` pipeline, one body in, one signed response out.
//!
//! The pipeline's order is the documented check order: size cap → strict parse →
//! version → server_id → timestamp → signature → nonce → tool → args. Every failure
//! becomes a signed response in exactly one place ([`V1::respond`]).
//!
//! It must not contain tool logic or SQL: it turns a request into calls of the core
//! (`app::App`) and their outcomes into signed answers.

use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::CONTENT_LENGTH;
use hyper::Request;

use crate::app::App;
use crate::audit::writer::CallFacts;
use crate::config::{Secret, Settings};
use crate::envelope::{self, CallError, Envelope, Response, Status};
use crate::http::{self, HttpResponse};
use crate::jobs::JobOptions;
use crate::json::{self, Json, Object};
use crate::limits::RetryAfterMs;
use crate::otel::spans;
use crate::tools::Tool;

/// A signed answer and, for a refusal to retry later, its `Retry-After`.
pub struct Answer {
    pub status: u16,
    pub body: String,
    pub retry_after_ms: Option<u64>,
}

/// The `/v1/call` transport over the core.
pub struct V1 {
    app: Arc<App>,
    server_key: Secret,
    max_body: usize,
    body_timeout: Duration,
}

/// One answered call in the metrics: by tool (`none` before an envelope was read,
/// `unknown` for a name no tool has) and outcome code.
fn count_request(tool: Option<&str>, code: &'static str, t0: std::time::Instant) {
    let tool = tool.map_or("none", |t| t).to_string();
    metrics::histogram!(crate::telemetry::names::REQUEST_SECONDS, "tool" => tool.clone())
        .record(t0.elapsed().as_secs_f64());
    metrics::counter!(crate::telemetry::names::REQUESTS, "tool" => tool, "code" => code)
        .increment(1);
}

impl V1 {
    pub fn new(app: Arc<App>, settings: &Settings) -> V1 {
        V1 {
            app,
            server_key: settings.server.secret.clone(),
            max_body: settings.server.max_body_bytes,
            body_timeout: Duration::from_millis(settings.server.body_timeout_ms),
        }
    }

    /// Serves one `POST /v1/call`: content type, size cap (declared length, then a
    /// bounded body), body read under the body timeout, then [`V1::call`].
    pub async fn handle(&self, req: Request<Incoming>) -> HttpResponse {
        if !http::json_content_type(&req) {
            return self.error_response(CallError::UnsupportedMediaType);
        }
        // The caller's W3C context: read only while traces are on.
        let parent = if crate::otel::enabled() {
            let h = req.headers();
            crate::otel::remote(
                h.get("traceparent").and_then(|v| v.to_str().ok()),
                h.get("tracestate").and_then(|v| v.to_str().ok()),
            )
        } else {
            None
        };
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.max_body as u64) {
            // Read (and drop) what the client is sending before answering, as nginx does:
            // a client that writes its whole body before reading (Python's http.client)
            // would otherwise get a reset instead of the 413.
            http::linger(req.into_body(), self.body_timeout).await;
            return self.error_response(CallError::BodyTooLarge(self.max_body));
        }
        let body = match http::read_body(req.into_body(), self.max_body, self.body_timeout).await {
            Ok(b) => b,
            Err(e) => return self.error_response(e),
        };
        http_answer(self.call_traced(&body, parent).await)
    }

    /// A refusal before any envelope was read (wrong method, unknown path, bad body).
    pub fn error_response(&self, e: CallError) -> HttpResponse {
        self.audit_unread(String::new(), &e);
        http_answer(self.respond(String::new(), Err(e)))
    }

    /// The audit record of a refusal before an envelope was read: nobody and no tool known.
    fn audit_unread(&self, request_id: String, e: &CallError) {
        let facts = CallFacts {
            via: "v1",
            client: "",
            tool: "",
            args: None,
            request_id: &request_id,
        };
        self.app
            .audit()
            .refusal(self.app.now_ms(), &facts, e.code());
    }

    /// The audit record of an answered envelope (docs/AUDIT.md): an accepted job's is
    /// already committed with it; a refusal before admission is coalesced; every other
    /// outcome is a record of its own, written behind.
    fn audit(&self, env: &Envelope, outcome: &Result<(Status, Option<Object>), CallError>) {
        let audit = self.app.audit();
        if !audit.enabled() || matches!(outcome, Ok((Status::Accepted, _))) {
            return;
        }
        let mut args = String::new();
        json::write_object_except(&env.args, None, &mut args);
        let facts = CallFacts {
            via: "v1",
            client: &env.client_id.0,
            tool: &env.tool,
            args: Some(&args),
            request_id: &env.request_id,
        };
        let now = self.app.now_ms();
        match outcome {
            Ok(_) => audit.call(now, &facts, "ok"),
            Err(e) if refused_before_admission(e) => audit.refusal(now, &facts, e.code()),
            Err(e) => audit.call(now, &facts, e.code()),
        }
    }

    /// The one place an outcome becomes a signed response.
    fn respond(
        &self,
        request_id: String,
        outcome: Result<(Status, Option<Object>), CallError>,
    ) -> Answer {
        let now = self.app.now_ms();
        let server_id = self.app.server_id();
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
        self.call_traced(body, None).await
    }

    /// [`V1::call`] under the caller's trace context `parent` (its `traceparent` header),
    /// when traces are on.
    async fn call_traced(&self, body: &[u8], parent: Option<crate::otel::SpanContext>) -> Answer {
        let t0 = std::time::Instant::now();
        let parsed = match json::parse(body) {
            Ok(v) => v,
            Err(e) => {
                count_request(None, "malformed_json", t0);
                let e = CallError::MalformedJson(e.to_string());
                self.audit_unread(envelope::salvage_request_id(body), &e);
                return self.respond(envelope::salvage_request_id(body), Err(e));
            }
        };
        let request_id = match &parsed {
            Json::Object(o) => match o.get("request_id") {
                Some(Json::Str(s)) if s.len() <= envelope::MAX_ID_LEN => s.clone(),
                _ => String::new(),
            },
            _ => String::new(),
        };
        let env = match Envelope::from_json(parsed) {
            Ok(env) => env,
            Err(e) => {
                count_request(None, e.code(), t0);
                self.audit_unread(request_id.clone(), &e);
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
        // The trace's server span (when on) encloses the log span, which stays the current
        // one so the log fields are recorded where they always were.
        let otel = crate::otel::enabled().then(|| self.request_span(&env, parent));
        let headers = otel.as_ref().and_then(spans::headers_of);
        let logged = tracing::Instrument::instrument(
            async {
                let outcome = self.dispatch(&env, otel.as_ref()).await;
                if let Err(e) = &outcome {
                    tracing::debug!(code = e.code(), "call refused");
                }
                outcome
            },
            span,
        );
        let outcome = match &otel {
            None => logged.await,
            Some(o) => {
                let outcome = tracing::Instrument::instrument(
                    crate::otel::scope(headers.clone(), logged),
                    o.clone(),
                )
                .await;
                end_request_span(o, &outcome);
                outcome
            }
        };
        // A tool label only for tools that exist: clients choose the names they send.
        let known = self.app.tools().get(&env.tool).is_some();
        let code = match &outcome {
            Ok(_) => "ok",
            Err(e) => e.code(),
        };
        count_request(Some(if known { &env.tool } else { "unknown" }), code, t0);
        // In the call's trace context, so its record names the trace.
        crate::otel::sync_scope(headers, || self.audit(&env, &outcome));
        self.respond(env.request_id.clone(), outcome)
    }

    /// The call's server span (docs/TRACING.md): `tools/call {tool}` (a tool this server
    /// has; otherwise `tools/call`, as client-chosen names must not name spans).
    fn request_span(
        &self,
        env: &Envelope,
        parent: Option<crate::otel::SpanContext>,
    ) -> tracing::Span {
        let known = self.app.tools().get(&env.tool).is_some();
        let span =
            spans::request_span(spans::TOOLS_CALL, known.then_some(&*env.tool), parent, None);
        spans::set(&span, "mcpq.endpoint", "/v1/call");
        spans::set(&span, "jsonrpc.request.id", env.request_id.clone());
        span
    }

    async fn dispatch(
        &self,
        env: &Envelope,
        otel: Option<&tracing::Span>,
    ) -> Result<(Status, Option<Object>), CallError> {
        let app = &self.app;
        let now = app.now_ms();
        let nonce = app.authenticate(env, now)?;
        tracing::Span::current().record("client_id", tracing::field::display(&env.client_id));
        if let Some(s) = otel {
            spans::set(s, "mcpq.client.id", env.client_id.0.clone());
        }
        // A job-creating call's nonce commits with its job; every other admitted nonce goes
        // to the store before the answer.
        if let Err(RetryAfterMs(ms)) = app.admit_call(&env.client_id.0, now) {
            app.admit_nonce(nonce, now).await?;
            return Err(CallError::RateLimited(ms));
        }
        // One registry for the whole call, even if a reload swaps it meanwhile.
        let registry = app.tools();
        let tool = registry
            .get(&env.tool)
            .filter(|_| app.may_see(&env.client_id.0, &env.tool));
        match tool {
            None => {
                app.admit_nonce(nonce, now).await?;
                Err(CallError::UnknownTool(env.tool.clone()))
            }
            Some(Tool::Sync(_)) if env.job.is_some() => {
                app.admit_nonce(nonce, now).await?;
                Err(CallError::InvalidArgs(format!(
                    "field \"job\" applies only to job tools; {:?} answers at once",
                    env.tool
                )))
            }
            Some(Tool::Sync(t)) => {
                app.admit_nonce(nonce, now).await?;
                let reply = app
                    .call_sync(t.as_ref(), &env.client_id, &env.args, now, None, None)
                    .await?;
                Ok((reply.status, reply.result))
            }
            Some(Tool::Job(t)) => {
                let opts = match &env.job {
                    None => Ok(JobOptions::default()),
                    Some(o) => JobOptions::from_value(&Json::Object(o.clone()).to_serde())
                        .map_err(|m| CallError::InvalidArgs(format!("job: {m}"))),
                };
                // The nonce commits with the job; a refused job writes it behind.
                let enqueued = match opts {
                    Ok(opts) => {
                        app.enqueue_job(
                            t,
                            &env.client_id,
                            &env.args,
                            Some(nonce),
                            now,
                            None,
                            &opts,
                            &env.request_id,
                        )
                        .await
                    }
                    Err(e) => Err(e),
                };
                match enqueued {
                    Ok(id) => {
                        let result = Object::from_pairs([("job_id".to_string(), Json::str(id.0))]);
                        Ok((Status::Accepted, Some(result)))
                    }
                    Err(e) => {
                        app.admit_nonce(nonce, now).await?;
                        Err(e)
                    }
                }
            }
        }
    }
}

/// The outcome on the call's server span: the job it created, or `error.type` (the wire
/// code) and the ERROR status.
fn end_request_span(span: &tracing::Span, outcome: &Result<(Status, Option<Object>), CallError>) {
    match outcome {
        Ok((_, Some(result))) => {
            if let Some(Json::Str(id)) = result.get("job_id") {
                spans::set(span, "mcpq.job.id", id.clone());
            }
        }
        Ok(_) => {}
        Err(e) => spans::fail(span, e.code(), e.code()),
    }
}

/// Refused before the call was admitted: the envelope's checks (version, server, time,
/// key, signature, nonce) or the client's call rate. Coalesced in the audit trail.
fn refused_before_admission(e: &CallError) -> bool {
    matches!(
        e,
        CallError::UnsupportedVersion(_)
            | CallError::WrongServer(_)
            | CallError::StaleTimestamp(_)
            | CallError::FutureTimestamp(_)
            | CallError::UnknownClient(_)
            | CallError::BadSignature
            | CallError::ReplayedNonce
            | CallError::RateLimited(_)
    )
}

fn http_answer(a: Answer) -> HttpResponse {
    http::with_retry_after(http::json_response(a.status, a.body), a.retry_after_ms)
}
