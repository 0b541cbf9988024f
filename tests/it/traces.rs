//! OpenTelemetry traces (docs/TRACING.md), end to end: the real daemon and workers export to
//! a real OTLP receiver (tests/fixtures/otlp_receiver.py, the `opentelemetry-proto`
//! messages over OTLP/HTTP and gRPC), and a command tool exports a span of its own from the
//! context mcpq gave it (tests/fixtures/traced_tool.py).
//!
//! A job whose worker is killed -9 mid-attempt and whose second attempt succeeds is one
//! trace: the caller's span, the request's server span, both attempt spans (the lost one
//! written by the rescuer under the id the tool already used as its parent), the tool's own
//! spans, the group commit. A caller's `traceparent` is honoured on `/v1/call` (header) and
//! `/mcp` (`params._meta`, the header then linked).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

fn python() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python3").to_string()
}

/// The OTLP receiver fixture: every span it receives, as JSON lines in `out`.
struct Receiver {
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
    out: PathBuf,
    http: u16,
    grpc: u16,
}

impl Receiver {
    async fn start() -> Receiver {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("spans.jsonl");
        let mut child = tokio::process::Command::new(python())
            .arg(fixture("otlp_receiver.py"))
            .arg(&out)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the OTLP receiver (.venv with opentelemetry-proto and grpcio)");
        let stdout = child.stdout.take().unwrap();
        let line = tokio::time::timeout(
            Duration::from_secs(30),
            BufReader::new(stdout).lines().next_line(),
        )
        .await
        .expect("receiver ready in time")
        .unwrap()
        .expect("receiver printed its ports");
        let mut http = 0;
        let mut grpc = 0;
        for part in line.trim_start_matches("ready ").split(' ') {
            match part.split_once('=') {
                Some(("http", p)) => http = p.parse().unwrap(),
                Some(("grpc", p)) => grpc = p.parse().unwrap(),
                _ => {}
            }
        }
        assert!(http > 0 && grpc > 0, "{line}");
        Receiver {
            _child: child,
            _dir: dir,
            out,
            http,
            grpc,
        }
    }

