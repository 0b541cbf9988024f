//! Prometheus metrics: the recorder (`metrics` + `metrics-exporter-prometheus`), every
//! metric's help text (names: [`names`]), and the scrape endpoint (`GET /metrics` on
//! `metrics.listen` for `serve`, `metrics.worker_listen` for `worker`; loopback by default,
//! never the public port).
//!
//! Gauges that describe the store (jobs by state and tool, the oldest queued job's wait,
//! workers holding leases, whether the database answers) are read from it at scrape time,
//! so they cost nothing between scrapes. Labels are bounded: tool names come from the
//! registry (a name no tool has is counted as `unknown`), codes from the error enum, client
//! ids only when `metrics.client_labels` is on; never a job id, a secret or a payload.
//!
//! It must not decide anything: modules record, this module names and serves.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use metrics::{describe_counter, describe_gauge, describe_histogram, gauge, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::jobs::JobState;
use crate::store::Store;

pub mod names;

use names::*;

const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
const RUN_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];
const ROW_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder (once; later calls return the same handle).
pub fn install() -> Result<PrometheusHandle, String> {
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let recorder = PrometheusBuilder::new()
        .set_buckets(LATENCY_BUCKETS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full(RUN_SECONDS.into()), RUN_BUCKETS))
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full(START_DELAY.into()), RUN_BUCKETS))
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full(BATCH_ROWS.into()), ROW_BUCKETS))
        .map_err(|e| format!("metrics: {e}"))?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|e| format!("metrics: {e}"))?;
    describe();
    let _ = HANDLE.set(handle.clone());
    Ok(handle)
}

/// Completion webhooks' metrics (docs/WEBHOOKS.md).
fn describe_webhooks() {
    describe_counter!(
        WEBHOOK_DELIVERIES,
        "Webhook delivery attempts, by outcome: ok, retrying (failed, will retry), failed (given up)."
    );
    describe_gauge!(
        WEBHOOK_BACKLOG,
        "Webhook events not yet delivered nor given up (the outbox, shared by every process)."
    );
}

/// The audit trail's metrics (docs/AUDIT.md).
fn describe_audit() {
    describe_counter!(
        AUDIT_RECORDS,
        "Audit records handed to the store, by kind (call, refusal, operator, reload)."
    );
    describe_counter!(
        AUDIT_COALESCED,
        "Refusals folded into another record of the same second (docs/AUDIT.md)."
    );
    describe_counter!(
        AUDIT_LOST,
        "Audit records written behind that were lost with a failed commit."
    );
}

/// The store's metrics: group commits, fsyncs, faults, outages.
fn describe_store() {
    describe_histogram!(
        BATCH_ROWS,
        "Operations per group commit (enqueues, nonces, flushes)."
    );
    describe_histogram!(
        COMMIT_SECONDS,
        Unit::Seconds,
        "Time per group commit (before its fsync)."
    );
    describe_histogram!(FSYNC_SECONDS, Unit::Seconds, "Time per WAL fsync.");
    describe_counter!(
        FSYNC_FAILURES,
        "Failed fsyncs (after one, no durable write is acknowledged)."
    );
    describe_counter!(
        FAULTS,
        "Faults by site (store writes, reads, claims, heartbeats…); each counted exactly, \
         though the log collapses repeats."
    );
    describe_gauge!(
        STORE_UP,
        "1 while this process reaches its store, 0 while it does not."
    );
    describe_counter!(STORE_OUTAGES, "Times this process lost its store.");
    describe_counter!(
        COMMITS_RESOLVED,
        "Group commits whose outcome was unknown (connection lost in flight), resolved by \
         looking the batch up, by outcome (committed, retried, unresolved)."
    );
}

/// `[upstreams]`: sessions, listings.
fn describe_upstreams() {
    describe_gauge!(
        UPSTREAM_SESSIONS,
        "Live sessions with an upstream MCP server in this process (0: the upstream is down)."
    );
    describe_gauge!(
        UPSTREAM_TOOLS,
        "Tools published from an upstream's last listing."
    );
    describe_counter!(
        UPSTREAM_FAILURES,
        "Upstream sessions that ended or failed to start (each is retried with back-off)."
    );
}

