//! Completion webhooks end to end (docs/WEBHOOKS.md): real daemon and worker processes,
//! a real receiver (tests/fixtures/webhook_receiver.py) that checks every signature with the
//! reference Standard Webhooks library, on SQLite and on PostgreSQL.
//!
//! Pinned here: a job's outcome reaches the receiver once per webhook id, signed; a receiver
//! that is down for a while gets each event once it is back; a daemon and a worker killed
//! with -9 between the commit and the delivery lose nothing; a callback off the client's
//! allowlist is refused at call time with `callback_not_allowed` (both endpoints); a 302 is
//! a failed attempt and its target is never reached; a private target is refused unless
//! allowed; two live secrets sign every delivery twice (rotation).

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::common::*;
use base64::Engine;
use mcpq::envelope::Status;
use mcpq::json::Object;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BOUND: Duration = Duration::from_secs(60);
const TOKEN: &str = "dev-only-mcp-token-00000000000000000000000000000000";

fn secret(byte: u8) -> String {
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode([byte; 32])
    )
}

/// A port nothing listens on (yet): the receiver starts there later, or never.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The receiver process; killed when dropped.
struct Receiver {
    _child: Child,
    log: PathBuf,
}

impl Receiver {
    async fn start(dir: &Path, port: u16, secrets: &[&str]) -> Receiver {
        let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python3");
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/webhook_receiver.py");
        let log = dir.join("received.jsonl");
        let mut child = Command::new(python)
            .arg(script)
            .arg(port.to_string())
            .arg(&log)
            .args(secrets)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the receiver (.venv with standardwebhooks: .ci/run)");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(BOUND, lines.next_line())
            .await
            .expect("the receiver started in time")
            .unwrap()
            .unwrap_or_default();
        assert_eq!(line, format!("port {port}"));
        Receiver { _child: child, log }
    }

