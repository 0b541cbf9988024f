//! The operator's commands (`mcpq jobs …`, `mcpq stats`, `mcpq backup`), run as an operator
//! would: the real binary against the database of a running daemon and workers.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use mcpq::envelope::Status;
use serde_json::Value;

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

/// `fatal` fails for good at once; `start_long_task` (built in) runs for as long as asked.
fn env() -> TestEnv {
    TestEnv::new(&format!(
        "[tools.fatal]\ndescription = \"fails\"\ncommand = [\"{}\"]\nenv = {{ PATH = \"/usr/bin:/bin\" }}\nmax_attempts = 1\n",
        fixture("fatal.sh")
    ))
    .set("MCPQ__SERVER__EMBEDDED_WORKERS", "0")
    .set("MCPQ__JOBS__HEARTBEAT_MS", "100")
}

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

#[tokio::test]
async fn operators_list_show_retry_cancel_and_purge_while_daemon_and_worker_run() {
    let env = env();
    let d = env.spawn_daemon().await;
    let _w = env.spawn_worker(1).await;
    let mut c = env.client(&d).await;

    // A job that fails for good, retried by an operator with two more attempts.
    let r = c.call("fatal", args("{}")).await.unwrap();
    let failed = job_id(&r);
    let done = poll_until_finished(&mut c, &failed, Duration::from_secs(30)).await;
    assert_eq!(done.error_code(), Some("job_failed"), "{}", done.raw);
    let (code, out, _) = env
        .run(&[
            "jobs", "list", "--state", "failed", "--tool", "fatal", "--json",
        ])
        .await;
    assert_eq!(code, 0);
    let listed = json(&out);
    assert_eq!(listed.as_array().unwrap().len(), 1, "{out}");
    assert_eq!(listed[0]["id"], failed.as_str());
    assert_eq!(listed[0]["client_id"], "client-001");
    let (code, out, err) = env
        .run(&["jobs", "retry", &failed, "--attempts", "2"])
        .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("queued"), "{out}");
    // It runs again, and fails again at once: the tool's failure is fatal, so the second
    // attempt granted is not used.
    eventually(Duration::from_secs(30), "one more attempt", || async {
        let (_, out, _) = env.run(&["jobs", "show", &failed, "--json"]).await;
        let j = json(&out);
        j["state"] == "failed" && j["attempt"] == 2
    })
    .await;
    let (_, out, _) = env.run(&["jobs", "show", &failed, "--json"]).await;
    let shown = json(&out);
    assert_eq!(shown["max_attempts"], 3, "{out}");
    let events: Vec<String> = shown["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["error"].as_str().unwrap().to_string())
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("operator: retried by") && e.contains("2 more attempt")),
        "{events:?}"
    );
    // The table for people names the job, its attempts and the operator's entry.
    let (code, table, _) = env.run(&["jobs", "show", &failed]).await;
    assert_eq!(code, 0);
    assert!(
        table.contains(&failed)
            && table.contains("2 of 3")
            && table.contains("operator: retried by"),
        "{table}"
    );

    // A running job cancelled by an operator: the worker stops it.
    let r = c
        .call("start_long_task", args(r#"{"seconds":20}"#))
        .await
        .unwrap();
    let long = job_id(&r);
    poll_until(&mut c, &long, Duration::from_secs(20), "running", |r| {
        r.raw.contains(r#""state":"running""#)
    })
    .await;
    let (code, out, err) = env.run(&["jobs", "cancel", &long, "--json"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(json(&out)["outcome"], "cancel_requested");
    let done = poll_until_finished(&mut c, &long, Duration::from_secs(30)).await;
    assert_eq!(done.error_code(), Some("job_cancelled"), "{}", done.raw);

    // Refusals: exit codes, nothing changed.
    let (code, _, err) = env.run(&["jobs", "retry", &long]).await;
    assert_eq!(code, 4, "a cancelled job is not retried: {err}");
    let (code, _, err) = env
        .run(&["jobs", "show", "00000000000000000000000000000000"])
        .await;
    assert_eq!(code, 3, "{err}");
    let (code, _, err) = env.run(&["jobs", "list", "--state", "bogus"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unknown state"), "{err}");

    // Stats while things run: one queued (no worker for this client's tool? it is
    // claimed at once), so check the shape and the last minute's finished jobs.
    let (code, out, _) = env.run(&["stats", "--json"]).await;
    assert_eq!(code, 0);
    let stats = json(&out);
    assert_eq!(stats["finished_last_minute"]["failed"], 1, "{out}");
    assert_eq!(stats["finished_last_minute"]["cancelled"], 1, "{out}");
    let (code, table, _) = env.run(&["stats"]).await;
    assert_eq!(code, 0);
    assert!(table.contains("throughput"), "{table}");

    // Purge: both finished jobs are older than 0 s.
    let (code, out, _) = env
        .run(&["jobs", "purge", "--older-than", "0s", "--json"])
        .await;
    assert_eq!(code, 0);
    assert_eq!(json(&out)["purged"], 2, "{out}");
    let done = c
        .call("poll_job", args(&format!(r#"{{"job_id":"{failed}"}}"#)))
        .await
        .unwrap();
    assert_eq!(done.error_code(), Some("unknown_job"), "{}", done.raw);
}

#[tokio::test]
async fn a_backup_under_enqueue_load_holds_every_job_acknowledged_before_it_began() {
    let env = TestEnv::new("").set("MCPQ__SERVER__EMBEDDED_WORKERS", "0");
    let d = env.spawn_daemon().await;
    // Enqueue load from 4 clients until told to stop; each acknowledged id is recorded.
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let mut c = env.client(&d).await;
        let acked = acked.clone();
        let stop = stop.clone();
        load.spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = c
                    .call("start_long_task", args(r#"{"seconds":1}"#))
                    .await
                    .unwrap();
                assert_eq!(r.status, Status::Accepted, "{}", r.raw);
                acked.lock().unwrap().push(job_id(&r));
            }
        });
    }
    eventually(
        Duration::from_secs(20),
        "some jobs acknowledged",
        || async { acked.lock().unwrap().len() >= 500 },
    )
    .await;
    let before: Vec<String> = acked.lock().unwrap().clone();
    let copy = env.dir.path().join("backup.db");
    let (code, out, err) = env.run(&["backup", copy.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("backed up"), "{out}");
    assert!(!err.contains('\r'), "no progress bar in a pipe: {err:?}");
    let during = acked.lock().unwrap().len();
    assert!(during > before.len(), "the load ran on during the backup");
    // The load went on while the backup ran.
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    while let Some(r) = load.join_next().await {
        r.unwrap();
    }
    // A backup never overwrites.
    let (code, _, err) = env.run(&["backup", copy.to_str().unwrap()]).await;
    assert_eq!(code, 1);
    assert!(err.contains("exists"), "{err}");

    // A fresh daemon on the copy answers every job acknowledged before the backup began.
    let restored = TestEnv::new("")
        .set("MCPQ__SERVER__EMBEDDED_WORKERS", "0")
        .set("MCPQ__DATABASE__PATH", copy.to_str().unwrap());
    let d2 = restored.spawn_daemon().await;
    let mut c2 = restored.client(&d2).await;
    let ids: HashSet<&String> = before.iter().collect();
    assert_eq!(ids.len(), before.len());
    for id in &before {
        let r = c2
            .call("poll_job", args(&format!(r#"{{"job_id":"{id}"}}"#)))
            .await
            .unwrap();
        assert!(
            r.ok,
            "job {id} acknowledged before the backup is missing: {}",
            r.raw
        );
    }
}
