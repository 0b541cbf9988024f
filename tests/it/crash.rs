//! Crashes and shutdowns of real processes: nothing acknowledged is lost, nothing runs twice
//! without being counted, nothing stays stuck `running`.

use std::collections::HashSet;
use std::time::Duration;

use crate::common::*;
use mcpq::envelope::Status;

/// A daemon with no embedded workers (jobs run only in `mcpq worker` processes) and short leases.
fn env_with_workers() -> TestEnv {
    TestEnv::new("")
        .set("MCPQ__SERVER__EMBEDDED_WORKERS", "0")
        .set("MCPQ__JOBS__LEASE_MS", "1000")
        .set("MCPQ__JOBS__HEARTBEAT_MS", "100")
        .set("MCPQ__JOBS__RESCUE_INTERVAL_MS", "100")
        .set("MCPQ__JOBS__RETRY_BASE_MS", "100")
}

#[derive(Debug, sqlx::FromRow)]
struct Row {
    state: String,
    attempt: i64,
    errors: String,
    result: Option<String>,
    lease_owner: Option<String>,
}

async fn row(env: &TestEnv, id: &str) -> Row {
    let pool = db(&env.db_path()).await;
    sqlx::query_as("SELECT state, attempt, errors, result, lease_owner FROM jobs WHERE id = ?")
        .bind(id)
        .fetch_one(&pool)
        .await
        .expect("job row")
}

