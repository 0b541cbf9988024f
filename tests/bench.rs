//! The load generator measures what it claims to: every job it counts as done is done
//! in the database, and it waits for each job's own schedule.

mod common;

use std::time::Duration;

use common::*;

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
