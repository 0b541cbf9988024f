//! Existing MCP servers behind mcpq (`[upstreams.NAME]`, docs/UPSTREAMS.md), with the
//! reference servers from the registries: `@modelcontextprotocol/server-everything` (npm,
//! over stdio and over streamable HTTP) and `mcp-server-time` (PyPI), driven through the
//! real daemon and worker by rmcp's client. No mock of an upstream.

use crate::common;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use rmcp::model::{CallToolRequestParams, CallToolResult, ProgressNotificationParam};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::{json, Value};

const TOKEN: &str = "dev-only-mcp-token-00000000000000000000000000000000";

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// server-everything's entry point, installed by `.ci/run` (npm ci in
/// tests/fixtures/upstreams).
fn everything() -> String {
    let p = fixtures()
        .join("upstreams/node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    assert!(
        p.exists(),
        "{} is missing: run `npm ci` in tests/fixtures/upstreams",
        p.display()
    );
    p.display().to_string()
}

fn node() -> String {
    which("node")
}

fn which(program: &str) -> String {
    let out = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .expect("sh");
    let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(!p.is_empty(), "{program} is not installed");
    p
}

/// `mcp-server-time` from the test virtualenv (`.ci/run` installs it, pinned).
fn time_server() -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/mcp-server-time");
    assert!(
        p.exists(),
        "{} is missing: .ci/run installs mcp-server-time into .venv",
        p.display()
    );
    p.display().to_string()
}

/// Records the progress notifications mcpq sends while it holds a call.
#[derive(Clone, Default)]
struct Recorder {
    progress: Arc<Mutex<Vec<ProgressNotificationParam>>>,
}

impl Recorder {
    /// The progress values seen so far.
    fn seen(&self) -> Vec<f64> {
        self.progress
            .lock()
            .unwrap()
            .iter()
            .map(|p| p.progress)
            .collect()
    }
}

impl ClientHandler for Recorder {
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.progress.lock().unwrap().push(params);
    }
}

/// Waits until a fresh `/mcp` client of the daemon at `addr` sees `tool` listed.
async fn until_listed(addr: std::net::SocketAddr, tool: &str) {
    eventually(
        Duration::from_secs(30),
        "the upstream's tools are listed",
        || async {
            let fresh = connect(addr, Recorder::default()).await;
            let tools = fresh.list_all_tools().await.unwrap_or_default();
            let _ = fresh.cancel().await;
            tools.iter().any(|t| t.name == tool)
        },
    )
    .await;
}

async fn connect(
    addr: std::net::SocketAddr,
    rec: Recorder,
) -> RunningService<RoleClient, Recorder> {
    let config = StreamableHttpClientTransportConfig::with_uri(format!("http://{addr}/mcp"))
        .auth_header(TOKEN);
    tokio::time::timeout(
        Duration::from_secs(10),
        rec.serve(StreamableHttpClientTransport::from_config(config)),
    )
    .await
    .expect("handshake in time")
    .expect("handshake")
}

fn params(tool: &str, args: Value) -> CallToolRequestParams {
    let Value::Object(a) = args else {
        panic!("args")
    };
    CallToolRequestParams::new(tool.to_string()).with_arguments(a)
}

