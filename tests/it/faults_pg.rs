//! PostgreSQL fails under load, for real: two daemons and two workers on a cluster of the
//! test's own (`MCPQ_TEST_PG_FAULTS_CLUSTER`, made by `.ci/postgres.sh`), whose sessions the
//! test terminates several times and which it then stops for 10 s. Every caller must hear
//! `accepted` with a job that exists or the retryable `store_unavailable` (never
//! `internal`); a client that retries on it ends with every job exactly once; every
//! acknowledged job runs; the outage's log stays short; `/readyz` says so meanwhile.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use mcpq::envelope::Status;
use sqlx::Row;

/// (URL, `pg_ctlcluster` version and name) of the cluster this test may stop.
fn fault_cluster() -> Option<(String, String, String)> {
    let url = std::env::var("MCPQ_TEST_PG_FAULTS_URL").ok();
    let cluster = std::env::var("MCPQ_TEST_PG_FAULTS_CLUSTER").ok();
    match (url, cluster) {
        (Some(u), Some(c)) if !u.is_empty() => {
            let (v, n) = c
                .split_once(' ')
                .expect("MCPQ_TEST_PG_FAULTS_CLUSTER is 'VERSION NAME'");
            Some((u, v.to_string(), n.to_string()))
        }
        _ => {
            assert!(
                std::env::var("MCPQ_REQUIRE_PG").is_err(),
                "MCPQ_REQUIRE_PG is set but MCPQ_TEST_PG_FAULTS_URL/_CLUSTER are not"
            );
            eprintln!("notice: no PostgreSQL fault cluster configured; skipping");
            None
        }
    }
}

fn pg_ctl(version: &str, name: &str, action: &[&str]) {
    let st = std::process::Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", version, name])
        .args(action)
        .status()
        .expect("pg_ctlcluster");
    assert!(st.success(), "pg_ctlcluster {action:?}");
}

/// Starts the cluster when dropped, so a failed run does not leave it stopped.
struct Restart(String, String);

impl Drop for Restart {
    fn drop(&mut self) {
        let _ = std::process::Command::new("pg_ctlcluster")
            .args(["--skip-systemctl-redirect", &self.0, &self.1, "start"])
            .output();
    }
}

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    raw_http(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
}

