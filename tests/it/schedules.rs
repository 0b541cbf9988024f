//! Recurring jobs (`[schedules.NAME]`, docs/FLOW.md) with real daemons and workers: one job
//! per tick on SQLite and, with two daemons and three workers killed in turn, on
//! PostgreSQL; `mcpq schedules list`; the missed-tick policies after an outage (a
//! controlled clock over a real store); bad schedules refused naming the schedule.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use mcpq::clock::{Clock, ManualClock};
use sqlx::Row;

const EVERY_SECOND: &str = r#"
[schedules.beat]
cron = "* * * * * *"
timezone = "Europe/Berlin"
tool = "noop"
client = "client-001"
"#;

fn quick(env: TestEnv) -> TestEnv {
    env.set("MCPQ__SERVER__EMBEDDED_WORKERS", "0")
        .set("MCPQ__SERVER__BENCH_TOOLS", "true")
        .set("MCPQ__JOBS__LEASE_MS", "1000")
        .set("MCPQ__JOBS__HEARTBEAT_MS", "100")
        .set("MCPQ__JOBS__RESCUE_INTERVAL_MS", "100")
}

/// Tick (ms) → jobs with that tick's key, and how many of them succeeded.
fn per_tick(rows: Vec<(String, String)>) -> BTreeMap<i64, (usize, usize)> {
    let mut out: BTreeMap<i64, (usize, usize)> = BTreeMap::new();
    for (key, state) in rows {
        let tick: i64 = key
            .strip_prefix("schedule:beat:")
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("unexpected key {key}"));
        let e = out.entry(tick).or_default();
        e.0 += 1;
        e.1 += usize::from(state == "succeeded");
    }
    out
}

/// Exactly one job per tick, no tick between the first and the last missing.
fn assert_one_per_tick(ticks: &BTreeMap<i64, (usize, usize)>, at_least: usize) {
    assert!(
        ticks.len() >= at_least,
        "only {} ticks: {ticks:?}",
        ticks.len()
    );
    for (t, (n, _)) in ticks {
        assert_eq!(*n, 1, "tick {t} has {n} jobs");
        assert_eq!(t % 1000, 0, "tick {t} is not on a second");
    }
    let first = *ticks.keys().next().unwrap();
    let last = *ticks.keys().last().unwrap();
    assert_eq!(
        ticks.len() as i64,
        (last - first) / 1000 + 1,
        "a tick is missing between {first} and {last}: {:?}",
        ticks.keys().collect::<Vec<_>>()
    );
}

const SQLITE_ROWS: &str =
    "SELECT idempotency_key, state FROM jobs WHERE idempotency_key LIKE 'schedule:%'";

