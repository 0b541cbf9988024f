//! Upgrades: a database created by the first release's schema (migration 0001 only), holding
//! jobs in every state and a live nonce, is opened by the current binary: the migrations
//! apply (0005 rebuilds the jobs table) and every job answers its poll as it did before.

mod common;

use std::borrow::Cow;

use common::*;
use mcpq::auth::NonceKey;
use mcpq::protocol::Status;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::Connection;

const CLIENT: &str = "client-001";

struct Old {
    id: String,
    state: &'static str,
}

/// Creates `path` with migration 0001 only, as the first release left it.
async fn first_release_database(path: &std::path::Path) -> SqliteConnection {
    let opts = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true);
    let mut conn = SqliteConnection::connect_with(&opts).await.unwrap();
    let mut migrator = sqlx::migrate!("./migrations");
    let first = migrator.migrations[0].clone();
    assert_eq!(first.version, 1);
    migrator.migrations = Cow::Owned(vec![first]);
    migrator.run(&mut conn).await.unwrap();
    conn
}

#[tokio::test]
async fn jobs_in_every_state_survive_the_migrations_and_answer_as_before() {
    let env = TestEnv::new("").set("MCPQ__SERVER__EMBEDDED_WORKERS", "0");
    let mut conn = first_release_database(&env.db_path()).await;
    let now = now_ms();
    let far = now + 3_600_000;
    let mut jobs = Vec::new();
    for (state, extra) in [
        ("queued", ""),
        ("running", "lease"),
        ("succeeded", r#"{"k":"v"}"#),
        ("failed", "boom"),
        ("cancelled", ""),
    ] {
        let id = mcpq::jobs::JobId::generate().0;
        let (attempt, lease_owner, lease_expires_at, result, errors, finished) = match state {
            "queued" => (0, None, None, None, "[]".to_string(), None),
            // A lease far in the future, so no rescue runs during the test.
            "running" => (
                1,
                Some("old-worker"),
                Some(far),
                None,
                "[]".to_string(),
                None,
            ),
            "succeeded" => (1, None, None, Some(extra), "[]".to_string(), Some(now)),
            "failed" => (
                3,
                None,
                None,
                None,
                format!(r#"[{{"attempt":3,"at":{now},"error":"{extra}"}}]"#),
                Some(now),
            ),
            _ => (0, None, None, None, "[]".to_string(), Some(now)),
        };
        sqlx::query(
            "INSERT INTO jobs (id, client_id, tool, args, state, attempt, max_attempts, run_at,
                               lease_owner, lease_expires_at, fence, progress, result, errors,
                               created_at, started_at, finished_at)
             VALUES (?, ?, 'start_long_task', '{\"payload\":{},\"seconds\":1}', ?, ?, 3, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(CLIENT)
        .bind(state)
        .bind(attempt)
        .bind(now)
        .bind(lease_owner)
        .bind(lease_expires_at)
        .bind(attempt)
        .bind(if state == "running" { Some(r#"{"elapsed_seconds":1,"seconds":20}"#) } else { None })
        .bind(result)
        .bind(errors)
        .bind(now)
        .bind((attempt > 0).then_some(now))
        .bind(finished)
        .execute(&mut conn)
        .await
        .unwrap();
        jobs.push(Old { id, state });
    }
    // A live nonce, in 0001's row-per-batch format (16-byte digest, big-endian expiry).
    let nonce = uuid::Uuid::new_v4().to_string();
    let mut entry = NonceKey::new(CLIENT, &nonce).0.to_vec();
    entry.extend_from_slice(&far.to_be_bytes());
    sqlx::query("INSERT INTO nonce_batches (expires_ms, entries) VALUES (?, ?)")
        .bind(far)
        .bind(entry)
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();

    let d = env.spawn_daemon().await;
    let mut c = env.client(&d).await;
    for job in &jobs {
        let r = c
            .call("poll_job", args(&format!(r#"{{"job_id":"{}"}}"#, job.id)))
            .await
            .unwrap();
        match job.state {
            "queued" => assert_eq!(r.status, Status::Accepted, "{}", r.raw),
            "running" => {
                assert_eq!(r.status, Status::Running, "{}", r.raw);
                assert!(r
                    .raw
                    .contains(r#""progress":{"elapsed_seconds":1,"seconds":20}"#));
            }
            "succeeded" => {
                assert_eq!(r.status, Status::Done, "{}", r.raw);
                assert!(r.raw.contains(r#""result":{"k":"v"}"#), "{}", r.raw);
            }
            "failed" => {
                assert_eq!(r.error_code(), Some("job_failed"), "{}", r.raw);
                assert!(r.raw.contains("after 3 attempt(s): boom"), "{}", r.raw);
            }
            _ => assert_eq!(r.error_code(), Some("job_cancelled"), "{}", r.raw),
        }
    }
    // A daemon of the previous release, still running during a rolling upgrade, enqueues
    // 7-field rows through the view: they become built-in jobs with the default policy.
    let old_release_job = mcpq::jobs::JobId::generate().0;
    let rows = format!(
        r#"[["{old_release_job}","{CLIENT}","start_long_task","{{\"payload\":{{}},\"seconds\":1}}",3,{now},null]]"#
    );
    let mut conn =
        SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(env.db_path()))
            .await
            .unwrap();
    sqlx::query("INSERT INTO enqueue_batch (nonce_expires_ms, nonce_entries, jobs_json) VALUES (NULL, NULL, ?)")
        .bind(rows)
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    // Migrated jobs ran built-in tools: a worker of today claims and finishes them.
    let _w = env.spawn_worker(1).await;
    for id in [&jobs[0].id, &old_release_job] {
        let done = poll_until_finished(&mut c, id, std::time::Duration::from_secs(30)).await;
        assert_eq!(done.status, Status::Done, "{}", done.raw);
    }
    // The nonce stored before the upgrade is still a replay.
    let e = mcpq::protocol::sign_envelope(
        mcpq::protocol::Unsigned {
            client_id: CLIENT,
            server_id: "mcp-server-001",
            tool: "batch_sum",
            args: args(r#"{"numbers":[1]}"#),
            ts_ms: now_ms(),
            request_id: "r-1".into(),
            nonce,
        },
        env.settings().client.secret.expose(),
    );
    let (status, r) = c.send(&e).await.unwrap();
    assert_eq!(
        (status, r.error_code()),
        (401, Some("replayed_nonce")),
        "{}",
        r.raw
    );
}
