//! Several machines, simulated: real `mcpq serve` and `mcpq worker` processes sharing one
//! PostgreSQL database and nothing else. Enqueue through one daemon, poll and cancel through
//! another; replays are refused across daemons; `kill -9` of a daemon and a worker under load
//! loses nothing acknowledged and completes every job exactly once; workers drain without
//! notifications; concurrent migrations are safe; `mcpq store copy` moves a SQLite store.
//!
//! Each test runs in a schema of its own (dropped afterwards). Without `MCPQ_TEST_PG_URL`
//! a local run skips them with a notice; CI sets `MCPQ_REQUIRE_PG=1` so they cannot skip.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::common::*;
use mcpq::client::Client;
use mcpq::envelope::Status;

/// No embedded workers (jobs run in `mcpq worker` processes), short leases for rescue.
fn pg_env() -> Option<TestEnv> {
    Some(
        TestEnv::postgres("")?
            .set("MCPQ__SERVER__EMBEDDED_WORKERS", "0")
            .set("MCPQ__JOBS__LEASE_MS", "1000")
            .set("MCPQ__JOBS__HEARTBEAT_MS", "100")
            .set("MCPQ__JOBS__RESCUE_INTERVAL_MS", "100")
            .set("MCPQ__JOBS__RETRY_BASE_MS", "100"),
    )
}