fn describe() {
    describe_upstreams();
    describe_counter!(
        REQUESTS,
        "Calls answered, by tool and outcome code (ok or the error code)."
    );
    describe_histogram!(
        REQUEST_SECONDS,
        Unit::Seconds,
        "Time to answer a call, by tool."
    );
    describe_counter!(
        AUTH_FAILURES,
        "Calls refused before any tool ran, by reason (error code)."
    );
    describe_counter!(
        OAUTH_JWKS_FETCHES,
        "Fetches of OAuth signing keys (JWKS), by outcome (ok, error)."
    );
    describe_counter!(JOBS_ENQUEUED, "Jobs accepted (durable), by tool.");
    describe_webhooks();
    describe_audit();
    describe_counter!(
        SCHEDULE_JOBS,
        "Jobs a schedule enqueued (one per tick across all daemons), by schedule."
    );
    describe_gauge!(
        JOBS,
        "Unfinished jobs by state (queued, running, in_doubt) and tool."
    );
    describe_gauge!(
        OLDEST_QUEUED,
        Unit::Seconds,
        "How long the longest-waiting due job has waited."
    );
    describe_gauge!(
        TOOL_PAUSED,
        "1 while the tool's queue is paused (mcpq jobs pause TOOL), else 0."
    );
    describe_gauge!(
        DATABASE_UP,
        "1 when the database answered the scrape's query, else 0."
    );
    describe_gauge!(
        WORKER_LAST_SEEN,
        Unit::Seconds,
        "Per worker holding leases: time since its last lease renewal (heartbeat)."
    );
    describe_counter!(ATTEMPTS, "Attempts ended, by tool and outcome (succeeded, retry, failed, cancelled, in_doubt, lease_lost).");
    describe_histogram!(RUN_SECONDS, Unit::Seconds, "Attempt run time, by tool.");
    describe_histogram!(
        START_DELAY,
        Unit::Seconds,
        "From a job being due to an attempt starting, by tool."
    );
    describe_counter!(
        RESCUES,
        "Expired leases rescued, by what happened to the job (retry, failed, in_doubt)."
    );
    describe_gauge!(RUNNING, "Attempts this worker process is running.");
    describe_gauge!(
        HELD_CALLS,
        "/mcp calls held open waiting for their job (2025 tools/call without a task)."
    );
    describe_gauge!(
        PENDING_QUESTIONS,
        "Questions asked of 2025-11-25 clients over their call streams, not yet answered."
    );
    describe_counter!(
        LOG_LINES_DROPPED,
        "Tool log lines not sent because the client read its stream too slowly."
    );
    describe_store();
}

/// Sets the store gauges just before a scrape renders.
async fn refresh(store: &dyn Store, now_ms: i64, lease_ms: i64) {
    let stats = match store.queue_stats(now_ms).await {
        Ok(s) => s,
        Err(e) => {
            crate::logging::repeats::fault("metrics refresh", &e);
            gauge!(DATABASE_UP).set(0.0);
            return;
        }
    };
    gauge!(DATABASE_UP).set(1.0);
    // Pairs seen before but absent now are zero, not stale.
    for state in [
        JobState::Queued,
        JobState::Running,
        JobState::InDoubt,
        JobState::AwaitingInput,
    ] {
        for tool in seen_tools() {
            let n = stats
                .active
                .iter()
                .find(|(s, t, _)| *s == state && *t == tool)
                .map_or(0, |(_, _, n)| *n);
            gauge!(JOBS, "state" => state.as_str(), "tool" => tool.clone()).set(n as f64);
        }
    }
    for (state, tool, n) in &stats.active {
        remember_tool(tool);
        gauge!(JOBS, "state" => state.as_str(), "tool" => tool.clone()).set(*n as f64);
    }
    // Every tool seen (with jobs, or paused) gets 0 or 1, so a resume reads as 0.
    for tool in &stats.paused {
        remember_tool(tool);
    }
    for tool in seen_tools() {
        let paused = stats.paused.contains(&tool);
        gauge!(TOOL_PAUSED, "tool" => tool).set(if paused { 1.0 } else { 0.0 });
    }
    gauge!(OLDEST_QUEUED).set(
        stats
            .oldest_due_at
            .map_or(0.0, |at| (now_ms - at).max(0) as f64 / 1000.0),
    );
    if let Ok(workers) = store.lease_holders().await {
        for (worker, last_lease_expiry) in workers {
            // A renewal sets the expiry to renewal time + lease_ms.
            let age = (now_ms - (last_lease_expiry - lease_ms)).max(0) as f64 / 1000.0;
            gauge!(WORKER_LAST_SEEN, "worker" => worker).set(age);
        }
    }
}

