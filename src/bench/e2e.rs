//! End to end: enqueue N durable jobs, then poll each on its own schedule until it is
//! done; the rate is from the first enqueue to the last job done.
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
    let ids: Due = Arc::new(Mutex::new(BinaryHeap::with_capacity(n)));
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
    for client in clients {
        let (ids, failed, polls) = (ids.clone(), failed.clone(), polls.clone());
        tasks.push(tokio::spawn(poll_until_done(
            client, ids, failed, polls, repoll,
        )));
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

/// Jobs to poll, earliest due first.
type Due = Arc<Mutex<BinaryHeap<Reverse<(Instant, String)>>>>;

/// One connection's polls: takes the job due first, polls it when due, and puts it back
/// (due `repoll` later) until it is done, until no job is left.
async fn poll_until_done(
    mut client: Client,
    ids: Due,
    failed: Arc<AtomicUsize>,
    polls: Arc<AtomicUsize>,
    repoll: Duration,
) {
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
