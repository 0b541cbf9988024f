//! Replay protection: a nonce is accepted once per client within the window, also across restarts.

use crate::common::*;
use mcpq::client::Client;

/// Sends `e` again, to the daemon `d` (a new process): it must be refused as a replay.
async fn assert_replay_is_rejected(env: &TestEnv, d: &Daemon, e: &mcpq::json::Object) {
    let mut c = env.client(d).await;
    let (status, r) = c.send(e).await.unwrap();
    assert_eq!(
        (status, r.error_code()),
        (401, Some("replayed_nonce")),
        "{}",
        r.raw
    );
}

#[tokio::test]
async fn replayed_nonce_is_rejected() {
    let env = TestEnv::new("");
    let d = env.spawn_daemon().await;
    let mut c = env.client(&d).await;
    let e = c.envelope("batch_sum", args(r#"{"numbers":[1]}"#));
    assert!(c.send(&e).await.unwrap().1.ok);
    let (status, r) = c.send(&e).await.unwrap();
    assert_eq!((status, r.error_code()), (401, Some("replayed_nonce")));
    assert_eq!(
        r.error.as_deref(),
        Some("replayed_nonce: nonce was already used")
    );
}

#[tokio::test]
async fn replayed_nonce_is_rejected_after_restart() {
    let env = TestEnv::new("");
    let mut d = env.spawn_daemon().await;
    let mut c = env.client(&d).await;
    let e = c.envelope("batch_sum", args(r#"{"numbers":[1]}"#));
    assert!(c.send(&e).await.unwrap().1.ok);
    assert!(d.proc.sigterm().await.success());

    let d = env.spawn_daemon().await;
    assert_replay_is_rejected(&env, &d, &e).await;
}

#[tokio::test]
async fn written_behind_nonce_is_rejected_after_kill_9() {
    // A sync call's nonce is written behind (within about 10 ms, no fsync wait). Once its
    // batch is in the database, a kill -9 must not reopen the replay.
    let env = TestEnv::new("").set("MCPQ__SERVER__EMBEDDED_WORKERS", "0");
    let mut d = env.spawn_daemon().await;
    let mut c = env.client(&d).await;
    let e = c.envelope("batch_sum", args(r#"{"numbers":[1]}"#));
    assert!(c.send(&e).await.unwrap().1.ok);
    let pool = db(&env.db_path()).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM nonce_batches")
            .fetch_one(&pool)
            .await
            .unwrap();
        if rows > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the nonce was never written"
        );
        tokio::task::yield_now().await;
    }
    pool.close().await;
    d.proc.kill9().await;

    let d = env.spawn_daemon().await;
    assert_replay_is_rejected(&env, &d, &e).await;
}

#[tokio::test]
async fn replayed_job_call_is_rejected_after_kill_9() {
    // A job-creating call's nonce commits with the job, before `accepted` is sent.
    let env = TestEnv::new("").set("MCPQ__SERVER__EMBEDDED_WORKERS", "0");
    let mut d = env.spawn_daemon().await;
    let mut c = env.client(&d).await;
    let e = c.envelope("start_long_task", args(r#"{"seconds":1}"#));
    let (_, r) = c.send(&e).await.unwrap();
    assert_eq!(r.status, mcpq::envelope::Status::Accepted);
    d.proc.kill9().await;

    let d = env.spawn_daemon().await;
    assert_replay_is_rejected(&env, &d, &e).await;
    // And the replay created no second job.
    let pool = db(&env.db_path()).await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 1);
}

#[tokio::test]
async fn the_same_nonce_from_another_client_is_not_a_replay() {
    let env = TestEnv::new("");
    let d = env.spawn_daemon().await;
    let mut c1 = env.client(&d).await;
    let mut c2 = Client::connect(env.client2_settings(&d, CLIENT2_CURRENT))
        .await
        .unwrap();
    let e1 = c1.envelope("batch_sum", args(r#"{"numbers":[1]}"#));
    let nonce = e1.get("nonce").unwrap().as_str().unwrap().to_string();
    assert!(c1.send(&e1).await.unwrap().1.ok);
    // Re-sign client 2's envelope with the same nonce.
    let e2 = mcpq::envelope::sign_envelope(
        mcpq::envelope::Unsigned {
            client_id: CLIENT2,
            server_id: "mcp-server-001",
            tool: "batch_sum",
            args: args(r#"{"numbers":[1]}"#),
            ts_ms: now_ms(),
            request_id: "r2".into(),
            nonce,
        },
        CLIENT2_CURRENT.as_bytes(),
    );
    let (_, r) = c2.send(&e2).await.unwrap();
    assert!(r.ok, "{}", r.raw);
}