#[tokio::test]
async fn daemon_killed_right_after_accepted_keeps_the_job() {
    let env = TestEnv::new("");
    let mut d = env.spawn_daemon().await;
    let mut c = env.client(&d).await;
    let r = c
        .call(
            "start_long_task",
            args(r#"{"seconds":1,"payload":{"k":"v"}}"#),
        )
        .await
        .unwrap();
    assert_eq!(r.status, Status::Accepted);
    let id = job_id(&r);
    d.proc.kill9().await;

    let d = env.spawn_daemon().await;
    let mut c = env.client(&d).await;
    let first = c
        .call("poll_job", args(&format!(r#"{{"job_id":"{id}"}}"#)))
        .await
        .unwrap();
    assert!(first.ok, "the job survived the crash: {}", first.raw);
    let done = poll_until_finished(&mut c, &id, Duration::from_secs(20)).await;
    assert_eq!(done.status, Status::Done, "{}", done.raw);
    assert!(done.raw.contains(r#""result":{"k":"v"}"#));
}

#[tokio::test]
async fn worker_killed_mid_job_is_finished_by_another_worker() {
    let env = env_with_workers();
    let d = env.spawn_daemon().await;
    let mut w1 = env.spawn_worker(1).await;
    let mut c = env.client(&d).await;
    let id = job_id(
        &c.call(
            "start_long_task",
            args(r#"{"seconds":2,"payload":{"x":1}}"#),
        )
        .await
        .unwrap(),
    );
    poll_until(&mut c, &id, Duration::from_secs(10), "running", |r| {
        r.status == Status::Running
    })
    .await;
    w1.kill9().await;

    let _w2 = env.spawn_worker(2).await;
    let done = poll_until_finished(&mut c, &id, Duration::from_secs(30)).await;
    assert_eq!(done.status, Status::Done, "{}", done.raw);
    let r = row(&env, &id).await;
    assert_eq!((r.state.as_str(), r.attempt), ("succeeded", 2));
    assert_eq!(r.result.as_deref(), Some(r#"{"x":1}"#));
    let errors: serde_json::Value = serde_json::from_str(&r.errors).unwrap();
    assert_eq!(errors.as_array().unwrap().len(), 1, "{}", r.errors);
    assert_eq!(errors[0]["attempt"], 1);
    assert!(errors[0]["error"]
        .as_str()
        .unwrap()
        .starts_with("lease_expired"));
}

#[tokio::test]
async fn attempts_run_out_after_repeated_crashes_and_the_job_fails_with_its_history() {
    let env = env_with_workers().set("MCPQ__JOBS__MAX_ATTEMPTS", "2");
    let d = env.spawn_daemon().await;
    let mut c = env.client(&d).await;
    let id = job_id(
        &c.call("start_long_task", args(r#"{"seconds":20}"#))
            .await
            .unwrap(),
    );
    for n in 1..=2 {
        let mut w = env.spawn_worker(n).await;
        poll_until(&mut c, &id, Duration::from_secs(20), "running", |r| {
            r.status == Status::Running
                && r.result.as_ref().and_then(|o| o.get("attempt"))
                    == Some(&mcpq::json::Json::Int(n as i64))
        })
        .await;
        w.kill9().await;
    }
    let done = poll_until_finished(&mut c, &id, Duration::from_secs(20)).await;
    assert_eq!(done.error_code(), Some("job_failed"), "{}", done.raw);
    assert!(
        done.error
            .as_deref()
            .unwrap()
            .contains("after 2 attempt(s): lease_expired"),
        "{}",
        done.raw
    );
    let r = row(&env, &id).await;
    assert_eq!((r.state.as_str(), r.attempt), ("failed", 2));
    let errors: serde_json::Value = serde_json::from_str(&r.errors).unwrap();
    assert_eq!(errors.as_array().unwrap().len(), 2, "{}", r.errors);
}

#[tokio::test]
async fn sigterm_releases_a_running_job_without_burning_an_attempt() {
    let env = env_with_workers().set("MCPQ__WORKER__GRACE_PERIOD_MS", "200");
    let d = env.spawn_daemon().await;
    let mut c = env.client(&d).await;
    let mut w1 = env.spawn_worker(1).await;
    let id = job_id(
        &c.call("start_long_task", args(r#"{"seconds":3}"#))
            .await
            .unwrap(),
    );
    poll_until(&mut c, &id, Duration::from_secs(10), "running", |r| {
        r.status == Status::Running
    })
    .await;
    assert!(w1.sigterm().await.success());
    let r = row(&env, &id).await;
    assert_eq!(
        (r.state.as_str(), r.attempt, r.lease_owner),
        ("queued", 0, None)
    );
    assert!(w1.logs().contains("released jobs back to the queue"));

    let _w2 = env.spawn_worker(2).await;
    let done = poll_until_finished(&mut c, &id, Duration::from_secs(20)).await;
    assert_eq!(done.status, Status::Done);
    let r = row(&env, &id).await;
    assert_eq!(
        (r.state.as_str(), r.attempt, r.errors.as_str()),
        ("succeeded", 1, "[]")
    );
}

#[tokio::test]
async fn sigterm_lets_a_job_finish_within_the_grace_period() {
    let env = env_with_workers().set("MCPQ__WORKER__GRACE_PERIOD_MS", "15000");
    let d = env.spawn_daemon().await;
    let mut c = env.client(&d).await;
    let mut w = env.spawn_worker(1).await;
    let id = job_id(
        &c.call("start_long_task", args(r#"{"seconds":1}"#))
            .await
            .unwrap(),
    );
    poll_until(&mut c, &id, Duration::from_secs(10), "running", |r| {
        r.status == Status::Running
    })
    .await;
    assert!(w.sigterm().await.success());
    let r = row(&env, &id).await;
    assert_eq!((r.state.as_str(), r.attempt), ("succeeded", 1));
}

#[tokio::test]
async fn three_workers_drain_ten_thousand_jobs_exactly_once() {
    // Default leases (10 s): with 1 s leases a heartbeat delayed by four processes
    // contending for SQLite's write lock on two cores would (correctly) trigger a rescue
    // and a second, counted attempt.
    let env = TestEnv::new("")
        .set("MCPQ__SERVER__EMBEDDED_WORKERS", "0")
        .set("MCPQ__SERVER__BENCH_TOOLS", "true");
    let d = env.spawn_daemon().await;
    let _workers = [
        env.spawn_worker(1).await,
        env.spawn_worker(2).await,
        env.spawn_worker(3).await,
    ];
    let total = 10_000;
    let per = total / 16;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let mut c = env.client(&d).await;
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::with_capacity(per);
            for _ in 0..per {
                let r = c.call("noop", args("{}")).await.unwrap();
                assert_eq!(r.status, Status::Accepted, "{}", r.raw);
                ids.push(job_id(&r));
            }
            ids
        }));
    }
    let mut accepted = HashSet::new();
    for t in tasks {
        accepted.extend(t.await.unwrap());
    }
    assert_eq!(accepted.len(), total);

    let pool = db(&env.db_path()).await;
    eventually(Duration::from_secs(120), "all jobs finished", || {
        let pool = pool.clone();
        async move {
            let left: i64 =
                sqlx::query_scalar("SELECT count(*) FROM jobs WHERE state <> 'succeeded'")
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            left == 0
        }
    })
    .await;
    let rows: Vec<(String, i64, String)> =
        sqlx::query_as("SELECT id, attempt, lease_owner IS NULL FROM jobs")
            .fetch_all(&pool)
            .await
            .unwrap()
            .into_iter()
            .map(|(id, a, n): (String, i64, bool)| (id, a, n.to_string()))
            .collect();
    assert_eq!(rows.len(), total, "no job lost, none created twice");
    for (id, attempt, _) in &rows {
        assert!(accepted.contains(id), "unexpected job {id}");
        assert_eq!(*attempt, 1, "job {id} was claimed more than once");
    }
    // The work was actually shared.
    let mut busy = 0;
    for w in &_workers {
        if w.logs().contains("worker started") {
            busy += 1;
        }
    }
    assert_eq!(busy, 3);
}

#[tokio::test]
async fn a_failed_commit_is_an_opaque_internal_error_and_the_daemon_keeps_serving() {
    let env = TestEnv::new("").set("MCPQ__SERVER__EMBEDDED_WORKERS", "0");
    let mut d = env.spawn_daemon().await;
    let mut c = env.client(&d).await;
    assert_eq!(
        c.call("start_long_task", args(r#"{"seconds":1}"#))
            .await
            .unwrap()
            .status,
        Status::Accepted
    );
    // Sabotage the database under the running daemon: every job insert now fails.
    {
        use sqlx::Connection;
        let mut conn =
            sqlx::SqliteConnection::connect(&format!("sqlite://{}", env.db_path().display()))
                .await
                .unwrap();
        sqlx::query("DROP TABLE jobs")
            .execute(&mut conn)
            .await
            .unwrap();
    }
    for _ in 0..3 {
        let e = c.envelope("start_long_task", args(r#"{"seconds":1}"#));
        let (status, r) = c.send(&e).await.unwrap();
        assert_eq!(
            (status, r.error_code()),
            (500, Some("internal")),
            "{}",
            r.raw
        );
        assert!(
            !r.error.as_deref().unwrap().contains("jobs"),
            "no internals leak: {}",
            r.raw
        );
    }
    // Calls that need no job table still work, and the daemon stops cleanly.
    assert!(
        c.call("batch_sum", args(r#"{"numbers":[1]}"#))
            .await
            .unwrap()
            .ok
    );
    assert!(d.proc.sigterm().await.success());
    let logs = d.proc.logs();
    assert!(
        logs.contains("no such table"),
        "the cause is logged: {logs}"
    );
}