/// What the load saw: per logical call, its job id once accepted; every answer's code.
#[derive(Default)]
struct Seen {
    accepted: HashMap<String, String>,
    codes: HashMap<String, u64>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_outage_under_load_loses_nothing_and_answers_only_accepted_or_retryable() {
    let Some((url, version, name)) = fault_cluster() else {
        return;
    };
    let schema = format!("mcpq_it_{}", uuid::Uuid::new_v4().simple());
    let tool = "[tools.cat]\ndescription = \"echo\"\ncommand = [\"/bin/cat\"]\n";
    let mut env = TestEnv::new(tool)
        .set("MCPQ__DATABASE__URL", &url)
        .set("MCPQ__POSTGRES__SCHEMA", &schema)
        .set("MCPQ__POSTGRES__MAX_CONNECTIONS", "4")
        .set("MCPQ__SERVER__EMBEDDED_WORKERS", "0")
        .set("RUST_LOG", "info");
    env.pg = Some((url.clone(), schema.clone()));
    let d1 = env.spawn_daemon_logging_to("daemon1.log").await;
    let d2 = env.spawn_daemon_logging_to("daemon2.log").await;
    let w1 = env.spawn_worker(1).await;
    let w2 = env.spawn_worker(2).await;
    let pool = env.pg_pool().await;

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut load = Vec::new();
    for k in 0..4 {
        let settings = env.client_settings(if k % 2 == 0 { &d1 } else { &d2 });
        let (stop, seen) = (stop.clone(), seen.clone());
        load.push(tokio::spawn(async move {
            let mut client = mcpq::client::Client::connect(settings.clone())
                .await
                .unwrap();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let call = format!("c{k}-{n}");
                // Retry one logical call until it is accepted, as the protocol allows:
                // each retry is a new envelope.
                loop {
                    let r = match client
                        .call("cat", args(&format!(r#"{{"call":"{call}"}}"#)))
                        .await
                    {
                        Ok(r) => r,
                        Err(e) => panic!("the daemon must answer every call: {e}"),
                    };
                    let code = match r.status {
                        Status::Accepted => "accepted".to_string(),
                        _ => r.error_code().unwrap_or("?").to_string(),
                    };
                    *seen.lock().unwrap().codes.entry(code.clone()).or_default() += 1;
                    if r.status == Status::Accepted {
                        seen.lock()
                            .unwrap()
                            .accepted
                            .insert(call.clone(), job_id(&r));
                        break;
                    }
                    assert_eq!(code, "store_unavailable", "{}", r.raw);
                    // Retry-After: 1 s, as the answer says.
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                n += 1;
                // A steady, bounded load (~50 calls/s per client).
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Every mcpq session ended by the server, several times.
    for _ in 0..3 {
        let ended: i64 = sqlx::query_scalar(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE usename = current_user AND pid <> pg_backend_pid()",
        )
        .fetch_one(&pool)
        .await
        .expect("terminate the sessions");
        assert!(ended > 0);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // A commit session's backend killed outright: PostgreSQL restarts every session (crash
    // recovery), and a batch sent on that connection meets a dead socket, so its outcome is
    // unknown: the daemon resolves it by lookup before answering.
    // Matched by its first line: pg_stat_activity keeps only the first 1 KiB of a statement
    // (track_activity_query_size). A committer that reconnected shows its enqueue statement
    // once it has committed a batch on the new connection.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let pids: Vec<i32> = loop {
        let pids: Vec<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE usename = current_user \
             AND pid <> pg_backend_pid() AND query LIKE '-- One group commit in one statement%'",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        if !pids.is_empty() {
            break pids;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the daemons' commit sessions are visible"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for pid in &pids {
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
    }
    let resolved = |d: &Daemon| {
        let m = d.metrics.expect("metrics");
        async move {
            let (_, text) = get(m, "/metrics").await;
            text.lines()
                .filter(|l| l.starts_with("mcpq_commits_resolved_total"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>()
        }
    };
    eventually(
        Duration::from_secs(30),
        "an unknown commit outcome resolved",
        || async { resolved(&d1).await + resolved(&d2).await > 0.0 },
    )
    .await;
    let before = [&d1.proc, &d2.proc, &w1, &w2].map(|p| warn_lines(&p.logs()));

    // The server away for 10 s (and started again even if an assertion fails meanwhile).
    let _restart = Restart(version.clone(), name.clone());
    pg_ctl(&version, &name, &["stop", "-m", "fast"]);
    let (code, body) = get(d1.addr, "/readyz").await;
    assert_eq!(code, 503, "{body}");
    eventually(Duration::from_secs(10), "readyz says how long", || async {
        get(d2.addr, "/readyz")
            .await
            .1
            .contains("database unreachable for")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    pg_ctl(&version, &name, &["start"]);
    eventually(
        Duration::from_secs(20),
        "both daemons ready again",
        || async {
            get(d1.addr, "/readyz").await.0 == 200 && get(d2.addr, "/readyz").await.0 == 200
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.expect("load task");
    }

    let seen = std::mem::take(&mut *seen.lock().unwrap());
    eprintln!(
        "answers: {:?}; logical calls: {}",
        seen.codes,
        seen.accepted.len()
    );
    assert!(
        seen.codes
            .keys()
            .all(|c| c == "accepted" || c == "store_unavailable"),
        "{:?}",
        seen.codes
    );
    assert!(seen.codes.get("store_unavailable").copied().unwrap_or(0) > 0);

    // Every acknowledged job exists and runs; every logical call ran exactly once.
    let pool = env.pg_pool().await;
    eventually(Duration::from_secs(120), "every job finished", || async {
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM jobs WHERE state NOT IN ('succeeded', 'failed', 'cancelled')",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        open == 0
    })
    .await;
    let rows = sqlx::query("SELECT id, args, state FROM jobs")
        .fetch_all(&pool)
        .await
        .unwrap();
    let mut per_call: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for r in rows {
        let a: serde_json::Value = serde_json::from_str(&r.get::<String, _>(1)).unwrap();
        per_call
            .entry(a["call"].as_str().unwrap().to_string())
            .or_default()
            .push((r.get(0), r.get(2)));
    }
    for (call, id) in &seen.accepted {
        let jobs = per_call
            .get(call)
            .unwrap_or_else(|| panic!("accepted {call} has no job"));
        assert_eq!(jobs.len(), 1, "{call} ran as {jobs:?}");
        assert_eq!(&jobs[0].0, id, "{call}: the acknowledged id is the job");
        assert_eq!(jobs[0].1, "succeeded", "{call}");
    }
    assert!(
        per_call.keys().all(|c| seen.accepted.contains_key(c)),
        "a job exists that no caller was told about"
    );

    // The outage's log: a few dozen lines per process, not one per failed call.
    for (p, b) in [&d1.proc, &d2.proc, &w1, &w2].iter().zip(before) {
        let log = p.logs();
        let during = warn_lines(&log) - b;
        eprintln!(
            "{}: {during} warning lines during the outage",
            p.stderr_path.display()
        );
        assert!(during <= 40, "{during} warning lines:\n{log}");
    }
    let log = d1.proc.logs();
    assert!(log.contains("store reachable again after"), "{log}");
}

fn warn_lines(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .count()
}
