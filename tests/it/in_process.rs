//! The daemon and a worker built in-process from the library (`Server::build`,
//! `Worker::build`), on a free port, answering real signed HTTP calls: the fast harness
//! for behaviour that needs no process boundary.

use std::time::Duration;

use crate::common::*;
use mcpq::envelope::Status;
use mcpq::json::Json;

#[tokio::test]
async fn an_in_process_daemon_answers_a_signed_sync_call() {
    let env = TestEnv::new("");
    let app = env.spawn_app(false).await;
    let mut client = app.client().await;
    let r = client
        .call("batch_sum", args(r#"{"numbers":[1,2,3.5]}"#))
        .await
        .expect("call");
    assert_eq!(r.status, Status::Ok, "{}", r.raw);
    let total = r.result.as_ref().and_then(|o| o.get("total")).cloned();
    assert_eq!(total, Some(Json::Float(6.5)), "{}", r.raw);
    app.stop().await;
}

#[tokio::test]
async fn a_job_accepted_in_process_is_run_by_an_in_process_worker() {
    let env = TestEnv::new("");
    let app = env.spawn_app(true).await;
    let mut client = app.client().await;
    let accepted = client
        .call(
            "start_long_task",
            args(r#"{"seconds":1,"payload":{"from":"in-process"}}"#),
        )
        .await
        .expect("enqueue");
    assert_eq!(accepted.status, Status::Accepted, "{}", accepted.raw);
    let id = job_id(&accepted);
    let done = poll_until_finished(&mut client, &id, Duration::from_secs(30)).await;
    assert_eq!(done.status, Status::Done, "{}", done.raw);
    let from = done.result.as_ref().and_then(|o| o.get("from")).cloned();
    assert_eq!(from, Some(Json::str("in-process")), "{}", done.raw);
    app.stop().await;
}

#[tokio::test]
async fn a_job_accepted_before_a_stop_is_found_by_the_next_daemon() {
    let env = TestEnv::new("");
    let app = env.spawn_app(false).await;
    let mut client = app.client().await;
    let accepted = client
        .call("start_long_task", args(r#"{"seconds":1,"payload":{}}"#))
        .await
        .expect("enqueue");
    let id = job_id(&accepted);
    app.stop().await;

    // A new daemon and a worker on the same database run the job accepted by the first.
    let app = env.spawn_app(true).await;
    let mut client = app.client().await;
    let done = poll_until_finished(&mut client, &id, Duration::from_secs(30)).await;
    assert_eq!(done.status, Status::Done, "{}", done.raw);
    app.stop().await;
}
