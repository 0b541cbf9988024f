//! Closed loops: each connection sends one request, waits for the answer, and sends the
//! next, with a fresh request_id, nonce and timestamp per request (so replay protection
//! is exercised, not bypassed). A request counts as a success when the HTTP status
//! is 200 and the body says `"ok":true`; signatures of responses are not verified
//! here, to keep the load generator's CPU off the measured box. The same generator
//! drives the seed, so ratios are like for like.
//!
//! It must not be used by the daemon itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::client::Client;
use crate::config::ClientSettings;
use crate::json::{Json, Object};

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
pub(super) async fn closed_loops<B, G>(
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