#[tokio::test]
async fn a_schedule_every_second_runs_one_job_per_tick_on_sqlite() {
    let env = quick(TestEnv::new(EVERY_SECOND));
    let d = env.spawn_daemon().await;
    let _w = env.spawn_worker(1).await;
    let pool = db(&env.db_path()).await;
    eventually(Duration::from_secs(20), "five ticks run", || async {
        let rows: Vec<(String, String)> =
            sqlx::query_as(SQLITE_ROWS).fetch_all(&pool).await.unwrap();
        per_tick(rows).values().filter(|(_, ok)| *ok == 1).count() >= 5
    })
    .await;
    let rows: Vec<(String, String)> = sqlx::query_as(SQLITE_ROWS).fetch_all(&pool).await.unwrap();
    let ticks = per_tick(rows);
    assert_one_per_tick(&ticks, 5);
    let client: String = sqlx::query_scalar(
        "SELECT DISTINCT client_id FROM jobs WHERE idempotency_key LIKE 'schedule:%'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(client, "client-001");

    // The metric counts what this daemon enqueued (it is the only one). It is counted
    // once the enqueue returns, just after its row is committed: wait for it to catch up.
    let at = d.metrics.expect("metrics on");
    eventually(
        Duration::from_secs(10),
        "the schedule counter counts every tick",
        || async {
            let (_, body) = raw_http(
                at,
                b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            )
            .await;
            let counted: usize = body
                .lines()
                .find(|l| l.starts_with("mcpq_schedule_jobs_enqueued_total{schedule=\"beat\"}"))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no schedule counter in:\n{body}"));
            counted >= ticks.len()
        },
    )
    .await;

    // `mcpq schedules list --json`: the last tick recorded and the next three runs.
    let (code, out, err) = env.run(&["schedules", "list", "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let s = &v[0];
    assert_eq!(s["name"], "beat");
    assert_eq!(s["cron"], "* * * * * *");
    assert_eq!(s["timezone"], "Europe/Berlin");
    let last = s["last_tick_ms"].as_i64().expect("a last tick");
    assert!(last >= *ticks.keys().last().unwrap(), "{s}");
    let next = s["next_ms"].as_array().unwrap();
    assert_eq!(next.len(), 3);
    assert_eq!(
        next[1].as_i64().unwrap() - next[0].as_i64().unwrap(),
        1000,
        "{s}"
    );
    assert!(s["next"][0].as_str().unwrap().ends_with("+01:00"), "{s}");
    let (code, out, _) = env.run(&["schedules", "list"]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("beat") && out.contains("Europe/Berlin"),
        "{out}"
    );
    pool.close().await;
}

#[tokio::test]
async fn postgres_two_daemons_three_workers_killed_in_turn_run_one_job_per_tick() {
    let Some(env) = TestEnv::postgres(EVERY_SECOND) else {
        assert!(std::env::var("CI").is_err(), "CI needs MCPQ_TEST_PG_URL");
        return;
    };
    let env = quick(env);
    let mut d1 = env.spawn_daemon_logging_to("daemon1.log").await;
    let _d2 = env.spawn_daemon_logging_to("daemon2.log").await;
    let mut w1 = env.spawn_worker(1).await;
    let _w2 = env.spawn_worker(2).await;
    let _w3 = env.spawn_worker(3).await;
    let start = std::time::Instant::now();
    tokio::time::sleep_until((start + Duration::from_secs(6)).into()).await;
    d1.proc.kill9().await;
    let _d1 = env.spawn_daemon_logging_to("daemon1b.log").await;
    tokio::time::sleep_until((start + Duration::from_secs(11)).into()).await;
    w1.kill9().await;
    let _w1 = env.spawn_worker(4).await;
    tokio::time::sleep_until((start + Duration::from_secs(15)).into()).await;
    let pool = env.pg_pool().await;
    let q = "SELECT idempotency_key, state FROM jobs WHERE idempotency_key LIKE 'schedule:%'";
    eventually(Duration::from_secs(30), "20 ticks, all run", || async {
        let rows: Vec<(String, String)> = sqlx::query_as(q).fetch_all(&pool).await.unwrap();
        let ticks = per_tick(rows);
        ticks.len() >= 20 && ticks.values().all(|(n, ok)| n == ok)
    })
    .await;
    let rows: Vec<(String, String)> = sqlx::query_as(q).fetch_all(&pool).await.unwrap();
    let ticks = per_tick(rows);
    assert_one_per_tick(&ticks, 20);
    // And the store agrees: no two jobs share a tick.
    let dup: i64 = sqlx::query(
        "SELECT count(*) FROM (SELECT idempotency_key FROM jobs WHERE idempotency_key LIKE \
         'schedule:%' GROUP BY idempotency_key HAVING count(*) > 1) d",
    )
    .fetch_one(&pool)
    .await
    .unwrap()
    .get(0);
    assert_eq!(dup, 0);
    pool.close().await;
}

/// Ten seconds without any daemon, then a scheduler starts: what each policy enqueues.
/// A real store and the real enqueue path, the clock controlled.
#[tokio::test]
async fn each_missed_tick_policy_after_a_ten_second_outage() {
    for (policy, expect_jobs) in [
        ("missed = \"skip\"", 1),
        ("missed = \"once\"", 2),
        ("missed = \"all\"\nmax_catch_up = 4", 5),
    ] {
        let env = quick(TestEnv::new(&format!("{EVERY_SECOND}{policy}\n")));
        // This process's own settings: the file, with the environment the children get.
        let mut settings = env.settings();
        settings.database.path = env.db_path();
        settings.server.bench_tools = true;
        assert!(settings.database.url.is_empty(), "SQLite here");
        let store = mcpq::store::open::open(&settings).await.unwrap().store();
        let t0 = 1_900_000_000_000;
        let clock = Arc::new(ManualClock::new(t0 + 20));
        let app = Arc::new(
            mcpq::app::App::new(&settings, store.clone(), clock.clone() as Arc<dyn Clock>).unwrap(),
        );
        let mut first = mcpq::scheduler::Scheduler::new(app.clone(), settings.schedules.clone());
        assert_eq!(first.pass().await, 1, "{policy}: the tick at t0");
        clock.advance(1000);
        assert_eq!(first.pass().await, 1, "{policy}: the tick at t0 + 1 s");
        assert_eq!(first.pass().await, 0, "{policy}: nothing due twice");
        drop(first);
        // The outage: nothing runs from t0 + 1 s to t0 + 11 s.
        clock.advance(10_000);
        let mut second = mcpq::scheduler::Scheduler::new(app, settings.schedules.clone());
        assert_eq!(second.pass().await, expect_jobs, "{policy}");
        let keys: Vec<String> = store
            .schedule_ticks()
            .await
            .unwrap()
            .into_iter()
            .map(|(n, t)| format!("{n}:{t}"))
            .collect();
        assert_eq!(keys, vec![format!("beat:{}", t0 + 11_000)], "{policy}");
        let pool = db(&env.db_path()).await;
        let ticks: Vec<String> = sqlx::query_scalar(
            "SELECT idempotency_key FROM jobs WHERE idempotency_key LIKE 'schedule:%' ORDER BY 1",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        let expect: Vec<String> = [t0, t0 + 1000]
            .into_iter()
            .chain(
                (0..expect_jobs as i64)
                    .map(|i| t0 + 11_000 - 1000 * i)
                    .rev(),
            )
            .map(|t| format!("schedule:beat:{t}"))
            .collect();
        assert_eq!(ticks, expect, "{policy}");
        pool.close().await;
        store.close().await;
    }
}

#[tokio::test]
async fn bad_schedules_are_refused_at_start_naming_the_schedule() {
    let cases = [
        ("cron = \"61 * * * *\"\ntool = \"noop\"\nclient = \"client-001\"", "cron"),
        (
            "cron = \"* * * * *\"\ntimezone = \"Europe/Atlantis\"\ntool = \"noop\"\nclient = \"client-001\"",
            "Europe/Atlantis",
        ),
        ("cron = \"* * * * *\"\ntool = \"nope\"\nclient = \"client-001\"", "nope"),
        ("cron = \"* * * * *\"\ntool = \"noop\"\nclient = \"nobody\"", "nobody"),
        (
            "cron = \"* * * * *\"\ntool = \"noop\"\nclient = \"client-001\"\narguments = { x = 1 }",
            "arguments",
        ),
        (
            "cron = \"* * * * *\"\ntool = \"noop\"\nclient = \"client-001\"\nmissed = \"all\"",
            "max_catch_up",
        ),
        (
            "cron = \"* * * * *\"\ntool = \"noop\"\nclient = \"client-001\"\nwhen = 1",
            "when",
        ),
    ];
    for (body, what) in cases {
        let env = quick(TestEnv::new(&format!("[schedules.nightly]\n{body}\n")));
        let (code, _, err) = env.run(&["config", "check"]).await;
        assert_eq!(code, 1, "{body}: {err}");
        assert!(
            err.contains("schedules.nightly") && err.contains(what),
            "{body}: {err}"
        );
        let (code, _, err) = env.run(&["serve"]).await;
        assert_ne!(code, 0, "{body}");
        assert!(err.contains("schedules.nightly"), "{body}: {err}");
    }
}
