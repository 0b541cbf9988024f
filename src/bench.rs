//! `mcpq bench`: closed-loop load generators for the figures in BENCHMARKS.md.
//!
//! Each connection sends one request, waits for the answer, and sends the next,
//! with a fresh request_id, nonce and timestamp per request (so replay protection
//! is exercised, not bypassed). A request counts as a success when the HTTP status
//! is 200 and the body says `"ok":true`; signatures of responses are not verified
//! here, to keep the load generator's CPU off the measured box. The same generator
//! drives the seed, so ratios are like for like.
//!
//! It must not be used by the daemon itself.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::client::Client;
use crate::config::ClientSettings;
use crate::json::{self, Json, Object};

/// Latency and throughput of one run.
#[derive(Debug, Clone)]
pub struct Report {
    pub requests: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub first_error: Option<String>,
}

impl Report {
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    fn from_latencies(
        mut lat: Vec<u64>,
        errors: u64,
        elapsed: Duration,
        first_error: Option<String>,
    ) -> Report {
        lat.sort_unstable();
        let pct = |p: f64| -> u64 {
            if lat.is_empty() {
                0
            } else {
                lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)]
            }
        };
        Report {
            requests: lat.len() as u64,
            errors,
            elapsed,
            p50_us: pct(0.50),
            p90_us: pct(0.90),
            p99_us: pct(0.99),
            first_error,
        }
    }

    pub fn print(&self, label: &str) {
        println!(
            "{label}: {:.0} req/s  ok={} errors={}  p50={:.3}ms p90={:.3}ms p99={:.3}ms  ({:.2}s)",
            self.rate(),
            self.requests,
            self.errors,
            self.p50_us as f64 / 1000.0,
            self.p90_us as f64 / 1000.0,
            self.p99_us as f64 / 1000.0,
            self.elapsed.as_secs_f64()
        );
        if let Some(e) = &self.first_error {
            println!("  first error: {e}");
        }
    }
}

fn is_ok(status: u16, body: &[u8]) -> bool {
    status == 200 && body.windows(9).any(|w| w == b"\"ok\":true")
}

/// Runs `connections` closed loops for `duration`, each on its own connection: POST
/// `path` with `headers` and the body `body(i, &mut client)` makes (`i`: the connection's
/// index), count the answer good when `good(status, body)`, and time it. A connection that
/// fails is reopened (and the failure counted).
async fn closed_loops<B, G>(
    settings: ClientSettings,
    connections: usize,
    duration: Duration,
    path: &str,
    headers: Vec<(String, String)>,
    body: B,
    good: G,
) -> Result<Report, crate::client::ClientError>
where
    B: Fn(usize, &mut Client) -> Vec<u8> + Send + Sync + 'static,
    G: Fn(u16, &[u8]) -> bool + Send + Sync + 'static,
{
    let deadline = Instant::now() + duration;
    let start = Instant::now();
    let body = Arc::new(body);
    let good = Arc::new(good);
    let headers = Arc::new(headers);
    let mut tasks = Vec::new();
    for i in 0..connections {
        let mut client = Client::connect(settings.clone()).await?;
        let (body, good, headers) = (body.clone(), good.clone(), headers.clone());
        let path = path.to_string();
        tasks.push(tokio::spawn(async move {
            let h: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let mut lat = Vec::with_capacity(1 << 16);
            let mut errors = 0u64;
            let mut first_error = None;
            while Instant::now() < deadline {
                let payload = body(i, &mut client);
                let t = Instant::now();
                match client
                    .post_with(&path, "application/json", &h, payload)
                    .await
                {
                    Ok(r) if good(r.status, &r.body) => lat.push(t.elapsed().as_micros() as u64),
                    Ok(r) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| {
                            format!("{}: {}", r.status, String::from_utf8_lossy(&r.body))
                        });
                    }
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| e.to_string());
                        match Client::connect(client.settings().clone()).await {
                            Ok(c) => client = c,
                            Err(_) => break,
                        }
                    }
                }
            }
            (lat, errors, first_error)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for t in tasks {
        if let Ok((lat, e, fe)) = t.await {
            all.extend(lat);
            errors += e;
            if first_error.is_none() {
                first_error = fe;
            }
        }
    }
    Ok(Report::from_latencies(
        all,
        errors,
        start.elapsed(),
        first_error,
    ))
}

/// What an MCP load run sends: the JSON-RPC body and headers of one `tools/call`, and
/// what a good answer contains.
#[derive(Clone)]
pub struct McpLoad {
    pub path: String,
    pub token: Option<String>,
    pub headers: Vec<(String, String)>,
    /// The JSON-RPC message, with `"id":1` (each call gets its own id).
    pub body: String,
    /// A byte string every successful answer contains (e.g. `"result"`).
    pub expect: String,
}

/// Closed loops POSTing `load` (an MCP server: mcpq's `/mcp` or a peer's), counting an
/// answer good when it is 200 and contains `expect`.
pub async fn mcp_load(
    settings: ClientSettings,
    connections: usize,
    duration: Duration,
    load: McpLoad,
) -> Result<Report, crate::client::ClientError> {
    let mut headers = load.headers.clone();
    headers.push((
        "Accept".into(),
        "application/json, text/event-stream".into(),
    ));
    if let Some(t) = &load.token {
        headers.push(("Authorization".into(), format!("Bearer {t}")));
    }
    let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let template = load.body.clone();
    let expect = load.expect.clone().into_bytes();
    closed_loops(
        settings,
        connections,
        duration,
        &load.path,
        headers,
        move |i, _| {
            let n = counter.fetch_add(1, Ordering::Relaxed);
            template
                .replace("\"id\":1", &format!("\"id\":{}", (i as u64) << 32 | n))
                .into_bytes()
        },
        move |status, body| status == 200 && body.windows(expect.len()).any(|w| w == expect),
    )
    .await
}

