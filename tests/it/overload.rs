//! Overload and abuse, tried as an attacker would from outside: connection exhaustion by
//! one peer and by many, a client that writes a whole oversized body before reading,
//! per-client rate limits and queue caps, and fairness under a flood. Loopback only,
//! bounded in count and time.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::*;
use mcpq::envelope::Status;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A connection from `from` (any 127.0.0.0/8 address) to `to`.
async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(format!("{from}:0").parse().unwrap()).unwrap();
    s.connect(to).await.unwrap()
}

/// Whether the server has closed `s` (EOF or reset), without waiting long.
async fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 64];
    matches!(
        tokio::time::timeout(Duration::from_millis(20), s.read(&mut b)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test]
async fn a_signed_call_gets_through_while_one_peer_holds_idle_and_slow_connections() {
    let env = TestEnv::new("")
        .set("MCPQ__SERVER__MAX_CONNECTIONS", "64")
        .set("MCPQ__LIMITS__MAX_CONNECTIONS_PER_IP", "16");
    let d = env.spawn_daemon().await;
    // The peer: 2x max_connections idle sockets and 500 slow request heads.
    let mut idle = Vec::new();
    for _ in 0..128 {
        idle.push(connect_from("127.0.0.2", d.addr).await);
    }
    let mut slow = Vec::new();
    for _ in 0..500 {
        let mut s = connect_from("127.0.0.2", d.addr).await;
        let _ = s.write_all(b"P").await;
        slow.push(s);
    }
    // A byte a second on every slow head while the call is made.
    let trickle = tokio::spawn(async move {
        for b in b"OST /v1/call HTTP/1.1\r\n".iter().cycle().take(5) {
            for s in slow.iter_mut() {
                let _ = s.write_all(&[*b]).await;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        slow
    });
    let mut c = env.client(&d).await;
    let t0 = Instant::now();
    let r = tokio::time::timeout(
        Duration::from_secs(2),
        c.call("batch_sum", args(r#"{"numbers":[1,2]}"#)),
    )
    .await
    .expect("answered long before the head timeout (5 s) would reap the peer's sockets")
    .unwrap();
    let took = t0.elapsed();
    assert!(r.ok, "{}", r.raw);
    println!("signed call answered in {took:?} with the peer's 628 sockets open");
    // The peer holds at most its cap; the rest were closed at once.
    let mut open = 0;
    for s in idle.iter_mut() {
        if !closed_by_server(s).await {
            open += 1;
        }
    }
    assert!(open <= 16, "{open} idle sockets of one peer stayed open");
    trickle.abort();
}

#[tokio::test]
async fn under_pressure_idle_connections_make_room_for_new_callers() {
    // Many peers, each under its cap, together fill the slots with idle connections.
    let env = TestEnv::new("")
        .set("MCPQ__SERVER__MAX_CONNECTIONS", "32")
        .set("MCPQ__LIMITS__MAX_CONNECTIONS_PER_IP", "8");
    let d = env.spawn_daemon().await;
    let mut idle = Vec::new();
    for peer in 2..6 {
        for _ in 0..8 {
            idle.push(connect_from(&format!("127.0.0.{peer}"), d.addr).await);
        }
    }
    // Every slot is taken by an idle connection; a caller still gets in, because idle
    // connections are closed to make room.
    let mut c = env.client(&d).await;
    let r = tokio::time::timeout(
        Duration::from_secs(3),
        c.call("batch_sum", args(r#"{"numbers":[1]}"#)),
    )
    .await
    .expect("a caller got a slot while idle connections held them all")
    .unwrap();
    assert!(r.ok, "{}", r.raw);
    let mut shed = 0;
    for s in idle.iter_mut() {
        if closed_by_server(s).await {
            shed += 1;
        }
    }
    assert!(shed > 0, "no idle connection was closed");
}

#[tokio::test]
async fn a_client_that_writes_its_whole_oversized_body_first_reads_the_413() {
    let env = TestEnv::new("");
    let d = env.spawn_daemon().await;
    // Python's http.client, as a user's script would use it: it sends the whole 8 MiB
    // body, then reads the answer.
    let script = format!(
        r#"
import http.client, json
body = b'{{"pad":"' + b'x' * (8 << 20) + b'"}}'
for chunked in (False, True):
    c = http.client.HTTPConnection("{host}", {port}, timeout=30)
    if chunked:
        c.request("POST", "/v1/call", body=iter([body[i:i + 65536] for i in range(0, len(body), 65536)]),
                  headers={{"Content-Type": "application/json"}}, encode_chunked=True)
    else:
        c.request("POST", "/v1/call", body=body, headers={{"Content-Type": "application/json"}})
    r = c.getresponse()
    print(r.status, json.loads(r.read())["error"].split(":")[0])
"#,
        host = d.addr.ip(),
        port = d.addr.port()
    );
    let out = tokio::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout, "413 body_too_large\n413 body_too_large\n");
}

/// Sends a signed call over raw HTTP and returns (status, headers and body).
async fn raw_call(
    c: &mut mcpq::client::Client,
    addr: SocketAddr,
    tool: &str,
    a: &str,
) -> (u16, String) {
    let env = c.envelope(tool, args(a));
    let body = mcpq::json::Json::Object(env).to_canonical();
    let req = format!(
        "POST /v1/call HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    (status, text)
}

#[tokio::test]
async fn a_client_over_its_rate_gets_429_with_retry_after_and_others_are_unaffected() {
    let env = TestEnv::new("")
        .set("MCPQ__LIMITS__RATE_PER_CLIENT", "2")
        .set("MCPQ__LIMITS__RATE_BURST", "3");
    let d = env.spawn_daemon().await;
    let mut c = env.client(&d).await;
    let mut codes = Vec::new();
    for _ in 0..6 {
        let (status, text) = raw_call(&mut c, d.addr, "batch_sum", r#"{"numbers":[1]}"#).await;
        if status == 429 {
            assert!(text.contains("\"error\":\"rate_limited: "), "{text}");
            let retry = text
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("retry-after: ")
                        .map(str::to_string)
                })
                .unwrap_or_else(|| panic!("no Retry-After: {text}"));
            assert!(retry.trim().parse::<u64>().unwrap() >= 1, "{text}");
        }
        codes.push(status);
    }
    assert_eq!(&codes[..3], &[200, 200, 200], "the burst passes: {codes:?}");
    assert!(codes[3..].contains(&429), "{codes:?}");
    // Another client has its own bucket.
    let mut other = mcpq::client::Client::connect(env.client2_settings(&d, CLIENT2_CURRENT))
        .await
        .unwrap();
    let r = other
        .call("batch_sum", args(r#"{"numbers":[1]}"#))
        .await
        .unwrap();
    assert!(r.ok, "{}", r.raw);
}

#[tokio::test]
async fn a_flooding_client_hits_its_queue_cap_and_another_clients_job_still_starts_soon() {
    const CAP: usize = 20;
    let env = TestEnv::new(
        "[tools.step]\ndescription = \"a short step\"\ncommand = [\"/bin/sh\", \"-c\", \"cat > /dev/null; sleep 0.05; echo '{}'\"]\nenv = { PATH = \"/usr/bin:/bin\" }\n",
    )
    .set("MCPQ__SERVER__EMBEDDED_WORKERS", "0")
    .set("MCPQ__LIMITS__MAX_QUEUED_PER_CLIENT", &CAP.to_string());
    let d = env.spawn_daemon().await;
    let mut a = env.client(&d).await;
    // With no worker running, the flood stops at the cap.
    let mut accepted = Vec::new();
    let mut refused = None;
    for _ in 0..CAP + 5 {
        let r = a.call("step", args("{}")).await.unwrap();
        if r.status == Status::Accepted {
            accepted.push(job_id(&r));
        } else {
            refused = Some(r);
            break;
        }
    }
    assert_eq!(accepted.len(), CAP);
    let refused = refused.expect("the flood was refused at the cap");
    assert_eq!(refused.error_code(), Some("queue_full"), "{}", refused.raw);
    // The other client is not blocked by A's cap.
    let mut b = mcpq::client::Client::connect(env.client2_settings(&d, CLIENT2_CURRENT))
        .await
        .unwrap();
    let r = b.call("step", args("{}")).await.unwrap();
    assert_eq!(r.status, Status::Accepted, "{}", r.raw);
    let b_job = job_id(&r);
    // A keeps flooding while a worker drains; B's job starts after at most the cap of
    // A's jobs that were queued before it, however long A floods.
    let _w = env.spawn_worker(1).await;
    let flood = tokio::spawn(async move {
        let mut more = 0;
        for _ in 0..200 {
            let r = a.call("step", args("{}")).await.unwrap();
            if r.status == Status::Accepted {
                more += 1;
            } else {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        more
    });
    poll_until_finished(&mut b, &b_job, Duration::from_secs(60)).await;
    let more = flood.await.unwrap();
    assert!(more > 0, "A went on enqueueing as its queue drained");
    let (_, out, _) = env
        .run(&["jobs", "list", "--limit", "1000", "--json"])
        .await;
    let jobs: serde_json::Value = serde_json::from_str(&out).unwrap();
    let jobs = jobs.as_array().unwrap();
    let b_row = jobs.iter().find(|j| j["id"] == b_job.as_str()).unwrap();
    let b_started = b_row["started_at"].as_i64().unwrap();
    let a_before = jobs
        .iter()
        .filter(|j| j["client_id"] == "client-001")
        .filter(|j| j["started_at"].as_i64().is_some_and(|s| s < b_started))
        .count();
    assert!(a_before <= CAP, "{a_before} of A's jobs started before B's");
}