fn text(r: &CallToolResult) -> String {
    let v = serde_json::to_value(r).unwrap();
    v["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn stdio_everything(extra: &str) -> String {
    format!(
        r#"
[upstreams.everything]
command = ["{node}", "{everything}", "stdio"]
deny = ["*elicitation*", "*sampling*", "toggle-*"]
{extra}

[upstreams.everything.tools.echo]
mode = "sync"
"#,
        node = node(),
        everything = everything()
    )
}

#[tokio::test]
async fn a_stdio_servers_tools_are_published_and_called_sync_and_as_durable_jobs() {
    let env = TestEnv::new(&stdio_everything(""));
    let d = env.spawn_daemon().await;
    let rec = Recorder::default();
    let client = connect(d.addr, rec.clone()).await;

    let tools = client.list_all_tools().await.unwrap();
    let by_name = |n: &str| tools.iter().find(|t| t.name == n).cloned();
    for n in [
        "everything_echo",
        "everything_get-sum",
        "everything_trigger-long-running-operation",
    ] {
        assert!(
            by_name(n).is_some(),
            "{n} missing from {:?}",
            tools.iter().map(|t| &t.name).collect::<Vec<_>>()
        );
    }
    assert!(
        by_name("everything_trigger-sampling-request").is_none(),
        "a denied tool is published"
    );
    let long = by_name("everything_trigger-long-running-operation").unwrap();
    assert_eq!(
        long.title.as_deref(),
        Some("Trigger Long Running Operation Tool")
    );
    assert_eq!(
        long.annotations.as_ref().and_then(|a| a.read_only_hint),
        Some(true),
        "the upstream's annotations are published"
    );

    // A sync tool: answered by the daemon's session.
    let echoed = client
        .call_tool(params("everything_echo", json!({"message": "hi"})))
        .await
        .unwrap();
    assert_eq!(echoed.is_error, Some(false), "{echoed:?}");
    assert_eq!(text(&echoed), "Echo: hi");

    // A job tool: a durable job run by the embedded worker's session, the call held.
    let sum = client
        .call_tool(params("everything_get-sum", json!({"a": 2, "b": 3})))
        .await
        .unwrap();
    assert_eq!(sum.is_error, Some(false), "{sum:?}");
    assert!(text(&sum).contains('5'), "{sum:?}");

    // Arguments the upstream's schema refuses are refused before anything is stored.
    let refused = client
        .call_tool(params("everything_get-sum", json!({"a": "two", "b": 3})))
        .await
        .unwrap();
    assert_eq!(refused.is_error, Some(true), "{refused:?}");
    assert!(
        text(&refused).starts_with("invalid_args: at /a"),
        "{refused:?}"
    );
    let (code, out, _) = env.run(&["jobs", "list", "--json"]).await;
    assert_eq!(code, 0);
    let jobs: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(jobs.as_array().map(Vec::len), Some(1), "{jobs}");

    // Its long-running operation: every progress step reaches the held call.
    let done = client
        .call_tool(params(
            "everything_trigger-long-running-operation",
            json!({"duration": 6, "steps": 3}),
        ))
        .await
        .unwrap();
    assert_eq!(done.is_error, Some(false), "{done:?}");
    assert!(
        text(&done).contains("Long running operation completed"),
        "{done:?}"
    );
    let seen = rec.seen();
    for step in [1.0 / 3.0, 2.0 / 3.0] {
        assert!(
            seen.iter().any(|p| (p - step).abs() < 0.01),
            "step {step} not seen in {seen:?}"
        );
    }
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn calls_to_mcp_server_time_through_mcpq_equal_direct_calls() {
    let env = TestEnv::new(&format!(
        r#"
[upstreams.time]
command = ["{}"]
mode = "sync"
"#,
        time_server()
    ));
    let d = env.spawn_daemon().await;
    let client = connect(d.addr, Recorder::default()).await;
    let args = json!({"source_timezone": "America/New_York", "time": "16:30", "target_timezone": "Asia/Tokyo"});
    let through = client
        .call_tool(params("time_convert_time", args.clone()))
        .await
        .unwrap();

    let mut direct_cmd = tokio::process::Command::new(time_server());
    direct_cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = direct_cmd.spawn().unwrap();
    let (stdout, stdin) = (child.stdout.take().unwrap(), child.stdin.take().unwrap());
    let direct = ().serve((stdout, stdin)).await.unwrap();
    let expected = direct
        .call_tool(params("convert_time", args))
        .await
        .unwrap();
    assert_eq!(through.is_error, Some(false), "{through:?}");
    assert_eq!(
        serde_json::to_value(&through.content).unwrap(),
        serde_json::to_value(&expected.content).unwrap()
    );
    let tools = client.list_all_tools().await.unwrap();
    let direct_tools = direct.list_all_tools().await.unwrap();
    for t in &direct_tools {
        let ours = tools
            .iter()
            .find(|o| o.name == format!("time_{}", t.name))
            .unwrap_or_else(|| panic!("time_{} not listed", t.name));
        assert_eq!(ours.input_schema, t.input_schema, "{}", t.name);
    }
    direct.cancel().await.unwrap();
    client.cancel().await.unwrap();
}

/// The pids of `parent`'s children.
fn children(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let after = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
        if after.split(' ').nth(1).and_then(|p| p.parse::<u32>().ok()) == Some(parent) {
            out.push(pid);
        }
    }
    out
}

#[tokio::test]
async fn a_killed_stdio_server_is_started_again_and_the_job_is_retried() {
    let env = TestEnv::new(&stdio_everything(
        "max_attempts = 3\nretry_base_ms = 100\nretry_max_ms = 200",
    ));
    let d = env.spawn_daemon().await;
    let client = connect(d.addr, Recorder::default()).await;
    let first = children(d.proc.pid());
    assert_eq!(first.len(), 1, "one upstream process: {first:?}");

    // kill -9 of the server while its tool runs: the attempt fails, the pool starts the
    // server again, and the retry completes on the new process.
    let call = {
        let peer = client.peer().clone();
        tokio::spawn(async move {
            peer.call_tool(params(
                "everything_trigger-long-running-operation",
                json!({"duration": 2, "steps": 2}),
            ))
            .await
        })
    };
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let (_, out, _) = env.run(&["jobs", "list", "--json"]).await;
            if out.contains("\"running\"") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the job runs");
    std::process::Command::new("kill")
        .args(["-9", &first[0].to_string()])
        .status()
        .unwrap();
    let done = call.await.unwrap().unwrap();
    assert_eq!(done.is_error, Some(false), "{done:?}");
    let now = children(d.proc.pid());
    assert_eq!(now.len(), 1, "{now:?}");
    assert_ne!(now[0], first[0], "the server was started again");
    let (_, out, _) = env.run(&["jobs", "list", "--json"]).await;
    let jobs: Value = serde_json::from_str(&out).unwrap();
    assert!(jobs[0]["attempt"].as_u64().unwrap_or(0) >= 2, "{jobs}");
    // And the next call goes through at once.
    let sum = client
        .call_tool(params("everything_get-sum", json!({"a": 1, "b": 1})))
        .await
        .unwrap();
    assert_eq!(sum.is_error, Some(false), "{sum:?}");
    client.cancel().await.unwrap();
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// server-everything in its streamable-HTTP mode on `port` (stopped when dropped).
fn everything_over_http(port: u16) -> tokio::process::Child {
    tokio::process::Command::new(node())
        .args([everything().as_str(), "streamableHttp"])
        .env("PORT", port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn an_http_upstream_down_at_start_is_listed_once_it_answers() {
    let port = free_port();
    let env = TestEnv::new(&format!(
        r#"
[upstreams.web]
url = "http://127.0.0.1:{port}/mcp"
mode = "sync"
allow = ["echo", "get-sum"]
"#
    ));
    let d = env.spawn_daemon().await;
    let client = connect(d.addr, Recorder::default()).await;
    let tools = client.list_all_tools().await.unwrap();
    assert!(
        !tools.iter().any(|t| t.name.starts_with("web_")),
        "listed while down"
    );
    let unknown = client
        .call_tool(params("web_echo", json!({"message": "x"})))
        .await;
    assert!(unknown.is_err(), "{unknown:?}");
    let metrics = d.metrics.expect("metrics listener");
    assert!(
        scrape(metrics)
            .await
            .contains("mcpq_upstream_sessions_up{upstream=\"web\"} 0"),
        "the metrics say the upstream is down"
    );
    let at = metrics.to_string();
    let stats = |at: String| {
        let env = &env;
        async move {
            let (code, out, err) = env
                .run_with(&[("MCPQ__METRICS__LISTEN", &at)], &["stats", "--json"])
                .await;
            assert_eq!(code, 0, "{err}");
            serde_json::from_str::<Value>(&out).unwrap()["upstreams"][0].clone()
        }
    };
    let down = stats(at.clone()).await;
    assert_eq!(down["upstream"], "web", "{down}");
    assert_eq!(
        down["sessions_up"], 0.0,
        "mcpq stats says it is down: {down}"
    );

    // server-everything in its streamable-HTTP mode comes up on that port.
    let _server = everything_over_http(port);
    let listed = tokio::time::timeout(Duration::from_secs(40), async {
        loop {
            // A new session each time: a client may cache a list for its `ttlMs`.
            let fresh = connect(d.addr, Recorder::default()).await;
            let tools = fresh.list_all_tools().await.unwrap();
            let _ = fresh.cancel().await;
            let mut names: Vec<String> = tools
                .iter()
                .filter(|t| t.name.starts_with("web_"))
                .map(|t| t.name.to_string())
                .collect();
            if !names.is_empty() {
                names.sort();
                return names;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("the upstream's tools are listed once it answers");
    assert_eq!(listed, ["web_echo", "web_get-sum"]);
    let echoed = client
        .call_tool(params("web_echo", json!({"message": "over http"})))
        .await
        .unwrap();
    assert_eq!(text(&echoed), "Echo: over http");
    let scraped = scrape(metrics).await;
    assert!(
        scraped.contains("mcpq_upstream_sessions_up{upstream=\"web\"} 1")
            && scraped.contains("mcpq_upstream_tools{upstream=\"web\"} 2"),
        "{scraped}"
    );
    let up = stats(at).await;
    assert_eq!(
        (up["sessions_up"].as_f64(), up["tools"].as_f64()),
        (Some(1.0), Some(2.0)),
        "{up}"
    );
    client.cancel().await.unwrap();
}

/// The Python SDK server of tests/fixtures/upstream_fixture.py as upstream `fx`, its
/// events in `dir/events`; `extra` adds keys to `[upstreams.fx]`.
fn fixture_upstream(dir: &std::path::Path, extra: &str) -> String {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python3");
    format!(
        r#"
[upstreams.fx]
command = ["{python}", "{fixture}", "{dir}"]
kill_grace_secs = 1
{extra}

[upstreams.fx.tools.hang]
timeout_secs = 2
max_attempts = 1

[upstreams.fx.tools.grow]
mode = "sync"
"#,
        python = python.display(),
        fixture = fixtures().join("upstream_fixture.py").display(),
        dir = dir.display(),
    )
}

/// The fixture over streamable HTTP (stateless, the 2026-07-28 revision) on `port`.
fn fixture_over_http(dir: &std::path::Path, port: u16) -> tokio::process::Child {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python3");
    tokio::process::Command::new(python)
        .arg(fixtures().join("upstream_fixture.py"))
        .arg(dir)
        .arg(port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

fn events(dir: &std::path::Path) -> String {
    std::fs::read_to_string(dir.join("events")).unwrap_or_default()
}

#[tokio::test]
async fn a_worker_process_runs_upstream_jobs_and_restarts_a_server_that_hangs() {
    let dir = tempfile::tempdir().unwrap();
    let env =
        TestEnv::new(&fixture_upstream(dir.path(), "")).set("MCPQ__SERVER__EMBEDDED_WORKERS", "0");
    let d = env.spawn_daemon().await;
    let w = env.spawn_worker(1).await;
    let client = connect(d.addr, Recorder::default()).await;

    let counted = client
        .call_tool(params("fx_count", json!({"note": "one"})))
        .await
        .unwrap();
    assert_eq!(counted.is_error, Some(false), "{counted:?}");
    assert_eq!(text(&counted), "counted one");
    assert_eq!(
        counted.structured_content,
        Some(json!({"result": "counted one"})),
        "the upstream's structured content passes through"
    );
    let before = children(w.pid());
    assert_eq!(before.len(), 1, "the worker's own session: {before:?}");

    // A server stuck in a call: the attempt times out, the server answers no ping within
    // its kill grace, so its process group is killed and the pool starts it again.
    let hung = client
        .call_tool(params("fx_hang", json!({})))
        .await
        .unwrap();
    assert_eq!(hung.is_error, Some(true), "{hung:?}");
    eventually(
        Duration::from_secs(30),
        "the stuck server is replaced",
        || {
            let now = children(w.pid());
            let first = before[0];
            async move { now.len() == 1 && now[0] != first }
        },
    )
    .await;
    let again = client
        .call_tool(params("fx_count", json!({"note": "two"})))
        .await
        .unwrap();
    assert_eq!(text(&again), "counted two", "{again:?}");
    assert_eq!(events(dir.path()).matches("count ").count(), 2);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_cancelled_job_cancels_its_upstream_call() {
    let dir = tempfile::tempdir().unwrap();
    let env = TestEnv::new(&fixture_upstream(dir.path(), ""));
    let d = env.spawn_daemon().await;
    let mut c = env.client(&d).await;
    let r = c.call("fx_slow", args(r#"{"seconds": 60}"#)).await.unwrap();
    let id = job_id(&r);
    eventually(Duration::from_secs(20), "the upstream call started", || {
        let e = events(dir.path());
        async move { e.contains("slow start") }
    })
    .await;
    c.call("cancel_job", args(&format!(r#"{{"job_id":"{id}"}}"#)))
        .await
        .unwrap();
    eventually(
        Duration::from_secs(20),
        "notifications/cancelled reached the upstream",
        || {
            let e = events(dir.path());
            async move { e.contains("slow cancelled") }
        },
    )
    .await;
    let done = poll_until_finished(&mut c, &id, Duration::from_secs(20)).await;
    assert!(done.raw.contains("cancel"), "{}", done.raw);
}

#[tokio::test]
async fn a_list_changed_upstream_is_listed_again_and_bad_output_is_a_job_error() {
    let dir = tempfile::tempdir().unwrap();
    let env = TestEnv::new(&fixture_upstream(dir.path(), ""));
    let d = env.spawn_daemon().await;
    let client = connect(d.addr, Recorder::default()).await;
    let grown = client
        .call_tool(params("fx_grow", json!({})))
        .await
        .unwrap();
    assert_eq!(text(&grown), "grown", "{grown:?}");
    eventually(Duration::from_secs(20), "fx_extra is listed", || async {
        let fresh = connect(d.addr, Recorder::default()).await;
        let tools = fresh.list_all_tools().await.unwrap();
        let _ = fresh.cancel().await;
        tools.iter().any(|t| t.name == "fx_extra")
    })
    .await;
    let extra = client
        .call_tool(params("fx_extra", json!({})))
        .await
        .unwrap();
    assert_eq!(text(&extra), "extra", "{extra:?}");

    // Two MiB of result against the 1 MiB default cap: the job fails, clearly.
    let huge = client.call_tool(params("fx_huge", json!({}))).await;
    let e = format!("{huge:?}");
    assert!(e.contains("output_too_large"), "{e}");
    // A result against the tool's own output schema, and a response that is no tools/call
    // result: each a clear job error.
    let lied = format!("{:?}", client.call_tool(params("fx_liar", json!({}))).await);
    assert!(lied.contains("output_schema"), "{lied}");
    let garbled = format!(
        "{:?}",
        client.call_tool(params("fx_garble", json!({}))).await
    );
    assert!(garbled.contains("invalid_output"), "{garbled}");
    // And the daemon and the session are fine.
    let counted = client
        .call_tool(params("fx_count", json!({"note": "after"})))
        .await
        .unwrap();
    assert_eq!(text(&counted), "counted after");
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_job_queued_under_one_listing_is_not_run_against_a_changed_tool() {
    let dir = tempfile::tempdir().unwrap();
    let env =
        TestEnv::new(&fixture_upstream(dir.path(), "")).set("MCPQ__SERVER__EMBEDDED_WORKERS", "0");
    let d = env.spawn_daemon().await;
    let mut c = env.client(&d).await;
    let old = job_id(
        &c.call("fx_count", args(r#"{"note": "old"}"#))
            .await
            .unwrap(),
    );

    // A new release of the server: the daemon's server process is replaced, the pool
    // starts the new one, and the daemon lists the changed `count`.
    std::fs::write(dir.path().join("v2"), "").unwrap();
    let first = children(d.proc.pid());
    assert_eq!(first.len(), 1, "{first:?}");
    std::process::Command::new("kill")
        .args(["-9", &first[0].to_string()])
        .status()
        .unwrap();
    eventually(
        Duration::from_secs(30),
        "the daemon lists count v2",
        || async {
            let fresh = connect(d.addr, Recorder::default()).await;
            let tools = fresh.list_all_tools().await.unwrap();
            let _ = fresh.cancel().await;
            tools
                .iter()
                .find(|t| t.name == "fx_count")
                .is_some_and(|t| {
                    t.input_schema
                        .get("properties")
                        .is_some_and(|p| p.get("times").is_some())
                })
        },
    )
    .await;
    let new = job_id(
        &c.call("fx_count", args(r#"{"note": "new", "times": 2}"#))
            .await
            .unwrap(),
    );

    // A worker of the new release runs the new job; the old one waits for a worker that
    // has its definition.
    let _w = env.spawn_worker(1).await;
    let done = poll_until_finished(&mut c, &new, Duration::from_secs(30)).await;
    assert!(done.raw.contains("counted new v2"), "{}", done.raw);
    let (_, out, _) = env.run(&["jobs", "show", &old, "--json"]).await;
    let shown: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    assert_eq!(shown["state"], "queued", "{out}");
    assert!(!events(dir.path()).contains("count old"), "the old job ran");
}

#[tokio::test]
async fn a_worker_killed_while_an_upstream_task_runs_is_resumed_from_the_same_task() {
    // The upstream: another mcpq daemon, a tasks-capable MCP server (2026-07-28 tasks
    // extension), whose `work` job tool records each run and waits for a gate.
    let dir = tempfile::tempdir().unwrap();
    let (count, gate) = (dir.path().join("count"), dir.path().join("gate"));
    let upstream = TestEnv::new(&format!(
        "[tools.work]\ndescription = \"Waits for its gate\"\ncommand = [\"{}\"]\nenv = {{ COUNT = \"{}\", GATE = \"{}\" }}\n",
        fixtures().join("counted_gate.sh").display(),
        count.display(),
        gate.display()
    ));
    let u = upstream.spawn_daemon().await;
    let token = dir.path().join("token");
    std::fs::write(&token, TOKEN).unwrap();
    let env = TestEnv::new(&format!(
        "[upstreams.up]\nurl = \"http://{}/mcp\"\nbearer_token_file = \"{}\"\nallow = [\"work\"]\ntimeout_secs = 120\n",
        u.addr,
        token.display()
    ))
    .set("MCPQ__SERVER__EMBEDDED_WORKERS", "0")
    .set("MCPQ__JOBS__LEASE_MS", "1000")
    .set("MCPQ__JOBS__HEARTBEAT_MS", "100")
    .set("MCPQ__JOBS__RESCUE_INTERVAL_MS", "100")
    .set("MCPQ__JOBS__RETRY_BASE_MS", "100");
    let d = env.spawn_daemon().await;
    let mut c = env.client(&d).await;
    let job = job_id(&c.call("up_work", args("{}")).await.unwrap());
    let mut w1 = env.spawn_worker(1).await;
    let pool = db(&env.db_path()).await;
    let kept = || async {
        sqlx::query_as::<_, (i64, String, Option<String>)>(
            "SELECT attempt, state, request_state FROM jobs WHERE id = ?",
        )
        .bind(&job)
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    eventually(
        Duration::from_secs(30),
        "the upstream task runs and its id is kept",
        || async {
            std::fs::read_to_string(&count).is_ok_and(|c| c.lines().count() == 1)
                && kept()
                    .await
                    .2
                    .is_some_and(|s| s.contains("io.mcpq/upstream_task"))
        },
    )
    .await;

    // kill -9 of the worker while the upstream's task runs: the next attempt, on another
    // worker, polls the same task instead of calling `work` again.
    w1.kill9().await;
    let _w2 = env.spawn_worker(1).await;
    eventually(Duration::from_secs(30), "a second attempt runs", || async {
        let (attempt, state, _) = kept().await;
        attempt == 2 && state == "running"
    })
    .await;
    std::fs::write(&gate, "").unwrap();
    let done = poll_until_finished(&mut c, &job, Duration::from_secs(30)).await;
    assert_eq!(done.status, mcpq::envelope::Status::Done, "{}", done.raw);
    assert!(done.raw.contains("released"), "{}", done.raw);
    assert_eq!(
        std::fs::read_to_string(&count).unwrap().lines().count(),
        1,
        "the upstream's tool ran once"
    );
    let upstream_jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE tool = 'work'")
        .fetch_one(&db(&upstream.db_path()).await)
        .await
        .unwrap();
    assert_eq!(upstream_jobs, 1, "the upstream was called once");
}

#[tokio::test]
async fn a_schedule_of_an_upstream_down_at_start_runs_once_the_upstream_lists_its_tool() {
    let port = free_port();
    let env = TestEnv::new(&format!(
        r#"
[upstreams.web]
url = "http://127.0.0.1:{port}/mcp"
allow = ["echo"]

[schedules.ping]
cron = "* * * * * *"
timezone = "UTC"
tool = "web_echo"
client = "client-001"
arguments = {{ message = "tick" }}
"#
    ));
    // The upstream is down: the daemon starts all the same (its schedule's tool is not
    // listed yet, which is no configuration error).
    let d = env.spawn_daemon().await;
    let pool = db(&env.db_path()).await;
    let ran = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM jobs WHERE tool = 'web_echo' AND state = 'succeeded'",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    assert_eq!(ran().await, 0);
    let _server = everything_over_http(port);
    eventually(
        Duration::from_secs(40),
        "a tick's job ran on the upstream",
        || async { ran().await > 0 },
    )
    .await;
    let result: String = sqlx::query_scalar(
        "SELECT result FROM jobs WHERE tool = 'web_echo' AND state = 'succeeded'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(result.contains("Echo: tick"), "{result}");
    drop(d);
}

#[tokio::test]
async fn an_upstreams_question_is_answered_by_the_mcpq_client_in_both_eras() {
    let dir = tempfile::tempdir().unwrap();
    let env = TestEnv::new(&fixture_upstream(
        dir.path(),
        "\n[upstreams.fx.tools.confirm]\nmode = \"sync\"\n",
    ));
    let d = env.spawn_daemon().await;
    for (command, era) in [("ask", "2026-07-28"), ("legacy-ask", "2025-11-25")] {
        // The Python SDK's client, whose elicitation callback answers "Ada" and whose
        // sampling callback writes "Nice to meet you.": the upstream's
        // InputRequiredResult reaches it through mcpq (a multi-round result, or on 2025-11-25
        // an elicitation request on the call's stream), and its answer goes back upstream.
        let r = sdk_ask(command, d.addr, "fx_confirm", &json!({})).await;
        assert_eq!(r["protocol"], era, "{r}");
        assert_eq!(r["is_error"], false, "{r}");
        assert_eq!(r["text"], "Hello, Ada! Nice to meet you.", "{r}");
    }
    // Each era: one round that asked, one answered with the upstream's own state.
    let seen = events(dir.path());
    assert_eq!(seen.matches("confirm asks").count(), 2, "{seen}");
    assert_eq!(
        seen.matches("confirm answered fixture-state").count(),
        2,
        "{seen}"
    );
}

#[tokio::test]
async fn server_everythings_elicitation_and_sampling_are_answered_by_the_mcpq_client_in_both_eras()
{
    // server-everything asks the 2025-11-25 way: during the call, its own request to its
    // client (mcpq), which parks the call and asks its own client the same. Over stdio,
    // and over streamable HTTP, where its request comes on the call's SSE stream.
    let port = free_port();
    let _server = everything_over_http(port);
    let tools = r#"allow = ["trigger-elicitation-request", "trigger-sampling-request"]
tools = { trigger-elicitation-request = { mode = "sync" }, trigger-sampling-request = { mode = "sync" } }
"#;
    let env = TestEnv::new(&format!(
        "[upstreams.stdio]\ncommand = [\"{node}\", \"{everything}\", \"stdio\"]\n{tools}\n\
         [upstreams.http]\nurl = \"http://127.0.0.1:{port}/mcp\"\n{tools}",
        node = node(),
        everything = everything()
    ));
    let d = env.spawn_daemon().await;
    // The HTTP server may come up after the daemon: its tools are listed once it answers.
    tokio::time::timeout(Duration::from_secs(40), async {
        loop {
            let fresh = connect(d.addr, Recorder::default()).await;
            let tools = fresh.list_all_tools().await.unwrap();
            let _ = fresh.cancel().await;
            if tools.iter().filter(|t| t.name.contains("trigger-")).count() == 4 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("both upstreams list their asking tools");
    let cases = [
        ("trigger-elicitation-request", json!({}), "- Name: Ada"),
        (
            "trigger-sampling-request",
            json!({"prompt": "Say hello"}),
            "Nice to meet you.",
        ),
    ];
    for upstream in ["stdio", "http"] {
        for (command, era) in [("ask", "2026-07-28"), ("legacy-ask", "2025-11-25")] {
            for (tool, args, expected) in &cases {
                let tool = format!("{upstream}_{tool}");
                let r = sdk_ask(command, d.addr, &tool, args).await;
                assert_eq!(r["protocol"], era, "{r}");
                assert_eq!(r["is_error"], false, "{r}");
                assert!(
                    r["texts"].as_str().unwrap().contains(expected),
                    "{command} {tool}: {r}"
                );
            }
        }
    }
}

const TASKS: &str = "io.modelcontextprotocol/tasks";

/// `tests/mcp_sdk_tasks.py COMMAND` (`ask` or `legacy-ask`): the Python SDK's client calls
/// `tool` with `args` through mcpq and answers what it is asked; its printed JSON line.
async fn sdk_ask(command: &str, addr: std::net::SocketAddr, tool: &str, args: &Value) -> Value {
    common::sdk_client(addr, TOKEN, command, &[tool, &args.to_string()]).await
}

/// One 2026-07-28 request to mcpq's `/mcp` declaring `caps`; the JSON-RPC response.
async fn modern_post(
    addr: std::net::SocketAddr,
    method: &str,
    params: Value,
    caps: Value,
) -> Value {
    let (headers, body) = modern_request(TOKEN, method, params, caps);
    let mut req = reqwest::Client::new()
        .post(format!("http://{addr}/mcp"))
        .header("Content-Type", "application/json")
        .header("Accept", "application/json, text/event-stream")
        .body(body);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let text = req.send().await.unwrap().text().await.unwrap();
    // A JSON body, or an SSE stream whose last event is the response.
    let last = text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("data:"))
        .unwrap_or(&text);
    serde_json::from_str(last.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Polls a task until `done(task)`; the last task seen.
async fn task_until(addr: std::net::SocketAddr, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut t = Value::Null;
    for _ in 0..600 {
        let caps = json!({"extensions": {TASKS: {}}});
        t = modern_post(addr, "tasks/get", json!({ "taskId": id }), caps).await["result"].clone();
        if done(&t) {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("task {id} never got there: {t}");
}

#[tokio::test]
async fn an_upstream_job_that_asks_outlives_its_worker_and_its_client_answers_once() {
    let env = TestEnv::new(&format!(
        "[upstreams.everything]\ncommand = [\"{}\", \"{}\", \"stdio\"]\nallow = [\"trigger-elicitation-request\"]\n",
        node(),
        everything()
    ))
    .set("MCPQ__SERVER__EMBEDDED_WORKERS", "0");
    let d = env.spawn_daemon().await;
    let mut w = env.spawn_worker(1).await;
    let caps = json!({"elicitation": {}, "extensions": {TASKS: {}}});
    let call = json!({"name": "everything_trigger-elicitation-request", "arguments": {}});
    let created = modern_post(d.addr, "tools/call", call, caps.clone()).await;
    let id = created["result"]["taskId"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"))
        .to_string();
    // The upstream's question, asked during its call, is the job's question.
    let t = task_until(d.addr, &id, |t| t["status"] != "working").await;
    assert_eq!(t["status"], "input_required", "{t}");
    let asked = &t["inputRequests"]["upstream"];
    assert_eq!(asked["method"], "elicitation/create", "{t}");
    assert_eq!(
        asked["params"]["requestedSchema"]["required"],
        json!(["name"]),
        "{t}"
    );

    // The worker holding the parked call dies (its stdio server with it); the question is
    // durable. Another worker takes the answered job: the call starts again, the upstream
    // asks the same question, and the client's one answer is given to it again.
    w.kill9().await;
    let _w = env.spawn_worker(1).await;
    let answer = json!({"taskId": id, "inputResponses": {"upstream": {"action": "accept", "content": {"name": "Ada"}}}});
    let r = modern_post(d.addr, "tasks/update", answer, caps).await;
    assert_eq!(r["result"]["resultType"], "complete", "{r}");
    let t = task_until(d.addr, &id, |t| {
        t["status"] != "working" && t["status"] != "input_required"
    })
    .await;
    assert_eq!(t["status"], "completed", "{t}");
    let texts = t["result"]["content"].to_string();
    assert!(texts.contains("- Name: Ada"), "{t}");
}

#[tokio::test]
async fn an_upstream_tasks_question_is_answered_by_the_mcpq_client_and_the_task_goes_on() {
    // The upstream: another mcpq daemon, whose `confirm` job tool asks its client to
    // confirm mid-task (its task waits in input_required).
    let dir = tempfile::tempdir().unwrap();
    let upstream = TestEnv::new(&format!(
        "[tools.confirm]\ndescription = \"Asks to confirm mid-task\"\ncommand = [\"/usr/bin/python3\", \"{}\", \"confirm_delete\"]\n",
        fixtures().join("../conformance/fixtures/ask.py").display()
    ));
    let u = upstream.spawn_daemon().await;
    let token = dir.path().join("token");
    std::fs::write(&token, TOKEN).unwrap();
    let env = TestEnv::new(&format!(
        "[upstreams.up]\nurl = \"http://{}/mcp\"\nbearer_token_file = \"{}\"\nallow = [\"confirm\"]\n",
        u.addr,
        token.display()
    ))
    .set("MCPQ__SERVER__EMBEDDED_WORKERS", "0");
    let d = env.spawn_daemon().await;
    let mut w = env.spawn_worker(1).await;
    let caps = json!({"elicitation": {}, "extensions": {TASKS: {}}});
    let call = json!({"name": "up_confirm", "arguments": {"filename": "f.txt"}});
    let created = modern_post(d.addr, "tools/call", call, caps.clone()).await;
    let id = created["result"]["taskId"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"))
        .to_string();
    // The upstream task's question is mcpq's job's question.
    let t = task_until(d.addr, &id, |t| t["status"] != "working").await;
    assert_eq!(t["status"], "input_required", "{t}");
    assert_eq!(
        t["inputRequests"]["confirm"]["params"]["message"], "Delete f.txt?",
        "{t}"
    );
    // The upstream's task waits on upstream, whatever happens to the worker that asked.
    w.kill9().await;
    let _w = env.spawn_worker(1).await;
    let answer = json!({"taskId": id, "inputResponses": {"confirm": {"action": "accept", "content": {"confirm": true}}}});
    let r = modern_post(d.addr, "tasks/update", answer, caps).await;
    assert_eq!(r["result"]["resultType"], "complete", "{r}");
    let t = task_until(d.addr, &id, |t| {
        t["status"] != "working" && t["status"] != "input_required"
    })
    .await;
    assert_eq!(t["status"], "completed", "{t}");
    assert_eq!(t["result"]["content"][0]["text"], "deleted f.txt", "{t}");
    // One task upstream: the answers went to the task that asked, not to a new call.
    let (code, out, _) = upstream.run(&["jobs", "list", "--json"]).await;
    assert_eq!(code, 0);
    let jobs: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(jobs.as_array().map(Vec::len), Some(1), "{jobs}");
    assert_eq!(jobs[0]["state"], "succeeded", "{jobs}");
}

#[tokio::test]
async fn a_stateless_http_upstream_is_called_by_mcpq_itself_with_progress_questions_and_cancel() {
    // A 2026-07-28 upstream over plain HTTP gets its calls straight from mcpq's own
    // client (tools/upstream/direct.rs); the session around them stays rmcp's.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _server = fixture_over_http(dir.path(), port);
    let env = TestEnv::new(&format!(
        r#"
[upstreams.fx]
url = "http://127.0.0.1:{port}/mcp"
allow = ["whoami", "steps", "confirm", "slow", "huge", "count"]

[upstreams.fx.tools.whoami]
mode = "sync"

[upstreams.fx.tools.confirm]
mode = "sync"
"#
    ));
    let d = env.spawn_daemon().await;
    until_listed(d.addr, "fx_whoami").await;
    let rec = Recorder::default();
    let client = connect(d.addr, rec.clone()).await;

    // A sync call: the request the upstream answers is mcpq's own.
    let me = client
        .call_tool(params("fx_whoami", json!({})))
        .await
        .unwrap();
    assert!(text(&me).starts_with("request mcpq-"), "{me:?}");
    assert!(text(&me).ends_with(" on 2026-07-28"), "{me:?}");

    // A job whose upstream answers on an SSE stream: each progress step reaches the held call.
    let done = client
        .call_tool(params("fx_steps", json!({"n": 3, "pause": 1.0})))
        .await
        .unwrap();
    assert_eq!(text(&done), "took 3 steps", "{done:?}");
    let seen = rec.seen();
    for step in [1.0 / 3.0, 2.0 / 3.0] {
        assert!(
            seen.iter().any(|p| (p - step).abs() < 0.01),
            "step {step} not seen in {seen:?}"
        );
    }

    // The upstream asks with a multi-round result; mcpq's client answers, in both eras.
    for (command, era) in [("ask", "2026-07-28"), ("legacy-ask", "2025-11-25")] {
        let r = sdk_ask(command, d.addr, "fx_confirm", &json!({})).await;
        assert_eq!(r["protocol"], era, "{r}");
        assert_eq!(r["text"], "Hello, Ada! Nice to meet you.", "{r}");
    }

    // Over the output cap: a clear job error, and the daemon goes on.
    let huge = format!("{:?}", client.call_tool(params("fx_huge", json!({}))).await);
    assert!(huge.contains("output_too_large"), "{huge}");

    // A cancelled job: the upstream's handler of the call is cancelled.
    let mut c = env.client(&d).await;
    let r = c.call("fx_slow", args(r#"{"seconds": 60}"#)).await.unwrap();
    let id = job_id(&r);
    eventually(Duration::from_secs(20), "the upstream call started", || {
        let e = events(dir.path());
        async move { e.contains("slow start") }
    })
    .await;
    c.call("cancel_job", args(&format!(r#"{{"job_id":"{id}"}}"#)))
        .await
        .unwrap();
    eventually(
        Duration::from_secs(20),
        "the cancel reached the upstream",
        || {
            let e = events(dir.path());
            async move { e.contains("slow cancelled") }
        },
    )
    .await;
    let counted = client
        .call_tool(params("fx_count", json!({"note": "after"})))
        .await
        .unwrap();
    assert_eq!(text(&counted), "counted after");
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn a_stateless_upstream_pinned_to_2025_is_called_by_mcpq_itself_in_that_revision() {
    // `revision = "2025-11-25"`: the session takes the `initialize` handshake although the
    // server speaks 2026-07-28 too; the server names no session, so calls go straight
    // from mcpq's own client, without the 2026 envelope.
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let _server = fixture_over_http(dir.path(), port);
    let env = TestEnv::new(&format!(
        r#"
[upstreams.fx]
url = "http://127.0.0.1:{port}/mcp"
revision = "2025-11-25"
allow = ["whoami", "steps"]

[upstreams.fx.tools.whoami]
mode = "sync"
"#
    ));
    let d = env.spawn_daemon().await;
    until_listed(d.addr, "fx_whoami").await;
    let rec = Recorder::default();
    let client = connect(d.addr, rec.clone()).await;
    let me = client
        .call_tool(params("fx_whoami", json!({})))
        .await
        .unwrap();
    assert!(text(&me).starts_with("request mcpq-"), "{me:?}");
    assert!(text(&me).ends_with(" on 2025-11-25"), "{me:?}");

    // A job answered on the call's SSE stream: its progress reaches the held call (steps a
    // heartbeat apart, as the worker persists the latest progress with each).
    let done = client
        .call_tool(params("fx_steps", json!({"n": 2, "pause": 1.0})))
        .await
        .unwrap();
    assert_eq!(text(&done), "took 2 steps", "{done:?}");
    let seen = rec.seen();
    assert!(
        seen.iter().any(|p| (p - 0.5).abs() < 0.01),
        "step 1 of 2 not seen in {seen:?}"
    );
    client.cancel().await.unwrap();
}
