//! Prometheus metrics, scraped over HTTP from a real daemon and a real worker and parsed:
//! values move as calls and jobs happen, labels stay bounded, nothing secret shows.

use std::time::Duration;

use crate::common::*;
use mcpq::client::Client;

/// Every sample of `name` whose labels include all of `labels` (`key="value"` pairs).
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| {
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|(_, v)| v.parse::<f64>().unwrap())
        .sum()
}

async fn scrape(addr: std::net::SocketAddr) -> String {
    let (status, body) = raw_http(
        addr,
        b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

fn free_port() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

#[tokio::test]
async fn metrics_move_with_calls_and_jobs_and_hold_no_secret() {
    let worker_metrics = free_port();
    let env = TestEnv::new("")
        .set("MCPQ__SERVER__EMBEDDED_WORKERS", "0")
        .set("MCPQ__METRICS__WORKER_LISTEN", &worker_metrics.to_string());
    let d = env.spawn_daemon().await;
    let m = d.metrics.expect("the daemon serves metrics");
    assert!(m.ip().is_loopback());
    let before = scrape(m).await;
    assert_eq!(value(&before, "mcpq_database_up", &[]), 1.0, "{before}");

    let mut c = env.client(&d).await;
    for _ in 0..3 {
        let r = c
            .call("batch_sum", args(r#"{"numbers":[1,2]}"#))
            .await
            .unwrap();
        assert!(r.ok);
    }
    let r = c.call("no_such_tool_x7", args("{}")).await.unwrap();
    assert_eq!(r.error_code(), Some("unknown_tool"));
    let mut bad = env.client_settings(&d);
    bad.secret = mcpq::config::Secret::new(b"a-wrong-key-that-must-not-show-in-metrics".to_vec());
    let mut bc = Client::connect(bad).await.unwrap();
    let r = bc
        .call("batch_sum", args(r#"{"numbers":[1]}"#))
        .await
        .unwrap();
    assert_eq!(r.error_code(), Some("bad_signature"));
    let r = c
        .call(
            "start_long_task",
            args(r#"{"seconds":1,"payload":{"mark":"payload-mark-99f"}}"#),
        )
        .await
        .unwrap();
    let job = job_id(&r);

    let after = scrape(m).await;
    let ok = |t: &str| {
        value(
            t,
            "mcpq_requests_total",
            &[("tool", "batch_sum"), ("code", "ok")],
        )
    };
    assert_eq!(ok(&after) - ok(&before), 3.0, "{after}");
    assert_eq!(
        value(
            &after,
            "mcpq_requests_total",
            &[("tool", "unknown"), ("code", "unknown_tool")]
        ),
        1.0,
        "{after}"
    );
    assert!(
        !after.contains("no_such_tool_x7"),
        "a client-chosen name became a label"
    );
    assert_eq!(
        value(
            &after,
            "mcpq_auth_failures_total",
            &[("reason", "bad_signature")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "mcpq_jobs_enqueued_total",
            &[("tool", "start_long_task")]
        ),
        1.0
    );
    // No worker yet: the job waits, and the gauges read from the store say so.
    assert_eq!(
        value(
            &after,
            "mcpq_jobs",
            &[("state", "queued"), ("tool", "start_long_task")]
        ),
        1.0,
        "{after}"
    );
    assert!(value(&after, "mcpq_oldest_queued_job_age_seconds", &[]) >= 0.0);
    assert!(
        value(
            &after,
            "mcpq_request_duration_seconds_count",
            &[("tool", "batch_sum")]
        ) >= 3.0
    );
    assert!(
        value(&after, "mcpq_group_commit_rows_count", &[]) >= 1.0,
        "{after}"
    );
    assert!(
        value(&after, "mcpq_fsync_seconds_count", &[]) >= 1.0,
        "{after}"
    );

    // A worker runs it; its own endpoint counts the attempt.
    let _w = env.spawn_worker(1).await;
    let done = poll_until_finished(&mut c, &job, Duration::from_secs(30)).await;
    assert!(done.ok, "{}", done.raw);
    let wm = scrape(worker_metrics).await;
    assert_eq!(
        value(
            &wm,
            "mcpq_job_attempts_total",
            &[("tool", "start_long_task"), ("outcome", "succeeded")]
        ),
        1.0,
        "{wm}"
    );
    assert_eq!(
        value(
            &wm,
            "mcpq_job_run_seconds_count",
            &[("tool", "start_long_task")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &wm,
            "mcpq_job_start_delay_seconds_count",
            &[("tool", "start_long_task")]
        ),
        1.0
    );
    let end = scrape(m).await;
    assert_eq!(
        value(
            &end,
            "mcpq_jobs",
            &[("state", "queued"), ("tool", "start_long_task")]
        ),
        0.0,
        "{end}"
    );

    // Nothing secret, no payload, no job id, no client id (client labels are off).
    let s = env.settings();
    for text in [&after, &end, &wm] {
        assert!(!text.contains(&job), "a job id became a label");
        assert!(
            !text.contains("payload-mark-99f"),
            "a payload reached the metrics"
        );
        assert!(
            !text.contains("client-001"),
            "client ids are labels only when configured"
        );
        assert!(!text.contains("a-wrong-key-that-must-not-show-in-metrics"));
        assert!(!text.contains(std::str::from_utf8(s.server.secret.expose()).unwrap()));
    }
    let (status, _) = raw_http(
        m,
        b"POST /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 405);
}

#[tokio::test]
async fn client_labels_appear_only_when_configured_and_only_for_verified_clients() {
    let env = TestEnv::new("").set("MCPQ__METRICS__CLIENT_LABELS", "true");
    let d = env.spawn_daemon().await;
    let mut c = env.client(&d).await;
    c.call("batch_sum", args(r#"{"numbers":[1]}"#))
        .await
        .unwrap();
    let mut s = env.client_settings(&d);
    s.client_id = "made-up-client-name".into();
    let mut intruder = Client::connect(s).await.unwrap();
    intruder
        .call("batch_sum", args(r#"{"numbers":[1]}"#))
        .await
        .unwrap();
    let text = scrape(d.metrics.unwrap()).await;
    assert_eq!(
        value(
            &text,
            "mcpq_client_calls_total",
            &[("client", "client-001")]
        ),
        1.0,
        "{text}"
    );
    assert!(!text.contains("made-up-client-name"), "{text}");
}