/// Closed loops calling `tool(args)` over `/v1/call` for `duration`, each call freshly
/// signed (new request id, nonce, timestamp).
pub async fn sync_load(
    settings: ClientSettings,
    connections: usize,
    duration: Duration,
    tool: String,
    args: Object,
) -> Result<Report, crate::client::ClientError> {
    closed_loops(
        settings,
        connections,
        duration,
        "/v1/call",
        Vec::new(),
        move |_, client| {
            let env = client.envelope(&tool, args.clone());
            Json::Object(env).to_canonical().into_bytes()
        },
        is_ok,
    )
    .await
}

/// Result of an end-to-end run.
#[derive(Debug, Clone)]
pub struct E2eReport {
    pub jobs: usize,
    pub enqueue_elapsed: Duration,
    pub total_elapsed: Duration,
    pub failed: usize,
    pub polls: u64,
}

impl E2eReport {
    pub fn print(&self, label: &str) {
        println!(
            "{label}: {:.0} jobs/s end to end ({} jobs, {} failed, enqueued in {:.2}s at {:.0}/s, all done after {:.2}s, {} polls)",
            self.jobs as f64 / self.total_elapsed.as_secs_f64(),
            self.jobs,
            self.failed,
            self.enqueue_elapsed.as_secs_f64(),
            self.jobs as f64 / self.enqueue_elapsed.as_secs_f64(),
            self.total_elapsed.as_secs_f64(),
            self.polls
        );
    }
}

/// How often a job that was not done yet is polled again, by default.
pub const REPOLL: Duration = Duration::from_millis(20);

/// Enqueues `n` jobs over `connections` connections, then polls every job until it is done:
/// first no sooner than `first_poll_after` after its enqueue, then every `repoll` ([`REPOLL`]
/// by default).
pub async fn e2e(
    settings: ClientSettings,
    connections: usize,
    n: usize,
    tool: String,
    args: Object,
    first_poll_after: Duration,
    repoll: Duration,
) -> Result<E2eReport, crate::client::ClientError> {
    let start = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    // Jobs to poll, earliest due first: every job is polled on its own schedule, as
    // independent clients would, not behind every job enqueued after it.
    let ids = Arc::new(Mutex::new(BinaryHeap::with_capacity(n)));
    let mut clients = Vec::new();
    for _ in 0..connections {
        clients.push(Client::connect(settings.clone()).await?);
    }
    let mut tasks = Vec::new();
    for mut client in clients {
        let (next, ids, tool, args) = (next.clone(), ids.clone(), tool.clone(), args.clone());
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < n {
                let env = client.envelope(&tool, args.clone());
                let body = Json::Object(env).to_canonical().into_bytes();
                let r = client.post("/v1/call", "application/json", body).await?;
                let id = job_id_of(&r.body);
                match id {
                    Some(id) => ids
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(Reverse((Instant::now() + first_poll_after, id))),
                    None => eprintln!("enqueue failed: {}", String::from_utf8_lossy(&r.body)),
                }
            }
            Ok::<Client, crate::client::ClientError>(client)
        }));
    }
    let mut clients = Vec::new();
    for t in tasks {
        if let Ok(Ok(c)) = t.await {
            clients.push(c);
        }
    }
    let enqueue_elapsed = start.elapsed();
    let failed = Arc::new(AtomicUsize::new(0));
    let polls = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for mut client in clients {
        let (ids, failed, polls) = (ids.clone(), failed.clone(), polls.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let item = ids
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .pop()
                    .map(|Reverse(item)| item);
                let Some((not_before, id)) = item else { break };
                tokio::time::sleep_until(not_before.into()).await;
                let args = Object::from_pairs([("job_id".to_string(), Json::str(id.clone()))]);
                let env = client.envelope("poll_job", args);
                let body = Json::Object(env).to_canonical().into_bytes();
                polls.fetch_add(1, Ordering::Relaxed);
                let r = match client.post("/v1/call", "application/json", body).await {
                    Ok(r) => r,
                    Err(_) => {
                        ids.lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(Reverse((Instant::now() + repoll, id)));
                        continue;
                    }
                };
                match status_of(&r.body).as_deref() {
                    Some("done") => {}
                    Some("error") => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => ids
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(Reverse((Instant::now() + repoll, id))),
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    Ok(E2eReport {
        jobs: n,
        enqueue_elapsed,
        total_elapsed: start.elapsed(),
        failed: failed.load(Ordering::Relaxed),
        polls: polls.load(Ordering::Relaxed) as u64,
    })
}

fn field_of(body: &[u8], f: impl Fn(&Object) -> Option<String>) -> Option<String> {
    // One parse, straight into our own tree: the generator shares the two cores with the
    // servers it measures, so its CPU per response counts against both of them alike.
    // Both servers' bodies are plain JSON objects (whitespace aside, which the parser
    // accepts), so serde_json is only the fallback for anything it rejects.
    match json::parse(body) {
        Ok(v) => f(v.as_object()?),
        Err(_) => {
            let v: serde_json::Value = serde_json::from_slice(body).ok()?;
            f(json::Json::from_serde(&v).as_object()?)
        }
    }
}

fn job_id_of(body: &[u8]) -> Option<String> {
    field_of(body, |o| {
        o.get("result")?
            .as_object()?
            .get("job_id")?
            .as_str()
            .map(str::to_string)
    })
}

fn status_of(body: &[u8]) -> Option<String> {
    field_of(body, |o| o.get("status")?.as_str().map(str::to_string))
}
