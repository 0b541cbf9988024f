//! The HTTP surface: limits, media types, methods, malformed bodies, timeouts, concurrency.
//! Every error is a signed response in the seed's schema.

use std::time::Duration;

use crate::common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn post(path: &str, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn assert_error(status: u16, body: &str, want_status: u16, want_code: &str) {
    let r = verified(body);
    assert_eq!(status, want_status, "{body}");
    assert!(!r.ok);
    assert_eq!(r.status, mcpq::envelope::Status::Error);
    assert_eq!(r.error_code(), Some(want_code), "{body}");
    assert!(r.result.is_none());
}

#[tokio::test]
async fn health_and_readiness() {
    let env = TestEnv::new("");
    let d = env.spawn_daemon().await;
    let (s, b) = raw_http(
        d.addr,
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!((s, b.as_str()), (200, "ok\n"));
    let (s, b) = raw_http(
        d.addr,
        b"GET /readyz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!((s, b.as_str()), (200, "ready\n"));
}

#[tokio::test]
async fn wrong_method_path_and_media_type_get_signed_errors() {
    let env = TestEnv::new("");
    let d = env.spawn_daemon().await;
    let (s, b) = raw_http(
        d.addr,
        b"GET /v1/call HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_error(s, &b, 405, "method_not_allowed");
    let (s, b) = raw_http(d.addr, &post("/v2/call", "application/json", "{}")).await;
    assert_error(s, &b, 404, "not_found");
    let (s, b) = raw_http(d.addr, &post("/v1/call", "text/plain", "{}")).await;
    assert_error(s, &b, 415, "unsupported_media_type");
    let (s, b) = raw_http(
        d.addr,
        b"POST /v1/call HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    )
    .await;
    assert_error(s, &b, 415, "unsupported_media_type");
    // Parameters on the media type are fine.
    let (s, b) = raw_http(
        d.addr,
        &post("/v1/call", "application/json; charset=utf-8", "{}"),
    )
    .await;
    assert_error(s, &b, 400, "invalid_envelope");
}

#[tokio::test]
async fn body_over_the_cap_is_refused_declared_or_streamed() {
    let env = TestEnv::new("").set("MCPQ__SERVER__MAX_BODY_BYTES", "1024");
    let d = env.spawn_daemon().await;
    let big = format!(r#"{{"request_id":"big","pad":"{}"}}"#, "x".repeat(2000));
    let (s, b) = raw_http(d.addr, &post("/v1/call", "application/json", &big)).await;
    assert_error(s, &b, 413, "body_too_large");
    // Chunked: no Content-Length to refuse up front; the limit stops the read.
    let chunked = format!(
        "POST /v1/call HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{big}\r\n0\r\n\r\n",
        big.len()
    );
    let (s, b) = raw_http(d.addr, chunked.as_bytes()).await;
    assert_error(s, &b, 413, "body_too_large");
    // The daemon is unharmed.
    let mut c = env.client(&d).await;
    assert!(
        c.call("batch_sum", args(r#"{"numbers":[1]}"#))
            .await
            .unwrap()
            .ok
    );
}

#[tokio::test]
async fn malformed_bodies_get_precise_errors_with_the_request_id_when_readable() {
    let env = TestEnv::new("");
    let d = env.spawn_daemon().await;
    let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
    let cases: Vec<(String, u16, &str, &str)> = vec![
        ("not json".into(), 400, "malformed_json", ""),
        (
            r#"{"request_id":"dup","a":1,"a":2}"#.into(),
            400,
            "malformed_json",
            "dup",
        ),
        (
            format!(r#"{{"request_id":"deep","args":{deep}}}"#),
            400,
            "malformed_json",
            "deep",
        ),
        ("[1,2]".into(), 400, "invalid_envelope", ""),
        (
            r#"{"request_id":"missing"}"#.into(),
            400,
            "invalid_envelope",
            "missing",
        ),
        ("\"\\ud800\"".into(), 400, "malformed_json", ""),
        (
            "{\"request_id\":\"bad-utf8\",\"x\":\"\u{0}\"}".into(),
            400,
            "malformed_json",
            "",
        ),
    ];
    for (body, status, code, rid) in cases {
        let (s, b) = raw_http(d.addr, &post("/v1/call", "application/json", &body)).await;
        assert_error(s, &b, status, code);
        assert_eq!(verified(&b).request_id, rid, "{body}");
    }
    // Field-level problems of an otherwise well-formed envelope.
    let mut c = env.client(&d).await;
    let base = c.envelope("batch_sum", args(r#"{"numbers":[1]}"#));
    let mut extra = base.clone();
    extra.insert("extra".into(), mcpq::json::Json::Int(1));
    let mut wrong_type = base.clone();
    wrong_type.insert("ts_ms".into(), mcpq::json::Json::str("123"));
    let mut float_ts = base.clone();
    float_ts.insert("ts_ms".into(), mcpq::json::Json::Float(1.5));
    let mut args_list = base.clone();
    args_list.insert("args".into(), mcpq::json::Json::Array(vec![]));
    for (e, needle) in [
        (extra, "unexpected field \"extra\""),
        (wrong_type, "\"ts_ms\" must be an integer"),
        (float_ts, "\"ts_ms\" must be an integer"),
        (args_list, "\"args\" must be an object"),
    ] {
        let (s, r) = c.send(&e).await.unwrap();
        assert_eq!((s, r.error_code()), (400, Some("invalid_envelope")));
        assert!(r.error.as_deref().unwrap().contains(needle), "{}", r.raw);
        assert_eq!(
            r.request_id,
            base.get("request_id").unwrap().as_str().unwrap()
        );
    }
}

#[tokio::test]
async fn slow_client_is_cut_off_by_the_header_timeout() {
    let env = TestEnv::new("").set("MCPQ__SERVER__HEADER_TIMEOUT_MS", "300");
    let d = env.spawn_daemon().await;
    let mut s = tokio::net::TcpStream::connect(d.addr).await.unwrap();
    s.write_all(b"POST /v1/call HTTP/1.1\r\nHost: t\r\n")
        .await
        .unwrap();
    // Never finish the head. The server must close the connection on its own.
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    assert!(closed.is_ok(), "server kept a stalled connection open");
    // The daemon still serves others.
    let mut c = env.client(&d).await;
    assert!(
        c.call("batch_sum", args(r#"{"numbers":[1]}"#))
            .await
            .unwrap()
            .ok
    );
}

#[tokio::test]
async fn slow_body_gets_request_timeout() {
    let env = TestEnv::new("").set("MCPQ__SERVER__BODY_TIMEOUT_MS", "300");
    let d = env.spawn_daemon().await;
    let mut s = tokio::net::TcpStream::connect(d.addr).await.unwrap();
    s.write_all(b"POST /v1/call HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{\"a\":")
        .await
        .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("answered in time")
        .unwrap();
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    assert_error(408, body, 408, "request_timeout");
}

#[tokio::test]
async fn concurrent_calls_are_all_answered_correctly() {
    let env = TestEnv::new("");
    let d = env.spawn_daemon().await;
    let mut tasks = Vec::new();
    for i in 0..32 {
        let mut c = env.client(&d).await;
        tasks.push(tokio::spawn(async move {
            for j in 0..25 {
                let r = c
                    .call(
                        "batch_sum",
                        args(&format!(r#"{{"numbers":[{i},{j},0.5]}}"#)),
                    )
                    .await
                    .unwrap();
                assert!(r.ok, "{}", r.raw);
                let want = format!(r#""total":{}"#, {
                    let mut s = String::new();
                    mcpq::json::write_py_float(i as f64 + j as f64 + 0.5, &mut s);
                    s
                });
                assert!(r.raw.contains(&want), "{} lacks {want}", r.raw);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_for_a_free_slot() {
    let env = TestEnv::new("")
        .set("MCPQ__SERVER__MAX_CONNECTIONS", "2")
        .set("MCPQ__SERVER__HEADER_TIMEOUT_MS", "60000");
    let d = env.spawn_daemon().await;
    // Two clients hold both slots (keep-alive connections).
    let mut a = env.client(&d).await;
    let mut b = env.client(&d).await;
    assert!(
        a.call("batch_sum", args(r#"{"numbers":[1]}"#))
            .await
            .unwrap()
            .ok
    );
    assert!(
        b.call("batch_sum", args(r#"{"numbers":[1]}"#))
            .await
            .unwrap()
            .ok
    );
    // A third connection is accepted by the kernel but not served while both are held.
    let mut c = env.client(&d).await;
    let third = tokio::spawn(async move { c.call("batch_sum", args(r#"{"numbers":[3]}"#)).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!third.is_finished(), "served beyond max_connections");
    // Freeing a slot lets it through.
    drop(a);
    let r = tokio::time::timeout(Duration::from_secs(10), third)
        .await
        .expect("served once a slot is free")
        .unwrap()
        .unwrap();
    assert!(r.ok, "{}", r.raw);
    assert!(
        b.call("batch_sum", args(r#"{"numbers":[1]}"#))
            .await
            .unwrap()
            .ok
    );
}
