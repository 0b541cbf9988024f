//! Durable jobs over the wire: start, poll, progress, isolation, idempotency, cancel, retention.

use std::time::Duration;

use crate::common::*;
use mcpq::client::Client;
use mcpq::envelope::Status;
use mcpq::json::Json;

fn poll_args(id: &str) -> mcpq::json::Object {
    args(&format!(r#"{{"job_id":"{id}"}}"#))
}

fn fast_jobs(env: TestEnv) -> TestEnv {
    env.set("MCPQ__JOBS__LEASE_MS", "1000")
        .set("MCPQ__JOBS__HEARTBEAT_MS", "100")
        .set("MCPQ__JOBS__RESCUE_INTERVAL_MS", "100")
}

#[tokio::test]
async fn long_task_reports_progress_then_returns_its_payload() {
    let env = fast_jobs(TestEnv::new(""));
    let d = env.spawn_daemon().await;
    let mut c = env.client(&d).await;
    let r = c
        .call(
            "start_long_task",
            args(r#"{"seconds":2,"payload":{"task":"demo","n":[1,2.5,"é"]}}"#),
        )
        .await
        .unwrap();
    assert_eq!(r.status, Status::Accepted, "{}", r.raw);
    let id = job_id(&r);
    let running = poll_until(&mut c, &id, Duration::from_secs(10), "progress", |r| {
        r.status == Status::Running && r.result.as_ref().and_then(|o| o.get("progress")).is_some()
    })
    .await;
    let progress = running
        .result
        .unwrap()
        .get("progress")
        .unwrap()
        .to_canonical();
    assert_eq!(progress, r#"{"elapsed_seconds":1,"seconds":2}"#);
    let done = poll_until_finished(&mut c, &id, Duration::from_secs(10)).await;
    assert_eq!(done.status, Status::Done);
    assert!(
        done.raw
            .contains(r#""result":{"n":[1,2.5,"\u00e9"],"task":"demo"}"#),
        "{}",
        done.raw
    );
}

#[tokio::test]
async fn another_clients_job_is_indistinguishable_from_a_missing_one() {
    let env = TestEnv::new("").set("MCPQ__SERVER__EMBEDDED_WORKERS", "0");
    let d = env.spawn_daemon().await;
    let mut c1 = env.client(&d).await;
    let mut c2 = Client::connect(env.client2_settings(&d, CLIENT2_CURRENT))
        .await
        .unwrap();
    let id = job_id(
        &c1.call("start_long_task", args(r#"{"seconds":1}"#))
            .await
            .unwrap(),
    );
    let mine = c1.call("poll_job", poll_args(&id)).await.unwrap();
    assert_eq!(mine.status, Status::Accepted);
    let theirs = c2.call("poll_job", poll_args(&id)).await.unwrap();
    let missing = c2
        .call(
            "poll_job",
            poll_args("01900000-0000-7000-8000-000000000000"),
        )
        .await
        .unwrap();
    let malformed = c2
        .call("poll_job", poll_args("../../etc/passwd"))
        .await
        .unwrap();
    for r in [&theirs, &missing, &malformed] {
        assert_eq!(
            r.error.as_deref(),
            Some("unknown_job: no job with that id for this client")
        );
    }
    let cancel = c2.call("cancel_job", poll_args(&id)).await.unwrap();
    assert_eq!(cancel.error_code(), Some("unknown_job"));
    assert_eq!(
        c1.call("poll_job", poll_args(&id)).await.unwrap().status,
        Status::Accepted
    );
}

#[tokio::test]
async fn idempotency_key_returns_the_existing_job() {
    let env = TestEnv::new("").set("MCPQ__SERVER__EMBEDDED_WORKERS", "0");
    let d = env.spawn_daemon().await;
    let mut c1 = env.client(&d).await;
    let mut c2 = Client::connect(env.client2_settings(&d, CLIENT2_CURRENT))
        .await
        .unwrap();
    let a = r#"{"seconds":1,"idempotency_key":"order-42"}"#;
    let first = job_id(&c1.call("start_long_task", args(a)).await.unwrap());
    let again = c1.call("start_long_task", args(a)).await.unwrap();
    assert_eq!(again.status, Status::Accepted);
    assert_eq!(job_id(&again), first);
    let other_key = job_id(
        &c1.call(
            "start_long_task",
            args(r#"{"seconds":1,"idempotency_key":"order-43"}"#),
        )
        .await
        .unwrap(),
    );
    assert_ne!(other_key, first);
    let other_client = job_id(&c2.call("start_long_task", args(a)).await.unwrap());
    assert_ne!(other_client, first);
    let pool = db(&env.db_path()).await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 3);
}

#[tokio::test]
async fn bad_job_arguments_are_refused_and_store_nothing() {
    let env = TestEnv::new("").set("MCPQ__SERVER__EMBEDDED_WORKERS", "0");
    let d = env.spawn_daemon().await;
    let mut c = env.client(&d).await;
    for (a, needle) in [
        (r#"{"seconds":0}"#, "\"seconds\" must be between 1 and 20"),
        (r#"{"seconds":21}"#, "\"seconds\" must be between 1 and 20"),
        (r#"{"seconds":"5"}"#, "\"seconds\" must be an integer"),
        (r#"{"seconds":1.5}"#, "\"seconds\" must be an integer"),
        (r#"{}"#, "\"seconds\" is required"),
        (
            r#"{"seconds":1,"payload":[1]}"#,
            "\"payload\" must be an object",
        ),
        (
            r#"{"seconds":1,"colour":"red"}"#,
            "unexpected field \"colour\"",
        ),
        (
            r#"{"seconds":1,"idempotency_key":7}"#,
            "\"idempotency_key\" must be a string",
        ),
    ] {
        let r = c.call("start_long_task", args(a)).await.unwrap();
        assert_eq!(r.error_code(), Some("invalid_args"), "{a}");
        assert!(
            r.error.as_deref().unwrap().contains(needle),
            "{a}: {}",
            r.raw
        );
    }
    let pool = db(&env.db_path()).await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 0);
}

#[tokio::test]
async fn cancelling_a_queued_job_is_immediate() {
    let env = TestEnv::new("").set("MCPQ__SERVER__EMBEDDED_WORKERS", "0");
    let d = env.spawn_daemon().await;
    let mut c = env.client(&d).await;
    let id = job_id(
        &c.call("start_long_task", args(r#"{"seconds":1}"#))
            .await
            .unwrap(),
    );
    let r = c.call("cancel_job", poll_args(&id)).await.unwrap();
    assert!(r.ok, "{}", r.raw);
    assert_eq!(
        r.result.unwrap().get("state"),
        Some(&Json::str("cancelled"))
    );
    let p = c.call("poll_job", poll_args(&id)).await.unwrap();
    assert_eq!(p.error.as_deref(), Some("job_cancelled: job was cancelled"));
    let again = c.call("cancel_job", poll_args(&id)).await.unwrap();
    assert_eq!(
        again.error.as_deref(),
        Some("job_finished: job cannot be cancelled: it already finished (cancelled)")
    );
}

#[tokio::test]
async fn cancelling_a_running_job_stops_it_through_its_lease() {
    let env = fast_jobs(TestEnv::new(""));
    let d = env.spawn_daemon().await;
    let mut c = env.client(&d).await;
    let id = job_id(
        &c.call("start_long_task", args(r#"{"seconds":20}"#))
            .await
            .unwrap(),
    );
    poll_until(&mut c, &id, Duration::from_secs(10), "running", |r| {
        r.status == Status::Running
    })
    .await;
    let r = c.call("cancel_job", poll_args(&id)).await.unwrap();
    assert_eq!(
        r.result.unwrap().get("state"),
        Some(&Json::str("cancelling"))
    );
    let started = std::time::Instant::now();
    let done = poll_until_finished(&mut c, &id, Duration::from_secs(15)).await;
    assert_eq!(done.error_code(), Some("job_cancelled"), "{}", done.raw);
    assert!(started.elapsed() < Duration::from_secs(15));
    let pool = db(&env.db_path()).await;
    let (state, attempt): (String, i64) =
        sqlx::query_as("SELECT state, attempt FROM jobs WHERE id = ?")
            .bind(&id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((state.as_str(), attempt), ("cancelled", 1));
}

#[tokio::test]
async fn finished_jobs_are_pruned_after_retention() {
    let env = fast_jobs(TestEnv::new(""))
        .set("MCPQ__JOBS__RETENTION_SECS", "1")
        .set("MCPQ__JOBS__PRUNE_INTERVAL_MS", "100");
    let d = env.spawn_daemon().await;
    let mut c = env.client(&d).await;
    let id = job_id(
        &c.call("start_long_task", args(r#"{"seconds":1}"#))
            .await
            .unwrap(),
    );
    let done = poll_until_finished(&mut c, &id, Duration::from_secs(10)).await;
    assert_eq!(done.status, Status::Done);
    poll_until(&mut c, &id, Duration::from_secs(10), "pruning", |r| {
        r.error_code() == Some("unknown_job")
    })
    .await;
}