fn poll_args(id: &str) -> mcpq::json::Object {
    args(&format!(r#"{{"job_id":"{id}"}}"#))
}

#[tokio::test]
async fn a_job_enqueued_through_one_daemon_is_polled_and_cancelled_through_another() {
    let Some(env) = pg_env() else { return };
    let a = env.spawn_daemon().await;
    let b = env.spawn_daemon().await;
    let mut ca = env.client(&a).await;
    let mut cb = env.client(&b).await;

    // Queued (no worker yet): visible and cancellable through the other daemon.
    let r = ca
        .call("start_long_task", args(r#"{"seconds":1}"#))
        .await
        .unwrap();
    assert_eq!(r.status, Status::Accepted, "{}", r.raw);
    let cancelled = job_id(&r);
    let r = cb.call("poll_job", poll_args(&cancelled)).await.unwrap();
    assert_eq!(r.status, Status::Accepted, "queued: {}", r.raw);
    let r = cb.call("cancel_job", poll_args(&cancelled)).await.unwrap();
    assert!(r.ok, "{}", r.raw);
    let r = ca.call("poll_job", poll_args(&cancelled)).await.unwrap();
    assert_eq!(r.error_code(), Some("job_cancelled"), "{}", r.raw);

    // Another client sees nothing of it through either daemon.
    let mut other = Client::connect(env.client2_settings(&b, CLIENT2_CURRENT))
        .await
        .unwrap();
    let r = other.call("poll_job", poll_args(&cancelled)).await.unwrap();
    assert_eq!(r.error_code(), Some("unknown_job"), "{}", r.raw);

    // A worker on the same database runs the next one; its result shows through both.
    let _w = env.spawn_worker(1).await;
    let id = job_id(
        &ca.call(
            "start_long_task",
            args(r#"{"seconds":1,"payload":{"via":"a"}}"#),
        )
        .await
        .unwrap(),
    );
    let done = poll_until_finished(&mut cb, &id, Duration::from_secs(20)).await;
    assert_eq!(done.status, Status::Done, "{}", done.raw);
    assert!(done.raw.contains(r#""result":{"via":"a"}"#), "{}", done.raw);

    // The operator's commands work on PostgreSQL too.
    let (code, out, err) = env.run(&["jobs", "show", &id, "--json"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("succeeded"), "{out}");
    let (code, out, err) = env.run(&["stats", "--json"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("succeeded"), "{out}");
}

#[tokio::test]
async fn replayed_envelope_is_rejected_by_the_other_daemon() {
    let Some(env) = pg_env() else { return };
    let a = env.spawn_daemon().await;
    let b = env.spawn_daemon().await;
    let mut ca = env.client(&a).await;
    let mut cb = env.client(&b).await;

    // Accepted by A, then replayed to B: sync calls and job calls alike.
    for (tool, a_args) in [
        ("batch_sum", r#"{"numbers":[1,2]}"#),
        ("start_long_task", r#"{"seconds":1}"#),
    ] {
        let e = ca.envelope(tool, args(a_args));
        let (_, first) = ca.send(&e).await.unwrap();
        assert!(first.ok, "{}", first.raw);
        let (status, replay) = cb.send(&e).await.unwrap();
        assert_eq!(
            (status, replay.error_code()),
            (401, Some("replayed_nonce")),
            "{tool}: {}",
            replay.raw
        );
        // And to A itself, as always.
        let (_, again) = ca.send(&e).await.unwrap();
        assert_eq!(again.error_code(), Some("replayed_nonce"));
    }

    // Sent to both at once, whichever comes first wins and the other is refused.
    for round in 0..20 {
        let tool = if round % 2 == 0 {
            "batch_sum"
        } else {
            "start_long_task"
        };
        let a_args = if round % 2 == 0 {
            r#"{"numbers":[3]}"#
        } else {
            r#"{"seconds":1}"#
        };
        let e = ca.envelope(tool, args(a_args));
        let (ra, rb) = tokio::join!(ca.send(&e), cb.send(&e));
        let (ra, rb) = (ra.unwrap().1, rb.unwrap().1);
        let oks = [&ra, &rb].iter().filter(|r| r.ok).count();
        assert_eq!(oks, 1, "round {round}: {} / {}", ra.raw, rb.raw);
        let refused = if ra.ok { &rb } else { &ra };
        assert_eq!(
            refused.error_code(),
            Some("replayed_nonce"),
            "{}",
            refused.raw
        );
    }
    // Exactly the ten job calls that won created jobs (plus the one above).
    let pool = env.pg_pool().await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 11);
}

/// Sends `start_long_task` calls with payload `{i}` through `client` until `stop`; returns
/// the (i, job id) of every acknowledged call. A daemon killed mid-call just ends the loop.
async fn enqueue_until(
    mut client: Client,
    start: i64,
    count: i64,
    stop: tokio_util::sync::CancellationToken,
) -> Vec<(i64, String)> {
    let mut acked = Vec::new();
    for i in start..start + count {
        if stop.is_cancelled() {
            break;
        }
        let call = client.call(
            "start_long_task",
            args(&format!(r#"{{"seconds":1,"payload":{{"i":{i}}}}}"#)),
        );
        match call.await {
            Ok(r) if r.status == Status::Accepted => acked.push((i, job_id(&r))),
            Ok(r) => panic!("call {i} refused: {}", r.raw),
            // The daemon was killed: the call was not acknowledged, nothing is owed.
            Err(_) => break,
        }
    }
    acked
}

#[tokio::test]
async fn two_daemons_three_workers_lose_nothing_when_a_daemon_and_a_worker_are_killed() {
    let Some(env) = pg_env() else { return };
    let env = env.set("MCPQ__WORKER__CONCURRENCY", "8");
    let mut a = env.spawn_daemon().await;
    let b = env.spawn_daemon().await;
    let mut w1 = env.spawn_worker(1).await;
    let _w2 = env.spawn_worker(2).await;
    let _w3 = env.spawn_worker(3).await;

    let stop = tokio_util::sync::CancellationToken::new();
    let mut senders = tokio::task::JoinSet::new();
    for s in 0..4i64 {
        // Two senders on each daemon.
        let d = if s % 2 == 0 { &a } else { &b };
        let c = env.client(d).await;
        senders.spawn(enqueue_until(c, s * 10_000, 150, stop.clone()));
    }
    // Under load: wait until jobs are running on worker 1, then kill it and daemon A.
    let pool = env.pg_pool().await;
    // Worker ids are HOST:PID:RANDOM.
    let w1_owner = format!("%:{}:%", w1.pid());
    eventually(Duration::from_secs(30), "worker 1 runs jobs", || {
        let pool = pool.clone();
        let w1_owner = w1_owner.clone();
        async move {
            let n: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM jobs WHERE state = 'running' AND lease_owner LIKE $1",
            )
            .bind(w1_owner)
            .fetch_one(&pool)
            .await
            .unwrap();
            n >= 3
        }
    })
    .await;
    // Killed first, so the set of jobs it held is exact.
    w1.kill9().await;
    let held_by_w1: HashSet<String> =
        sqlx::query_scalar("SELECT id FROM jobs WHERE state = 'running' AND lease_owner LIKE $1")
            .bind(&w1_owner)
            .fetch_all(&pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    a.proc.kill9().await;
    // The senders on B go on for a while; then stop them all.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    let mut acked = Vec::new();
    while let Some(r) = senders.join_next().await {
        acked.extend(r.unwrap());
    }
    assert!(
        acked.len() > 50,
        "only {} calls were acknowledged",
        acked.len()
    );

    // Every acknowledged job finishes, polled through the surviving daemon, with its own
    // payload; none is lost.
    let mut cb = env.client(&b).await;
    for (i, id) in &acked {
        let done = poll_until_finished(&mut cb, id, Duration::from_secs(60)).await;
        assert_eq!(done.status, Status::Done, "job {i}: {}", done.raw);
        assert!(
            done.raw.contains(&format!(r#""result":{{"i":{i}}}"#)),
            "job {i}: {}",
            done.raw
        );
    }
    // Exactly once: each job succeeded once, in one attempt, except those worker 1 held
    // when it died: their first attempt is recorded as lost with the worker, then one more.
    let rows: Vec<(String, String, i32, String)> =
        sqlx::query_as("SELECT id, state, attempt, errors::text FROM jobs")
            .fetch_all(&pool)
            .await
            .unwrap();
    let by_id: HashMap<_, _> = rows
        .iter()
        .map(|(id, st, at, err)| (id.clone(), (st.clone(), *at, err.clone())))
        .collect();
    let mut rescued = 0;
    for (_, id) in &acked {
        let (state, attempt, errors) = &by_id[id];
        assert_eq!(state, "succeeded");
        if held_by_w1.contains(id) {
            assert!(*attempt <= 2, "{id}: {attempt} attempts");
            if *attempt == 2 {
                rescued += 1;
                assert!(errors.contains("lease_expired"), "{id}: {errors}");
            }
        } else {
            assert_eq!(*attempt, 1, "{id} ran more than once: {errors}");
        }
    }
    assert!(rescued >= 1, "no job of the killed worker was rescued");
    // Nothing unacknowledged was left running or queued either.
    let open: i64 =
        sqlx::query_scalar("SELECT count(*) FROM jobs WHERE state IN ('queued','running')")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(open, 0);

    // A replay of an envelope accepted by the dead daemon is refused by the survivor.
    let e = cb.envelope("batch_sum", args(r#"{"numbers":[1]}"#));
    assert!(cb.send(&e).await.unwrap().1.ok);
    let d = env.spawn_daemon().await;
    let mut cd = env.client(&d).await;
    let (status, r) = cd.send(&e).await.unwrap();
    assert_eq!((status, r.error_code()), (401, Some("replayed_nonce")));
}

#[tokio::test]
async fn workers_drain_without_notifications() {
    // Notifications are a hint: with LISTEN off the workers poll, and when the LISTEN
    // connection is killed they go on too.
    let Some(env) = pg_env() else { return };
    let mut env = env.set("MCPQ__WORKER__IDLE_BACKOFF_MAX_MS", "200");
    let d = env.spawn_daemon().await;
    let mut c = env.client(&d).await;
    env.env
        .push(("MCPQ__POSTGRES__LISTEN".into(), "false".into()));
    let _w1 = env.spawn_worker(1).await;
    env.env.pop();
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(job_id(
            &c.call("start_long_task", args(r#"{"seconds":1}"#))
                .await
                .unwrap(),
        ));
    }
    for id in &ids {
        let done = poll_until_finished(&mut c, id, Duration::from_secs(30)).await;
        assert_eq!(done.status, Status::Done, "{}", done.raw);
    }

    // A listening worker whose LISTEN connection is terminated still drains.
    let _w2 = env.spawn_worker(2).await;
    let pool = env.pg_pool().await;
    eventually(Duration::from_secs(10), "a LISTEN connection", || {
        let pool = pool.clone();
        async move {
            let n: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN%'",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            n > 0
        }
    })
    .await;
    let killed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE query LIKE 'LISTEN%') AS t",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(killed > 0);
    let id = job_id(
        &c.call("start_long_task", args(r#"{"seconds":1}"#))
            .await
            .unwrap(),
    );
    let done = poll_until_finished(&mut c, &id, Duration::from_secs(30)).await;
    assert_eq!(done.status, Status::Done, "{}", done.raw);
}

#[tokio::test]
async fn concurrent_migrations_are_safe() {
    let Some(env) = pg_env() else { return };
    let (r1, r2, r3, r4) = tokio::join!(
        env.run(&["migrate"]),
        env.run(&["migrate"]),
        env.run(&["migrate"]),
        env.run(&["migrate"])
    );
    for (code, out, err) in [r1, r2, r3, r4] {
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("migrations applied to postgres://"), "{out}");
        assert!(!out.contains(":mcpq@"), "the password is shown: {out}");
    }
    // Daemons and workers starting together on a fresh schema too.
    let Some(fresh) = pg_env() else { return };
    let (d1, d2, _w) = tokio::join!(
        fresh.spawn_daemon(),
        fresh.spawn_daemon(),
        fresh.spawn_worker(1)
    );
    for d in [&d1, &d2] {
        let mut c = fresh.client(d).await;
        assert!(
            c.call("batch_sum", args(r#"{"numbers":[1]}"#))
                .await
                .unwrap()
                .ok
        );
    }
}

#[tokio::test]
async fn password_comes_from_a_file_and_is_never_shown() {
    let Some(env) = pg_env() else { return };
    let (url, _) = env.pg.clone().unwrap();
    // The test URL carries user:password@; move the password into a file.
    let (scheme, rest) = url.split_once("://").unwrap();
    let (userinfo, host) = rest.split_once('@').unwrap();
    let Some((user, password)) = userinfo.split_once(':') else {
        eprintln!("notice: MCPQ_TEST_PG_URL has no password; nothing to move into a file");
        return;
    };
    let bare = format!("{scheme}://{user}@{host}");
    let file = env.dir.path().join("pg-password");
    std::fs::write(&file, format!("{password}\n")).unwrap();
    let mut env = env;
    env.env.push(("MCPQ__DATABASE__URL".into(), bare.clone()));
    env.env.push((
        "MCPQ__POSTGRES__PASSWORD_FILE".into(),
        file.display().to_string(),
    ));
    let (code, out, err) = env.run(&["migrate"]).await;
    assert_eq!(code, 0, "{out}{err}");

    // A wrong password: a clear error, and the password appears nowhere.
    std::fs::write(&file, "not-the-password\n").unwrap();
    let (code, out, err) = env.run(&["migrate"]).await;
    assert_ne!(code, 0);
    assert!(err.contains("password authentication failed"), "{err}");
    assert!(!format!("{out}{err}").contains("not-the-password"));

    // config check shows the URL with its password redacted.
    env.env.pop();
    env.env.pop();
    let (code, out, err) = env.run(&["config", "check"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        !out.contains(&format!(":{password}@")),
        "config check shows the password:\n{out}"
    );
    assert!(out.contains(":<redacted>@"), "{out}");

    // TLS: `require` encrypts (this server offers TLS); `verify-full` also checks the
    // certificate, and the test server's self-signed one is refused.
    let (code, out, err) = env
        .run_with(&[("MCPQ__POSTGRES__SSL_MODE", "require")], &["migrate"])
        .await;
    if code != 0 && err.contains("TLS") {
        eprintln!("notice: the test server does not offer TLS; skipping the TLS checks: {err}");
    } else {
        assert_eq!(code, 0, "{out}{err}");
        let (code, _, err) = env
            .run_with(&[("MCPQ__POSTGRES__SSL_MODE", "verify-full")], &["migrate"])
            .await;
        assert_ne!(code, 0, "verify-full accepted an unverifiable certificate");
        assert!(err.to_lowercase().contains("certificate"), "{err}");
    }

    // mcpq backup is for SQLite; on PostgreSQL it says what to use instead.
    let (code, _, err) = env.run(&["backup", "/tmp/never-written.db"]).await;
    assert_ne!(code, 0);
    assert!(err.contains("pg_dump"), "{err}");
}

#[tokio::test]
async fn store_copy_moves_jobs_and_nonces_from_sqlite_to_postgres() {
    let Some(mut env) = pg_env() else { return };
    let (pg_url, schema) = env.pg.clone().unwrap();
    // First on SQLite (the embedded default): an empty URL selects the file.
    env.env.push(("MCPQ__DATABASE__URL".into(), String::new()));
    let mut d = env.spawn_daemon().await;
    let mut c = env.client(&d).await;
    let used = c.envelope("batch_sum", args(r#"{"numbers":[1]}"#));
    assert!(c.send(&used).await.unwrap().1.ok);
    let queued = job_id(
        &c.call(
            "start_long_task",
            args(r#"{"seconds":1,"payload":{"q":1},"idempotency_key":"k-1"}"#),
        )
        .await
        .unwrap(),
    );
    let cancelled = job_id(
        &c.call("start_long_task", args(r#"{"seconds":1}"#))
            .await
            .unwrap(),
    );
    assert!(
        c.call("cancel_job", poll_args(&cancelled))
            .await
            .unwrap()
            .ok
    );
    assert!(d.proc.sigterm().await.success());

    // Copy while everything is stopped.
    env.env.pop();
    let from = format!("sqlite://{}", env.db_path().display());
    let (code, out, err) = env
        .run(&["store", "copy", "--from", &from, "--to", &pg_url])
        .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("copied 2 job(s)"), "{out}");
    // Into a store that already has jobs: refused, nothing changed.
    let (code, _, err) = env
        .run(&["store", "copy", "--from", &from, "--to", &pg_url])
        .await;
    assert_ne!(code, 0);
    assert!(err.contains("already holds 2 job(s)"), "{err}");

    // Now on PostgreSQL: the jobs are there with their states, the idempotency key still
    // names its job, and the nonce used on SQLite is still refused.
    let d = env.spawn_daemon().await;
    let mut c = env.client(&d).await;
    let r = c.call("poll_job", poll_args(&cancelled)).await.unwrap();
    assert_eq!(r.error_code(), Some("job_cancelled"), "{}", r.raw);
    let again = c
        .call(
            "start_long_task",
            args(r#"{"seconds":1,"payload":{"q":1},"idempotency_key":"k-1"}"#),
        )
        .await
        .unwrap();
    assert_eq!(job_id(&again), queued);
    let (status, r) = c.send(&used).await.unwrap();
    assert_eq!(
        (status, r.error_code()),
        (401, Some("replayed_nonce")),
        "{}",
        r.raw
    );
    let mut w = env.spawn_worker(1).await;
    let done = poll_until_finished(&mut c, &queued, Duration::from_secs(20)).await;
    assert_eq!(done.status, Status::Done, "{}", done.raw);
    assert!(done.raw.contains(r#""result":{"q":1}"#));

    // And back, into a fresh SQLite file, once everything is stopped again.
    let mut d = d;
    assert!(d.proc.sigterm().await.success());
    assert!(w.sigterm().await.success());
    let back = env.dir.path().join("back.db");
    let to = format!("sqlite://{}", back.display());
    let (code, out, err) = env
        .run(&["store", "copy", "--from", &pg_url, "--to", &to])
        .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("copied 2 job(s)"), "{out}");
    let pool = db(&back).await;
    let states: Vec<(String, String)> = sqlx::query_as("SELECT id, state FROM jobs ORDER BY seq")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(
        states,
        vec![
            (queued.clone(), "succeeded".to_string()),
            (cancelled.clone(), "cancelled".to_string())
        ]
    );
    let _ = schema;
}
