//! The load generator measures what it claims to: every job it counts as done is done
//! in the database, and it waits for each job's own schedule.

use std::time::Duration;

use crate::common::*;

#[tokio::test]
async fn e2e_bench_counts_only_jobs_that_really_finished() {
    let env = TestEnv::new("");
    let d = env.spawn_daemon().await;
    let report = mcpq::bench::e2e(
        env.client_settings(&d),
        4,
        40,
        "start_long_task".into(),
        args(r#"{"seconds":1}"#),
        Duration::from_millis(1000),
        mcpq::bench::REPOLL,
    )
    .await
    .expect("bench ran");
    assert_eq!((report.jobs, report.failed), (40, 0));
    // Each job was polled at least once, and none before its second was up.
    assert!(report.polls >= 40, "{} polls", report.polls);
    assert!(report.total_elapsed >= Duration::from_secs(1));
    let pool = db(&env.db_path()).await;
    let (done, at_least_a_second): (i64, i64) = sqlx::query_as(
        "SELECT count(*), sum(finished_at - created_at >= 1000) FROM jobs WHERE state = 'succeeded'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((done, at_least_a_second), (40, 40));
}

/// `mcpq bench drain --mixed-priorities --keys K` fills what it says (every priority, `K`
/// keys under the per-key limit) and its workers drain all of it.
async fn shaped_drain_drains_every_job(env: TestEnv) {
    let (code, out, err) = env
        .run_with(
            &[("MCPQ__SERVER__BENCH_TOOLS", "true")],
            &[
                "bench",
                "drain",
                "-n",
                "1000",
                "-w",
                "1",
                "--mixed-priorities",
                "--keys",
                "7",
            ],
        )
        .await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("jobs/s overall (1000 jobs"), "{out}");
    let q = "SELECT count(*), count(DISTINCT priority), count(DISTINCT ckey), \
             sum(CASE WHEN state = 'succeeded' THEN 1 ELSE 0 END) FROM jobs WHERE tool = 'noop_keyed'";
    let row: (i64, i64, i64, i64) = match env.pg {
        None => sqlx::query_as(q).fetch_one(&db(&env.db_path()).await).await,
        Some(_) => sqlx::query_as(q).fetch_one(&env.pg_pool().await).await,
    }
    .unwrap();
    // Priorities come in runs of 100 jobs, each run's from a hash: as many distinct ones as
    // the fill's own rule gives, and more than one.
    let shape = mcpq::store::bench::FillShape {
        mixed_priorities: true,
        aging_ms: 60_000,
        keys: Some(7),
    };
    let mut priorities: Vec<i64> = (0..1000).map(|i| shape.row(i).priority).collect();
    priorities.sort();
    priorities.dedup();
    assert!(priorities.len() > 1, "{priorities:?}");
    assert_eq!(row, (1000, priorities.len() as i64, 7, 1000));
}

#[tokio::test]
async fn shaped_drain_drains_every_job_on_sqlite() {
    shaped_drain_drains_every_job(TestEnv::new("")).await;
}

#[tokio::test]
async fn shaped_drain_drains_every_job_on_postgres() {
    let Some(env) = TestEnv::postgres("") else {
        return;
    };
    shaped_drain_drains_every_job(env).await;
}
