//! Flow control end to end (docs/FLOW.md): priorities with aging, scheduled jobs, paused
//! tool queues, and the bad input each refuses. Real daemon and worker processes over HTTP.

use std::time::Duration;

use crate::common::*;
use mcpq::envelope::Status;
use mcpq::json::{Json, Object};
use sqlx::Row;

const TOKEN: &str = "dev-only-mcp-token-00000000000000000000000000000000";

/// One worker slot claiming one job at a time, so start order is claim order.
fn one_slot(env: TestEnv) -> TestEnv {
    env.set("MCPQ__SERVER__EMBEDDED_WORKERS", "0")
        .set("MCPQ__SERVER__BENCH_TOOLS", "true")
        .set("MCPQ__WORKER__CONCURRENCY", "1")
        .set("MCPQ__WORKER__CLAIM_BATCH", "1")
        .set("MCPQ__JOBS__LEASE_MS", "1000")
        .set("MCPQ__JOBS__HEARTBEAT_MS", "100")
        .set("MCPQ__JOBS__RESCUE_INTERVAL_MS", "100")
}

async fn high(c: &mut mcpq::client::Client) -> String {
    let r = c.call_job("noop", args("{}"), job(r#"{"priority":2}"#));
    job_id(&r.await.unwrap())
}

fn job(json: &str) -> Object {
    args(json)
}

async fn times(env: &TestEnv, id: &str) -> (i64, Option<i64>, i64) {
    let pool = db(&env.db_path()).await;
    let r = sqlx::query("SELECT created_at, started_at, run_at FROM jobs WHERE id = ?1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    (r.get(0), r.get(1), r.get(2))
}

#[tokio::test]
async fn a_later_high_priority_job_starts_before_a_queued_low_flood() {
    let env = one_slot(TestEnv::new(""));
    let d = env.spawn_daemon().await;
    let _w = env.spawn_worker(1).await;
    let mut c = env.client(&d).await;
    let busy = job_id(
        &c.call("start_long_task", args(r#"{"seconds":2}"#))
            .await
            .unwrap(),
    );
    poll_until(&mut c, &busy, Duration::from_secs(10), "running", |r| {
        r.status == Status::Running
    })
    .await;
    let mut lows = Vec::new();
    for _ in 0..10 {
        let r = c.call("start_long_task", args(r#"{"seconds":1}"#)).await;
        lows.push(job_id(&r.unwrap()));
    }
    let high = c
        .call_job(
            "start_long_task",
            args(r#"{"seconds":1}"#),
            job(r#"{"priority":5}"#),
        )
        .await
        .unwrap();
    let high = job_id(&high);
    poll_until(
        &mut c,
        &high,
        Duration::from_secs(20),
        "high started",
        |r| r.status != Status::Accepted,
    )
    .await;
    let (_, high_started, _) = times(&env, &high).await;
    let high_started = high_started.expect("the high job started");
    for low in &lows {
        let (_, started, _) = times(&env, low).await;
        assert!(
            started.is_none_or(|s| s >= high_started),
            "a low job started at {started:?}, before the high one at {high_started}"
        );
    }
}

#[tokio::test]
async fn a_low_job_starts_within_its_aging_bound_under_a_high_flood() {
    // Aging 1 s: a priority-2 job goes ahead of the low one only if it was enqueued less
    // than 2 s after it. The queue is paused while the flood builds, then drained by one slot.
    let env = one_slot(TestEnv::new("").set("MCPQ__JOBS__AGING_SECS", "1"));
    let d = env.spawn_daemon().await;
    let mut c = env.client(&d).await;
    let (code, _, err) = env.run(&["jobs", "pause", "noop"]).await;
    assert_eq!(code, 0, "{err}");
    let mut highs = vec![high(&mut c).await];
    let low = job_id(&c.call("noop", args("{}")).await.unwrap());
    let (low_created, _, _) = times(&env, &low).await;
    // A steady flood until well past the low job's bound.
    while now_ms() < low_created + 3000 {
        highs.push(high(&mut c).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _w = env.spawn_worker(1).await;
    let (code, _, err) = env.run(&["jobs", "resume", "noop"]).await;
    assert_eq!(code, 0, "{err}");
    let last = highs.last().unwrap().clone();
    poll_until_finished(&mut c, &last, Duration::from_secs(30)).await;
    poll_until_finished(&mut c, &low, Duration::from_secs(30)).await;
    let (_, low_started, _) = times(&env, &low).await;
    let low_started = low_started.unwrap();
    let (mut before, mut after) = (0, 0);
    for h in &highs {
        let (created, started, _) = times(&env, h).await;
        let started = started.unwrap();
        // Noop jobs run back to back, several within one millisecond: ties are claim
        // order we cannot see, so only a strict inversion counts.
        if created < low_created + 2000 {
            assert!(
                started <= low_started,
                "a high job within the bound waited: created {created} started {started}, \
                 low created {low_created} started {low_started}"
            );
            before += 1;
        } else if created > low_created + 2000 {
            assert!(
                started >= low_started,
                "a high job past the bound went first: created {created} started {started}, \
                 low created {low_created} started {low_started}"
            );
            after += 1;
        }
    }
    assert!(
        before > 0 && after > 0,
        "the flood spans the bound: {before} / {after}"
    );
}

#[tokio::test]
async fn a_scheduled_job_waits_survives_kill_9_and_is_cancellable_before_it_runs() {
    let env = one_slot(TestEnv::new(""));
    let d = env.spawn_daemon().await;
    let mut w = env.spawn_worker(1).await;
    let mut c = env.client(&d).await;
    let r = c
        .call_job("noop", args("{}"), job(r#"{"delay_ms":3000}"#))
        .await
        .unwrap();
    let id = job_id(&r);
    let cancel_me = c
        .call_job("noop", args("{}"), job(r#"{"delay_ms":600000}"#))
        .await
        .unwrap();
    let cancel_me = job_id(&cancel_me);
    let p = c
        .call("poll_job", args(&format!(r#"{{"job_id":"{id}"}}"#)))
        .await
        .unwrap();
    let state = p
        .result
        .as_ref()
        .and_then(|r| r.get("state"))
        .and_then(Json::as_str);
    assert_eq!(state, Some("scheduled"), "{}", p.raw);
    // Cancelled before its time: it never runs.
    let x = c
        .call(
            "cancel_job",
            args(&format!(r#"{{"job_id":"{cancel_me}"}}"#)),
        )
        .await
        .unwrap();
    assert!(x.ok, "{}", x.raw);
    // Everything dies while the job waits; it is still there, still scheduled.
    let mut d = d;
    d.proc.kill9().await;
    w.kill9().await;
    let (created, started, run_at) = times(&env, &id).await;
    assert_eq!((started, run_at - created), (None, 3000));
    let d = env.spawn_daemon().await;
    let _w = env.spawn_worker(2).await;
    let mut c = env.client(&d).await;
    let done = poll_until_finished(&mut c, &id, Duration::from_secs(20)).await;
    assert_eq!(done.status, Status::Done, "{}", done.raw);
    let (_, started, run_at) = times(&env, &id).await;
    assert!(started.unwrap() >= run_at, "claimed before its time");
    let p = c
        .call("poll_job", args(&format!(r#"{{"job_id":"{cancel_me}"}}"#)))
        .await
        .unwrap();
    assert_eq!(p.error_code(), Some("job_cancelled"), "{}", p.raw);
}

#[tokio::test]
async fn a_paused_tool_keeps_its_jobs_queued_until_resumed_and_metrics_show_it() {
    let env = one_slot(TestEnv::new(""));
    let d = env.spawn_daemon().await;
    let _w = env.spawn_worker(1).await;
    let mut c = env.client(&d).await;
    let (code, out, err) = env.run(&["jobs", "pause", "noop", "--json"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(r#""changed":true"#), "{out}");
    let held = job_id(&c.call("noop", args("{}")).await.unwrap());
    // A job of another tool, queued after it, runs: the worker is claiming.
    let other = job_id(
        &c.call("start_long_task", args(r#"{"seconds":1}"#))
            .await
            .unwrap(),
    );
    poll_until_finished(&mut c, &other, Duration::from_secs(20)).await;
    let p = c
        .call("poll_job", args(&format!(r#"{{"job_id":"{held}"}}"#)))
        .await
        .unwrap();
    assert_eq!(p.status, Status::Accepted, "{}", p.raw);
    let (code, out, _) = env.run(&["jobs", "paused", "--json"]).await;
    assert_eq!(code, 0);
    assert!(out.contains(r#""tool":"noop""#), "{out}");
    let metrics = d.metrics.expect("metrics on");
    let (_, body) = raw_http(
        metrics,
        b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(body.contains("mcpq_tool_paused{tool=\"noop\"} 1"), "{body}");
    let (code, _, err) = env.run(&["jobs", "resume", "noop"]).await;
    assert_eq!(code, 0, "{err}");
    let done = poll_until_finished(&mut c, &held, Duration::from_secs(20)).await;
    assert_eq!(done.status, Status::Done, "{}", done.raw);
}

#[tokio::test]
async fn bad_priorities_and_schedules_are_refused_and_store_nothing() {
    let env = one_slot(TestEnv::new("[clients.client-001]\nmax_priority = 3\n"));
    let d = env.spawn_daemon().await;
    let mut c = env.client(&d).await;
    let past = now_ms() - 3_600_000;
    for (opts, code, needle) in [
        (
            r#"{"priority":4}"#.to_string(),
            "invalid_args",
            "above this client's maximum of 3",
        ),
        (r#"{"priority":10}"#.into(), "invalid_args", "outside 0..=9"),
        (
            format!(r#"{{"not_before_ms":{past}}}"#),
            "invalid_args",
            "in the past",
        ),
        (
            r#"{"delay_ms":999999999999}"#.into(),
            "invalid_args",
            "max_delay_secs",
        ),
        (r#"{"delay":5}"#.into(), "invalid_args", "unexpected key"),
    ] {
        let r = c.call_job("noop", args("{}"), job(&opts)).await.unwrap();
        assert_eq!(r.error_code(), Some(code), "{opts}: {}", r.raw);
        assert!(r.error.as_deref().unwrap().contains(needle), "{}", r.raw);
    }
    let r = c
        .call_job("server_identity", args("{}"), job(r#"{"priority":1}"#))
        .await
        .unwrap();
    assert_eq!(r.error_code(), Some("invalid_args"), "{}", r.raw);
    // Within the client's maximum: accepted.
    let ok = c
        .call_job("noop", args("{}"), job(r#"{"priority":3}"#))
        .await
        .unwrap();
    assert_eq!(ok.status, Status::Accepted, "{}", ok.raw);
    // Over /mcp, in `_meta` under mcpq's prefix.
    let (headers, body) = modern_request(
        TOKEN,
        "tools/call",
        serde_json::json!({"name": "noop", "arguments": {}}),
        serde_json::json!({}),
    );
    let mut body: serde_json::Value = serde_json::from_str(&body).unwrap();
    body["params"]["_meta"]["io.mcpq/job"] = serde_json::json!({"priority": 9});
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
    assert!(answer.contains("above this client's maximum"), "{answer}");
    let pool = db(&env.db_path()).await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 1, "only the accepted job is stored");
}

#[tokio::test]
async fn out_of_range_priorities_in_config_are_refused_naming_the_key() {
    for (extra, needle) in [
        (
            "[tools.t]\ndescription = \"x\"\ncommand = [\"/bin/cat\"]\npriority = 10\n",
            "tools.t: priority must be at most 9",
        ),
        (
            "[clients.client-001]\nmax_priority = 12\n",
            "clients.client-001.max_priority must be at most 9",
        ),
    ] {
        let env = TestEnv::new(extra);
        let (code, out, err) = env.run(&["config", "check"]).await;
        assert_ne!(code, 0, "{out}");
        assert!(err.contains(needle), "{err}");
    }
}

fn fixture(name: &str) -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

/// The real interpreter (not a pyenv shim, which needs an environment the tool does not get).
fn python() -> String {
    let out = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 runs");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// (time, +1 start / -1 end) from an overlap.py log, ends first at equal times.
fn events(log: &std::path::Path) -> Vec<(f64, i32)> {
    let mut e: Vec<(f64, i32)> = std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let (what, at) = l.split_once(' ').unwrap();
            (at.parse().unwrap(), if what == "start" { 1 } else { -1 })
        })
        .collect();
    e.sort_by(|a, b| a.partial_cmp(b).unwrap());
    e
}

fn peak(events: &[(f64, i32)]) -> i32 {
    let (mut running, mut peak) = (0, 0);
    for (_, d) in events {
        running += d;
        peak = peak.max(running);
    }
    peak
}

#[tokio::test]
async fn a_limit_per_customer_holds_across_six_workers_and_spares_other_customers() {
    let dir = tempfile::tempdir().unwrap();
    let env = one_slot(TestEnv::new(&format!(
        "[tools.per_customer]\ndescription = \"d\"\ncommand = [\"{}\", \"{}\"]\n\
         concurrency_key = \"/customer_id\"\nconcurrency_per_key = 2\n",
        python(),
        fixture("overlap.py")
    )));
    let d = env.spawn_daemon().await;
    let _w: Vec<Proc> = futures_util::future::join_all((1..=6).map(|n| env.spawn_worker(n))).await;
    let mut c = env.client(&d).await;
    let mut ids = Vec::new();
    // Customer a's backlog first: b's and c's jobs must not wait behind it.
    for cust in ["a", "a", "a", "a", "a", "a", "b", "b", "b", "c", "c", "c"] {
        let log = dir.path().join(format!("{cust}.log"));
        let a = format!(
            r#"{{"log":"{}","seconds":0.5,"customer_id":"{cust}"}}"#,
            log.display()
        );
        ids.push(job_id(&c.call("per_customer", args(&a)).await.unwrap()));
    }
    let missing = c
        .call("per_customer", args(r#"{"log":"/dev/null"}"#))
        .await
        .unwrap();
    assert_eq!(
        missing.error_code(),
        Some("invalid_args"),
        "{}",
        missing.raw
    );
    for id in &ids {
        let done = poll_until_finished(&mut c, id, Duration::from_secs(60)).await;
        assert_eq!(done.status, Status::Done, "{}", done.raw);
    }
    let mut everyone = Vec::new();
    for cust in ["a", "b", "c"] {
        let e = events(&dir.path().join(format!("{cust}.log")));
        assert!(peak(&e) <= 2, "customer {cust}: {} at once", peak(&e));
        everyone.extend(e);
    }
    everyone.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert!(
        peak(&everyone) >= 4,
        "other customers ran beside a's: peak {}",
        peak(&everyone)
    );
}

#[tokio::test]
async fn a_start_rate_holds_within_ten_percent_across_workers() {
    let env = one_slot(TestEnv::new(
        "[tools.quota]\ndescription = \"d\"\ncommand = [\"/bin/cat\"]\nrate_per_sec = 10\n",
    ))
    .set("MCPQ__WORKER__CONCURRENCY", "4")
    .set("MCPQ__WORKER__IDLE_BACKOFF_MAX_MS", "20");
    let d = env.spawn_daemon().await;
    let _w: Vec<Proc> = futures_util::future::join_all((1..=2).map(|n| env.spawn_worker(n))).await;
    let mut c = env.client(&d).await;
    let mut ids = Vec::new();
    for _ in 0..70 {
        ids.push(job_id(&c.call("quota", args("{}")).await.unwrap()));
    }
    for id in &ids {
        let done = poll_until_finished(&mut c, id, Duration::from_secs(60)).await;
        assert_eq!(done.status, Status::Done, "{}", done.raw);
    }
    let pool = db(&env.db_path()).await;
    let starts: Vec<i64> =
        sqlx::query_scalar("SELECT started_at FROM jobs WHERE tool = 'quota' ORDER BY started_at")
            .fetch_all(&pool)
            .await
            .unwrap();
    // After the first second's burst (10), 60 starts at 10 per second: 6 s.
    let span = (starts[69] - starts[9]) as f64 / 1000.0;
    let rate = 60.0 / span;
    assert!(
        (9.0..=11.0).contains(&rate),
        "{rate:.2} starts/s over {span:.2} s"
    );
}

/// The envelope's `job` field takes an idempotency key for any job tool: the same key
/// answers the same job, another key another job, and a key that clashes with the
/// arguments' own is refused.
#[tokio::test]
async fn an_envelopes_idempotency_key_names_one_job_for_any_job_tool() {
    let env = TestEnv::new("")
        .set("MCPQ__SERVER__EMBEDDED_WORKERS", "0")
        .set("MCPQ__SERVER__BENCH_TOOLS", "true");
    let d = env.spawn_daemon().await;
    let mut c = env.client(&d).await;
    let keyed = |k: &str| job(&format!(r#"{{"idempotency_key":"{k}"}}"#));
    let first = job_id(&c.call_job("noop", args("{}"), keyed("a")).await.unwrap());
    let again = job_id(&c.call_job("noop", args("{}"), keyed("a")).await.unwrap());
    let other = job_id(&c.call_job("noop", args("{}"), keyed("b")).await.unwrap());
    assert_eq!(first, again);
    assert_ne!(first, other);
    let r = c
        .call_job(
            "start_long_task",
            args(r#"{"seconds":1,"idempotency_key":"x"}"#),
            keyed("y"),
        )
        .await
        .unwrap();
    assert_eq!(r.status, Status::Error, "{r:?}");
    let pool = db(&env.db_path()).await;
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM jobs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 2, "one job per key, none for the refused call");
}