    fn spans(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The spans of `trace_id`, once `done` holds for them (exports are batched).
    async fn trace(
        &self,
        trace_id: &str,
        what: &str,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let of_trace = || -> Vec<Value> {
            self.spans()
                .into_iter()
                .filter(|s| s["trace_id"] == trace_id)
                .collect()
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let spans = of_trace();
            if done(&spans) {
                return spans;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("timed out waiting for {what}; spans of the trace:\n{spans:#?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A W3C context as a caller would send it: (traceparent, trace id, span id).
fn caller_context() -> (String, String, String) {
    let trace = uuid::Uuid::new_v4().simple().to_string();
    let span = uuid::Uuid::new_v4().simple().to_string()[..16].to_string();
    (format!("00-{trace}-{span}-01"), trace, span)
}

fn tools(r: &Receiver) -> String {
    format!(
        "[tools.traced]\ndescription = \"traces itself\"\ncommand = [\"{py}\", \"{tool}\"]\n\
         env = {{ OTLP_TRACES_URL = \"http://127.0.0.1:{port}/v1/traces\" }}\n\n\
         [tools.traced_now]\ndescription = \"traces itself, at once\"\nmode = \"sync\"\n\
         command = [\"{py}\", \"{tool}\"]\n\
         env = {{ OTLP_TRACES_URL = \"http://127.0.0.1:{port}/v1/traces\" }}\n",
        py = python(),
        tool = fixture("traced_tool.py"),
        port = r.http,
    )
}

/// Traces on, exporting to the receiver with `protocol`; short leases so a dead worker's
/// job is rescued quickly; the batch exporter flushing every 100 ms.
fn traced_env(env: TestEnv, r: &Receiver, protocol: &str) -> TestEnv {
    let port = if protocol == "grpc" { r.grpc } else { r.http };
    env.set("MCPQ__OTEL__ENABLED", "true")
        .set("MCPQ__OTEL__PROTOCOL", protocol)
        .set("MCPQ__OTEL__ENDPOINT", &format!("http://127.0.0.1:{port}"))
        .set("MCPQ__OTEL__SERVICE_NAME", "mcpq-test")
        .set("OTEL_BSP_SCHEDULE_DELAY", "100")
        .set("MCPQ__JOBS__LEASE_MS", "1500")
        .set("MCPQ__JOBS__HEARTBEAT_MS", "300")
        .set("MCPQ__JOBS__RESCUE_INTERVAL_MS", "200")
        .set("MCPQ__JOBS__RETRY_BASE_MS", "50")
        .set("MCPQ__JOBS__RETRY_MAX_MS", "100")
}

fn named<'a>(spans: &'a [Value], name: &str) -> Vec<&'a Value> {
    spans.iter().filter(|s| s["name"] == name).collect()
}

fn attempt_span(spans: &[Value], n: i64) -> Option<&Value> {
    spans
        .iter()
        .find(|s| s["name"] == "execute_tool traced" && s["attributes"]["mcpq.job.attempt"] == n)
}

fn tool_span<'a>(spans: &'a [Value], attempt: &str) -> Option<&'a Value> {
    spans
        .iter()
        .find(|s| s["name"] == "traced_tool work" && s["attributes"]["fixture.attempt"] == attempt)
}

/// The crash scenario on the store `env` uses: worker 1 dies (kill -9) while the tool runs
/// attempt 1; worker 2 runs attempt 2 after the rescue.
async fn one_trace_across_a_worker_crash(env: TestEnv, r: &Receiver) {
    let env = env.set("MCPQ__SERVER__EMBEDDED_WORKERS", "0");
    let daemon = env.spawn_daemon().await;
    let mut w1 = env.spawn_worker(1).await;
    let mut client = env.client(&daemon).await;

    let started = env.dir.path().join("started");
    let call_args = json!({"started": started.display().to_string()}).to_string();
    let envelope = client.envelope("traced", args(&call_args));
    let request_id = envelope
        .get("request_id")
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    let (traceparent, trace_id, caller_span) = caller_context();
    let body = mcpq::json::Json::Object(envelope)
        .to_canonical()
        .into_bytes();
    let reply = client
        .post_with(
            "/v1/call",
            "application/json",
            &[("traceparent", &traceparent)],
            body,
        )
        .await
        .unwrap();
    let resp = verified(std::str::from_utf8(&reply.body).unwrap());
    assert_eq!(reply.status, 200, "{}", resp.raw);
    let id = job_id(&resp);

    eventually(Duration::from_secs(30), "attempt 1's tool to start", || {
        let started = started.clone();
        async move { started.exists() }
    })
    .await;
    w1.kill9().await;
    let _w2 = env.spawn_worker(2).await;
    let done = poll_until_finished(&mut client, &id, Duration::from_secs(60)).await;
    assert_eq!(done.status, mcpq::envelope::Status::Done, "{}", done.raw);

    let spans = r
        .trace(
            &trace_id,
            "the request, both attempts and both tool spans",
            |s| {
                named(s, "tools/call traced").len() == 1
                    && attempt_span(s, 1).is_some()
                    && attempt_span(s, 2).is_some()
                    && tool_span(s, "1").is_some()
                    && tool_span(s, "2").is_some()
                    && !named(s, "mcpq.store.commit").is_empty()
                    && !named(s, "rescue traced").is_empty()
            },
        )
        .await;

    // The request's server span: the caller's child, named and attributed per the MCP and
    // gen_ai conventions.
    let request = named(&spans, "tools/call traced")[0];
    assert_eq!(request["parent_span_id"], caller_span.as_str());
    assert_eq!(request["kind"], "server");
    assert_eq!(request["service"], "mcpq-test");
    let a = &request["attributes"];
    assert_eq!(a["mcp.method.name"], "tools/call");
    assert_eq!(a["gen_ai.tool.name"], "traced");
    assert_eq!(a["gen_ai.operation.name"], "execute_tool");
    assert_eq!(a["jsonrpc.request.id"], request_id.as_str());
    assert_eq!(a["mcpq.client.id"], "client-001");
    assert_eq!(a["mcpq.job.id"], id.as_str());
    assert!(a.get("error.type").is_none(), "{request}");
    let request_span = request["span_id"].as_str().unwrap();

    // The group commit that stored the job shows in its trace.
    let commit = named(&spans, "mcpq.store.commit")[0];
    assert_eq!(commit["parent_span_id"], request_span);

    // Attempt 1: its worker died, so the rescuer wrote it, under the span id the tool had
    // been given as its parent.
    let first = attempt_span(&spans, 1).unwrap();
    assert_eq!(first["parent_span_id"], request_span);
    assert_eq!(first["attributes"]["error.type"], "worker_lost");
    assert_eq!(first["attributes"]["gen_ai.operation.name"], "execute_tool");
    assert_eq!(first["attributes"]["mcpq.job.id"], id.as_str());
    assert_eq!(first["status"]["code"], 2, "ERROR: {first}");
    assert_eq!(
        tool_span(&spans, "1").unwrap()["parent_span_id"],
        first["span_id"]
    );
    let rescue = named(&spans, "rescue traced")[0];
    assert_eq!(rescue["links"][0]["span_id"], first["span_id"]);

    // Attempt 2: a child of the request too, following from attempt 1 (a link), and the
    // parent of the tool's own span.
    let second = attempt_span(&spans, 2).unwrap();
    assert_eq!(second["parent_span_id"], request_span);
    assert_eq!(second["attributes"]["mcpq.job.outcome"], "succeeded");
    assert!(second["attributes"].get("error.type").is_none(), "{second}");
    assert_eq!(second["links"][0]["span_id"], first["span_id"]);
    assert_eq!(
        tool_span(&spans, "2").unwrap()["parent_span_id"],
        second["span_id"]
    );
    assert_ne!(first["span_id"], second["span_id"]);
}

#[tokio::test]
async fn a_job_whose_worker_dies_is_one_trace_from_the_call_to_the_tool() {
    let r = Receiver::start().await;
    let env = traced_env(TestEnv::new(&tools(&r)), &r, "http/protobuf");
    one_trace_across_a_worker_crash(env, &r).await;
    assert!(r.spans().iter().all(|s| s["protocol"] == "http/protobuf"));
}

#[tokio::test]
async fn a_job_whose_worker_dies_is_one_trace_on_postgresql_too() {
    let r = Receiver::start().await;
    let Some(env) = TestEnv::postgres(&tools(&r)) else {
        return;
    };
    one_trace_across_a_worker_crash(traced_env(env, &r, "grpc"), &r).await;
    assert!(r.spans().iter().any(|s| s["protocol"] == "grpc"));
}

/// A 2025-11-25 `/mcp` request with its own `traceparent` in `params._meta` and another in
/// the HTTP header.
async fn mcp_call(
    client: &mut mcpq::client::Client,
    id: u64,
    params: Value,
    header_tp: &str,
) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params});
    let auth = format!("Bearer {}", mcpq::config::DEV_TOKEN);
    let reply = client
        .post_with(
            "/mcp",
            "application/json",
            &[
                ("Authorization", &auth),
                ("Accept", "application/json, text/event-stream"),
                ("MCP-Protocol-Version", "2025-11-25"),
                ("traceparent", header_tp),
            ],
            body.to_string().into_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    // JSON, or one SSE event carrying it.
    let text = String::from_utf8_lossy(&reply.body).into_owned();
    let json = text
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap_or(&text);
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test]
async fn mcp_takes_the_parent_from_params_meta_over_grpc_and_links_the_header() {
    let r = Receiver::start().await;
    let env = traced_env(TestEnv::new(&tools(&r)), &r, "grpc");
    let daemon = env.spawn_daemon().await;
    let mut client = env.client(&daemon).await;

    let (meta_tp, trace_id, meta_span) = caller_context();
    let (header_tp, header_trace, header_span) = caller_context();
    let params = json!({"name": "traced_now", "arguments": {}, "_meta": {"traceparent": meta_tp, "tracestate": "vendor=1"}});
    let answer = mcp_call(&mut client, 41, params, &header_tp).await;
    assert_eq!(answer["result"]["isError"], false, "{answer}");

    let spans = r
        .trace(
            &trace_id,
            "the /mcp request span and the tool's span",
            |s| {
                named(s, "tools/call traced_now").len() == 1
                    && !named(s, "traced_tool work").is_empty()
            },
        )
        .await;
    let request = named(&spans, "tools/call traced_now")[0];
    assert_eq!(request["protocol"], "grpc");
    assert_eq!(request["kind"], "server");
    assert_eq!(request["parent_span_id"], meta_span.as_str());
    assert_eq!(request["links"][0]["trace_id"], header_trace.as_str());
    assert_eq!(request["links"][0]["span_id"], header_span.as_str());
    let a = &request["attributes"];
    assert_eq!(a["mcp.method.name"], "tools/call");
    assert_eq!(a["gen_ai.tool.name"], "traced_now");
    assert_eq!(a["gen_ai.operation.name"], "execute_tool");
    assert_eq!(a["jsonrpc.request.id"], "41");
    assert_eq!(a["mcp.protocol.version"], "2025-11-25");
    assert_eq!(a["mcpq.client.id"], "client-001");
    // The tool got the request span's context (TRACEPARENT), though its SSE-streamed call
    // runs in a task of its own.
    let tool = named(&spans, "traced_tool work")[0];
    assert_eq!(tool["parent_span_id"], request["span_id"]);

    // A failing call carries `error.type`: the JSON-RPC code of an unknown tool.
    let (meta_tp, trace_id, _) = caller_context();
    let params =
        json!({"name": "no_such_tool", "arguments": {}, "_meta": {"traceparent": meta_tp}});
    let answer = mcp_call(&mut client, 42, params, &header_tp).await;
    let code = answer["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("{answer}"));
    let spans = r
        .trace(&trace_id, "the failed request's span", |s| !s.is_empty())
        .await;
    assert_eq!(
        spans[0]["name"], "tools/call",
        "an unknown tool names no span"
    );
    assert_eq!(
        spans[0]["attributes"]["error.type"],
        code.to_string().as_str()
    );
    assert_eq!(spans[0]["status"]["code"], 2);
}

#[tokio::test]
async fn a_v1_sync_call_honours_the_callers_traceparent_and_hands_it_to_the_tool() {
    let r = Receiver::start().await;
    let env = traced_env(TestEnv::new(&tools(&r)), &r, "http/protobuf");
    let daemon = env.spawn_daemon().await;
    let mut client = env.client(&daemon).await;
    let (traceparent, trace_id, caller_span) = caller_context();
    let envelope = client.envelope("traced_now", args("{}"));
    let body = mcpq::json::Json::Object(envelope)
        .to_canonical()
        .into_bytes();
    let reply = client
        .post_with(
            "/v1/call",
            "application/json",
            &[("traceparent", &traceparent)],
            body,
        )
        .await
        .unwrap();
    let resp = verified(std::str::from_utf8(&reply.body).unwrap());
    assert_eq!(reply.status, 200, "{}", resp.raw);
    let spans = r
        .trace(&trace_id, "the /v1/call span and the tool's span", |s| {
            !named(s, "tools/call traced_now").is_empty()
                && !named(s, "traced_tool work").is_empty()
        })
        .await;
    let request = named(&spans, "tools/call traced_now")[0];
    assert_eq!(request["parent_span_id"], caller_span.as_str());
    assert_eq!(request["attributes"]["mcpq.endpoint"], "/v1/call");
    let tool = named(&spans, "traced_tool work")[0];
    assert_eq!(tool["parent_span_id"], request["span_id"]);
    // The tool saw the request span's context in TRACEPARENT.
    let result = resp.result.as_ref().unwrap();
    let seen = result
        .get("traceparent")
        .and_then(mcpq::json::Json::as_str)
        .unwrap();
    assert!(
        seen.contains(request["span_id"].as_str().unwrap()),
        "{seen}"
    );
    // The call's audit record (docs/AUDIT.md) names its trace.
    let pool = db(&env.db_path()).await;
    let mut recorded: Option<String> = None;
    for _ in 0..100 {
        recorded = sqlx::query_scalar(
            "SELECT trace_id FROM audit WHERE kind = 'call' AND tool = 'traced_now'",
        )
        .fetch_optional(&pool)
        .await
        .unwrap()
        .flatten();
        if recorded.is_some() {
            break;
        }
        // Written behind: it joins the next group commit.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(recorded.as_deref(), Some(trace_id.as_str()));
}

#[tokio::test]
async fn off_by_default_no_context_reaches_a_tool_or_the_store() {
    let r = Receiver::start().await;
    let env = TestEnv::new(&tools(&r));
    let daemon = env.spawn_daemon().await;
    let mut client = env.client(&daemon).await;
    let (traceparent, _, _) = caller_context();
    let envelope = client.envelope("traced_now", args("{}"));
    let body = mcpq::json::Json::Object(envelope)
        .to_canonical()
        .into_bytes();
    let reply = client
        .post_with(
            "/v1/call",
            "application/json",
            &[("traceparent", &traceparent)],
            body,
        )
        .await
        .unwrap();
    let resp = verified(std::str::from_utf8(&reply.body).unwrap());
    let seen = resp.result.as_ref().unwrap().get("traceparent").cloned();
    assert_eq!(seen, Some(mcpq::json::Json::str("")), "{}", resp.raw);
    let resp = client.call("traced", args("{}")).await.unwrap();
    let id = job_id(&resp);
    let done = poll_until_finished(&mut client, &id, Duration::from_secs(30)).await;
    assert_eq!(done.status, mcpq::envelope::Status::Done, "{}", done.raw);
    let pool = db(&env.db_path()).await;
    let stored: Option<String> = sqlx::query_scalar("SELECT trace_context FROM jobs WHERE id = ?")
        .bind(&id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stored, None);
    assert!(r.spans().is_empty());
}