    fn requests(log: &Path) -> Vec<Value> {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// The config for a receiver on `port`: loopback allowed (tests), quick retries.
fn config(port: u16, extra: &str) -> String {
    format!(
        r#"
[webhooks]
allow_private = true
timeout_ms = 2000
max_attempts = 100
backoff_initial_ms = 100
backoff_max_ms = 400
poll_ms = 50
concurrency = 8

[clients.client-001.webhooks]
allow = ["http://127.0.0.1:{port}/hook/*", "http://127.0.0.1:{port}/redirect"]
secret = "{}"
{extra}
"#,
        secret(1)
    )
}

fn with_tools(env: TestEnv) -> TestEnv {
    env.set("MCPQ__SERVER__BENCH_TOOLS", "true")
        .set("MCPQ__JOBS__LEASE_MS", "1000")
        .set("MCPQ__JOBS__HEARTBEAT_MS", "100")
        .set("MCPQ__JOBS__RESCUE_INTERVAL_MS", "100")
}

fn callback(url: &str) -> Object {
    args(&format!(r#"{{"callback":"{url}"}}"#))
}

/// `mcpq jobs show ID --json`'s webhook deliveries.
async fn deliveries(env: &TestEnv, id: &str) -> Vec<Value> {
    let (code, out, err) = env.run(&["jobs", "show", id, "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    v["webhooks"].as_array().cloned().unwrap_or_default()
}

async fn wait_deliveries(env: &TestEnv, id: &str, what: &str, pred: impl Fn(&[Value]) -> bool) {
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        let d = deliveries(env, id).await;
        if pred(&d) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {d:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Webhook ids the receiver accepted (200 with every signature verified), with counts.
fn accepted(log: &Path) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for r in Receiver::requests(log) {
        if r["status"] == 200 && r["path"].as_str().unwrap().starts_with("/hook") {
            *out.entry(r["id"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    out
}

async fn wait_accepted(log: &Path, n: usize) -> BTreeMap<String, usize> {
    let log = log.to_path_buf();
    eventually(BOUND, "every event delivered", || {
        let log = log.clone();
        async move { accepted(&log).len() >= n }
    })
    .await;
    accepted(&log)
}

async fn enqueue(c: &mut mcpq::client::Client, url: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let r = c.call_job("noop", args("{}"), callback(url)).await.unwrap();
        assert_eq!(r.status, Status::Accepted, "{}", r.raw);
        ids.push(job_id(&r));
    }
    ids
}

/// Receiver down while jobs finish: every event is retried, then delivered exactly once per
/// webhook id when the receiver comes back, by worker processes sharing the outbox.
async fn receiver_down_then_up(env: TestEnv, port: u16) {
    let env = with_tools(env).set("MCPQ__SERVER__EMBEDDED_WORKERS", "0");
    let d = env.spawn_daemon().await;
    let _w1 = env.spawn_worker(1).await;
    let _w2 = env.spawn_worker(2).await;
    let mut c = env.client(&d).await;
    let url = format!("http://127.0.0.1:{port}/hook/jobs");
    let ids = enqueue(&mut c, &url, 6).await;
    for id in &ids {
        poll_until_finished(&mut c, id, BOUND).await;
        wait_deliveries(&env, id, "two failed attempts", |d| {
            d.len() == 1 && d[0]["attempts"].as_u64() >= Some(2) && d[0]["status"] == "pending"
        })
        .await;
    }
    let rx = Receiver::start(env.dir.path(), port, &[&secret(1)]).await;
    let got = wait_accepted(&rx.log, ids.len()).await;
    for id in &ids {
        wait_deliveries(&env, id, "delivered", |d| d[0]["status"] == "delivered").await;
        let d = deliveries(&env, id).await;
        let wid = d[0]["webhook_id"].as_str().unwrap();
        assert_eq!(got.get(wid), Some(&1), "delivered once: {wid} in {got:?}");
        assert!(d[0]["attempts"].as_u64().unwrap() >= 3, "{d:?}");
        assert_eq!(d[0]["last_status"], 200);
    }
    // Each body names its job and outcome.
    let bodies: Vec<Value> = Receiver::requests(&rx.log)
        .into_iter()
        .filter(|r| r["status"] == 200)
        .map(|r| r["body"].clone())
        .collect();
    for id in &ids {
        let b = bodies
            .iter()
            .find(|b| b["data"]["job_id"] == *id.as_str())
            .unwrap();
        assert_eq!(b["type"], "job.succeeded");
        assert_eq!(b["data"]["state"], "succeeded");
        assert_eq!(b["data"]["tool"], "noop");
        assert_eq!(b["data"]["client_id"], "client-001");
    }
}

#[tokio::test]
async fn a_receiver_down_for_a_while_gets_each_event_once_when_back() {
    let port = free_port();
    receiver_down_then_up(TestEnv::new(&config(port, "")), port).await;
}

#[tokio::test]
async fn a_receiver_down_for_a_while_gets_each_event_once_when_back_pg() {
    let port = free_port();
    let Some(env) = TestEnv::postgres(&config(port, "")) else {
        return;
    };
    receiver_down_then_up(env, port).await;
}

/// The outbox row commits with the job's completion: a daemon and a worker killed with -9
/// after the commit and before any delivery lose nothing once they (or others) run again.
async fn killed_between_commit_and_delivery(env: TestEnv, port: u16) {
    let env = with_tools(env);
    let mut d = env.spawn_daemon().await;
    let mut w = env.spawn_worker(1).await;
    let mut c = env.client(&d).await;
    let url = format!("http://127.0.0.1:{port}/hook/crash");
    let ids = enqueue(&mut c, &url, 4).await;
    for id in &ids {
        poll_until_finished(&mut c, id, BOUND).await;
        wait_deliveries(&env, id, "an attempt failed", |d| {
            d.len() == 1 && d[0]["attempts"].as_u64() >= Some(1)
        })
        .await;
    }
    d.proc.kill9().await;
    w.kill9().await;
    let rx = Receiver::start(env.dir.path(), port, &[&secret(1)]).await;
    let _d = env.spawn_daemon().await;
    let _w = env.spawn_worker(2).await;
    let got = wait_accepted(&rx.log, ids.len()).await;
    assert_eq!(got.len(), ids.len(), "{got:?}");
    assert!(got.values().all(|n| *n == 1), "{got:?}");
}

#[tokio::test]
async fn a_kill9_between_commit_and_delivery_still_delivers() {
    let port = free_port();
    killed_between_commit_and_delivery(TestEnv::new(&config(port, "")), port).await;
}

#[tokio::test]
async fn a_kill9_between_commit_and_delivery_still_delivers_pg() {
    let port = free_port();
    let Some(env) = TestEnv::postgres(&config(port, "")) else {
        return;
    };
    killed_between_commit_and_delivery(env, port).await;
}

#[tokio::test]
async fn a_callback_off_the_allowlist_is_refused_at_call_time() {
    let port = free_port();
    let env = with_tools(TestEnv::new(&config(port, "")));
    let d = env.spawn_daemon().await;
    let mut c = env.client(&d).await;
    for bad in [
        "https://evil.example.com/hook/x".to_string(),
        format!("http://127.0.0.1:{port}/other"),
        format!("http://user@127.0.0.1:{port}/hook/x"),
        "not a url".to_string(),
    ] {
        let r = c
            .call_job("noop", args("{}"), callback(&bad))
            .await
            .unwrap();
        assert_eq!(
            r.error_code(),
            Some("callback_not_allowed"),
            "{bad}: {}",
            r.raw
        );
    }
    // A client without an allowlist may name no callback.
    let mut c2 = mcpq::client::Client::connect(env.client2_settings(&d, CLIENT2_CURRENT))
        .await
        .unwrap();
    let r = c2
        .call_job(
            "noop",
            args("{}"),
            callback(&format!("http://127.0.0.1:{port}/hook/x")),
        )
        .await
        .unwrap();
    assert_eq!(r.error_code(), Some("callback_not_allowed"), "{}", r.raw);
    // Over /mcp, in `_meta` under mcpq's prefix: a JSON-RPC error naming the code.
    let (headers, body) = modern_request(
        TOKEN,
        "tools/call",
        serde_json::json!({"name": "noop", "arguments": {}}),
        serde_json::json!({}),
    );
    let mut body: Value = serde_json::from_str(&body).unwrap();
    body["params"]["_meta"]["io.mcpq/job"] =
        serde_json::json!({"callback": "https://evil.example.com/x"});
    let body = body.to_string();
    let mut req = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in &headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    let (_, answer) = raw_http(d.addr, req.as_bytes()).await;
    assert!(answer.contains("callback_not_allowed"), "{answer}");
    assert!(answer.contains("-32602"), "{answer}");
    let pool = db(&env.db_path()).await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 0, "a refused call stores nothing");
}

/// A 302 is a failed attempt: the redirect's target is never reached, the attempts are
/// recorded with their status, the event is given up after `max_attempts`, and the
/// metrics count it.
#[tokio::test]
async fn a_redirect_is_not_followed() {
    let port = free_port();
    let env = with_tools(TestEnv::new(
        &config(port, "").replace("max_attempts = 100", "max_attempts = 2"),
    ));
    let rx = Receiver::start(env.dir.path(), port, &[&secret(1)]).await;
    let d = env.spawn_daemon().await;
    let mut c = env.client(&d).await;
    let url = format!("http://127.0.0.1:{port}/redirect");
    let id = enqueue(&mut c, &url, 1).await.remove(0);
    wait_deliveries(&env, &id, "given up", |d| {
        d.len() == 1 && d[0]["status"] == "failed"
    })
    .await;
    let dl = deliveries(&env, &id).await;
    assert_eq!(dl[0]["attempts"], 2, "{dl:?}");
    assert_eq!(dl[0]["last_status"], 302, "{dl:?}");
    assert!(
        dl[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("redirects are not followed"),
        "{dl:?}"
    );
    let reqs = Receiver::requests(&rx.log);
    assert_eq!(reqs.iter().filter(|r| r["path"] == "/redirect").count(), 2);
    assert!(!reqs.iter().any(|r| r["path"] == "/target"), "{reqs:?}");
    // The text form of `mcpq jobs show` lists it too.
    let (_, text, _) = env.run(&["jobs", "show", &id]).await;
    assert!(text.contains("HTTP 302"), "{text}");
    let m = d.metrics.expect("metrics on");
    let (_, scrape) = raw_http(
        m,
        format!("GET /metrics HTTP/1.1\r\nHost: {m}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(
        scrape.contains(r#"mcpq_webhook_deliveries_total{outcome="failed"} 1"#),
        "{scrape}"
    );
    assert!(
        scrape.contains(r#"mcpq_webhook_deliveries_total{outcome="retrying"} 1"#),
        "{scrape}"
    );
}

/// Loopback is private: refused before connecting unless `webhooks.allow_private`.
#[tokio::test]
async fn a_private_target_is_refused_unless_allowed() {
    let port = free_port();
    let env = with_tools(TestEnv::new(
        &config(port, "")
            .replace("allow_private = true", "allow_private = false")
            .replace("max_attempts = 100", "max_attempts = 1"),
    ));
    let rx = Receiver::start(env.dir.path(), port, &[&secret(1)]).await;
    let d = env.spawn_daemon().await;
    let mut c = env.client(&d).await;
    let id = enqueue(&mut c, &format!("http://127.0.0.1:{port}/hook/p"), 1)
        .await
        .remove(0);
    wait_deliveries(&env, &id, "given up", |d| {
        d.len() == 1 && d[0]["status"] == "failed"
    })
    .await;
    let dl = deliveries(&env, &id).await;
    let err = dl[0]["last_error"].as_str().unwrap();
    assert!(err.contains("not a public address"), "{dl:?}");
    assert!(Receiver::requests(&rx.log).is_empty());
}

/// Two live secrets: every delivery carries both signatures, so a receiver that still has
/// the old secret and one that has the new one both verify it. Also: a cancelled job's
/// event, and the client's default callback for a call that names none.
#[tokio::test]
async fn both_secrets_sign_during_a_rotation() {
    let port = free_port();
    let extra = format!(
        "previous_secret = \"{}\"\nurl = \"http://127.0.0.1:{port}/hook/default\"\n",
        secret(2)
    );
    let env = with_tools(TestEnv::new(&config(port, &extra)));
    // The receiver checks each delivery with each secret on its own.
    let rx = Receiver::start(env.dir.path(), port, &[&secret(1), &secret(2)]).await;
    let d = env.spawn_daemon().await;
    let mut c = env.client(&d).await;
    // No callback named: the client's default.
    let r = c.call("noop", args("{}")).await.unwrap();
    let done = job_id(&r);
    // A scheduled job, cancelled before it runs.
    let mut opts = callback(&format!("http://127.0.0.1:{port}/hook/cancelled"));
    opts.insert("delay_ms".into(), mcpq::json::Json::Int(600_000));
    let r = c.call_job("noop", args("{}"), opts).await.unwrap();
    let cancelled = job_id(&r);
    let r = c
        .call(
            "cancel_job",
            args(&format!(r#"{{"job_id":"{cancelled}"}}"#)),
        )
        .await
        .unwrap();
    assert!(r.error_code().is_none(), "{}", r.raw);
    let got = wait_accepted(&rx.log, 2).await;
    assert_eq!(got.len(), 2, "{got:?}");
    let reqs = Receiver::requests(&rx.log);
    for r in &reqs {
        assert_eq!(r["verified"], serde_json::json!([true, true]), "{r}");
    }
    let by_job = |id: &str| {
        reqs.iter()
            .find(|r| r["body"]["data"]["job_id"] == id)
            .unwrap_or_else(|| panic!("{id} in {reqs:?}"))
            .clone()
    };
    assert_eq!(by_job(&done)["path"], "/hook/default");
    assert_eq!(by_job(&done)["body"]["type"], "job.succeeded");
    let c = by_job(&cancelled);
    assert_eq!(c["path"], "/hook/cancelled");
    assert_eq!(c["body"]["type"], "job.cancelled");
    assert_eq!(c["body"]["data"]["state"], "cancelled", "{c}");
}