fn seen() -> &'static std::sync::Mutex<std::collections::BTreeSet<String>> {
    static SEEN: OnceLock<std::sync::Mutex<std::collections::BTreeSet<String>>> = OnceLock::new();
    SEEN.get_or_init(Default::default)
}

fn seen_tools() -> Vec<String> {
    seen()
        .lock()
        .map(|s| s.iter().cloned().collect())
        .unwrap_or_default()
}

fn remember_tool(tool: &str) {
    if let Ok(mut s) = seen().lock() {
        // Tool names come from stored jobs, which only registered tools create; the cap is
        // a guard against a database someone else filled.
        if s.len() < 1000 && !s.contains(tool) {
            s.insert(tool.to_string());
        }
    }
}

/// What the scrape endpoint needs to refresh the store gauges.
pub struct Scrape {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn crate::clock::Clock>,
    pub lease_ms: i64,
    /// What answers `/ui/…` on this listener (the console), if anything.
    pub console: Option<crate::http::Handler>,
    /// This process's upstreams, whose gauges are set at each scrape.
    pub upstreams: Option<crate::tools::upstream::Upstreams>,
}

/// Binds `addr` and serves `GET /metrics` until `stop` fires. Returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    scrape: Scrape,
    max_connections: usize,
    stop: CancellationToken,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), String> {
    let handle = install()?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("metrics: cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| format!("metrics: {e}"))?;
    let scrape = Arc::new(scrape);
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections.max(1)));
    let task = tokio::spawn(async move {
        let upkeep = {
            let handle = handle.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(5));
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tick.tick() => handle.run_upkeep(),
                    }
                }
            })
        };
        loop {
            let (stream, _) = tokio::select! {
                _ = stop.cancelled() => break,
                r = listener.accept() => match r {
                    Ok(s) => s,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                },
            };
            // Every slot taken: closed at once, unanswered, rather than queued behind
            // connections that may never send a request.
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                metrics::counter!("mcpq_connections_refused_total", "reason" => "metrics_cap")
                    .increment(1);
                drop(stream);
                continue;
            };
            let handle = handle.clone();
            let scrape = scrape.clone();
            tokio::spawn(async move {
                let _slot = slot;
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let handle = handle.clone();
                    let scrape = scrape.clone();
                    async move { Ok::<_, Infallible>(answer(req, local, &handle, &scrape).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(5))
                    .serve_connection(TokioIo::new(stream), svc);
                let _ = tokio::time::timeout(Duration::from_secs(30), conn).await;
            });
        }
        upkeep.abort();
    });
    Ok((local, task))
}

async fn answer(
    req: Request<hyper::body::Incoming>,
    bound: SocketAddr,
    handle: &PrometheusHandle,
    scrape: &Scrape,
) -> crate::http::HttpResponse {
    let reply = |status: StatusCode, body: String| {
        let mut r = Response::new(crate::http::Body::Full(Full::new(Bytes::from(body))));
        *r.status_mut() = status;
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        r
    };
    if !crate::http::host_allowed(bound, req.headers()) {
        // A page that rebinds its name to this loopback address cannot read the metrics.
        return reply(StatusCode::FORBIDDEN, "Host not allowed\n".into());
    }
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => {
            refresh(
                scrape.store.as_ref(),
                scrape.clock.now_ms(),
                scrape.lease_ms,
            )
            .await;
            if let Some(u) = &scrape.upstreams {
                u.report();
            }
            reply(StatusCode::OK, handle.render())
        }
        (_, "/metrics") => reply(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into()),
        (_, p) if p == "/ui" || p.starts_with("/ui/") => match &scrape.console {
            Some(console) => console(req).await,
            None => reply(
                StatusCode::NOT_FOUND,
                "the console is off ([console] enabled = false)\n".into(),
            ),
        },
        _ => reply(StatusCode::NOT_FOUND, "see /metrics\n".into()),
    }
}
