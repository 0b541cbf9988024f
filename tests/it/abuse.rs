//! Abuse cases: each test is one finding of issue 20 (an outside review of `/mcp`, the
//! tools and the limits), tried against the real binary the way a hostile but
//! authenticated client (or a careless operator's shell) would: raw sockets that stop
//! reading or leave, answers nobody asked for, descriptors left open, names that rebind.
//! Each one pins the defect: it fails before the fix and passes after it. The fixes, with
//! the metric names, settings and error texts these tests expect, are described in the
//! issue's fix notes (`abandoned_…` = item 1, and so on in the order of the issue).
//!
//! Nothing here waits for a race to go one way: where a test needs the daemon to have done
//! something, it waits for the daemon to show it (a gauge, a closed socket, a task status),
//! with a generous bound that only a hung daemon reaches.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::common::*;
use serde_json::{json, Value};
use sha2::Digest;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const TOKEN: &str = "dev-only-mcp-token-00000000000000000000000000000000";
/// An MCP-only client (a token, no signing key).
const OTHER_TOKEN: &str = "client-three-mcp-token-000000000000000000000000000";
const MODERN: &str = "2026-07-28";
const LEGACY: &str = "2025-11-25";
const TASKS: &str = "io.modelcontextprotocol/tasks";
/// The bound of every "eventually": only a daemon that never does it reaches it.
const BOUND: Duration = Duration::from_secs(30);

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

fn ask_py() -> String {
    fixture("../conformance/fixtures/ask.py")
}

/// The second MCP client (client-003, token only), for per-client checks.
fn other_client() -> String {
    let other = hex::encode(sha2::Sha256::digest(OTHER_TOKEN.as_bytes()));
    format!("[clients.client-003]\ntoken_sha256 = \"{other}\"\n\n")
}

/// A job tool that runs until `gate` exists, reporting no progress.
fn gate_tool(name: &str, gate: &Path) -> String {
    format!(
        "[tools.{name}]\ndescription = \"Runs until the test opens its gate\"\n\
         command = [\"{}\"]\nenv = {{ PATH = \"/usr/bin:/bin\", GATE = \"{}\" }}\n\n",
        fixture("gate.sh"),
        gate.display()
    )
}

/// Opens a gate (lets its tool finish) when dropped, so that a failed test leaves no tool
/// process waiting behind it.
struct Gate(PathBuf);

impl Gate {
    fn open(&self) {
        std::fs::write(&self.0, b"open").unwrap();
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.0, b"open");
    }
}

// ---------------------------------------------------------------------------------------
// Raw HTTP: a request written by hand, a response read as it arrives.

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn request_bytes(addr: SocketAddr, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut req = format!(
        "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("accept"))
    {
        req.push_str("Accept: application/json, text/event-stream\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    req.into_bytes()
}

fn legacy_headers(auth: &str) -> Vec<(&str, &str)> {
    vec![("Authorization", auth), ("MCP-Protocol-Version", LEGACY)]
}

fn legacy_body(method: &str, params: Value) -> String {
    json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params}).to_string()
}

/// A response read as it arrives: the head, then one JSON-RPC message per SSE event (or
/// the one JSON body).
struct Response {
    sock: TcpStream,
    head: String,
    chunked: bool,
    sse: bool,
    /// Body bytes not yet decoded (chunk framing included).
    raw: Vec<u8>,
    /// Decoded body text, and how much of it was handed out as messages.
    text: String,
    used: usize,
    done: bool,
}

impl Response {
    /// Sends `req` on `sock` and reads the response head.
    async fn start(mut sock: TcpStream, req: &[u8]) -> Response {
        sock.write_all(req).await.unwrap();
        let mut buf = Vec::new();
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(BOUND, sock.read(&mut chunk))
                .await
                .expect("a response head in time")
                .unwrap();
            assert!(
                n > 0,
                "connection closed before a response head: {:?}",
                String::from_utf8_lossy(&buf)
            );
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let lower = head.to_ascii_lowercase();
        Response {
            sock,
            chunked: lower.contains("transfer-encoding: chunked"),
            sse: lower.contains("text/event-stream"),
            head,
            raw: buf[head_end + 4..].to_vec(),
            text: String::new(),
            used: 0,
            done: false,
        }
    }

    async fn post(addr: SocketAddr, headers: &[(&str, &str)], body: &str) -> Response {
        let sock = TcpStream::connect(addr).await.unwrap();
        Response::start(sock, &request_bytes(addr, headers, body)).await
    }

    fn status(&self) -> u16 {
        self.head.split(' ').nth(1).unwrap().parse().unwrap()
    }

    fn decode(&mut self) {
        if !self.chunked {
            self.text.push_str(&String::from_utf8_lossy(&self.raw));
            self.raw.clear();
            return;
        }
        loop {
            let Some(eol) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                return;
            };
            let size_line = String::from_utf8_lossy(&self.raw[..eol]).into_owned();
            let size = usize::from_str_radix(size_line.trim(), 16).unwrap_or(0);
            if size == 0 {
                self.done = true;
                self.raw.clear();
                return;
            }
            if self.raw.len() < eol + 2 + size + 2 {
                return;
            }
            let data = self.raw[eol + 2..eol + 2 + size].to_vec();
            self.text.push_str(&String::from_utf8_lossy(&data));
            self.raw.drain(..eol + 2 + size + 2);
        }
    }

    /// The next message; `None` once the response (or the connection) ended. Panics if
    /// nothing comes within `within`.
    async fn next(&mut self, within: Duration, what: &str) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            self.decode();
            if self.sse {
                if let Some(end) = self.text[self.used..].find("\n\n") {
                    let event = self.text[self.used..self.used + end].to_string();
                    self.used += end + 2;
                    if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) {
                        return Some(serde_json::from_str(data).unwrap());
                    }
                    continue;
                }
            } else if self.done && self.used < self.text.len() {
                let body = self.text[self.used..].to_string();
                self.used = self.text.len();
                return Some(serde_json::from_str(&body).unwrap());
            }
            if self.done {
                return None;
            }
            let mut chunk = [0u8; 8192];
            let n = match tokio::time::timeout_at(deadline, self.sock.read(&mut chunk)).await {
                Ok(r) => r.unwrap_or(0),
                Err(_) => panic!("{what}: nothing within {within:?}; so far {:?}", self.text),
            };
            if n == 0 {
                self.done = true;
                if !self.sse && self.used < self.text.len() {
                    continue;
                }
                return None;
            }
            self.raw.extend_from_slice(&chunk[..n]);
        }
    }

    /// Every message until the response ends.
    async fn rest(&mut self, what: &str) -> Vec<Value> {
        let mut out = Vec::new();
        while let Some(m) = self.next(BOUND, what).await {
            out.push(m);
        }
        out
    }
}

/// One whole exchange: status and every message.
async fn exchange(addr: SocketAddr, headers: &[(&str, &str)], body: &str) -> (u16, Vec<Value>) {
    let mut r = Response::post(addr, headers, body).await;
    let status = r.status();
    let messages = r.rest("a whole answer").await;
    (status, messages)
}

/// A 2026-07-28 request declaring `caps`.
async fn modern(
    addr: SocketAddr,
    token: &str,
    method: &str,
    params: Value,
    caps: Value,
) -> (u16, Value) {
    let (headers, body) = modern_request(token, method, params, caps);
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, messages) = exchange(addr, &headers, &body).await;
    (status, messages.last().cloned().unwrap_or(Value::Null))
}

async fn legacy(addr: SocketAddr, token: &str, method: &str, params: Value) -> (u16, Value) {
    let auth = bearer(token);
    let (status, messages) =
        exchange(addr, &legacy_headers(&auth), &legacy_body(method, params)).await;
    (status, messages.last().cloned().unwrap_or(Value::Null))
}

/// A raw GET of `/metrics` with the given Host header: (status line, body); an empty
/// status line when the connection was closed without an answer.
async fn scrape_as(addr: SocketAddr, host: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET /metrics HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(BOUND, s.read_to_end(&mut buf))
        .await
        .expect("the metrics listener answers or closes in time");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text.lines().next().unwrap_or("").to_string();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

async fn scrape(d: &Daemon) -> String {
    let addr = d.metrics.expect("metrics on");
    let (status, body) = scrape_as(addr, &addr.to_string()).await;
    assert!(status.contains(" 200 "), "{status}");
    body
}

/// An unlabelled metric's value, if the scrape has it.
fn metric(scrape: &str, name: &str) -> Option<f64> {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Waits until the unlabelled gauge `name` reads `want`.
async fn gauge_reaches(d: &Daemon, name: &str, want: f64, what: &str) {
    let deadline = tokio::time::Instant::now() + BOUND;
    loop {
        let body = scrape(d).await;
        let v = metric(&body, name);
        if v == Some(want) {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}: gauge {name} = {v:?}, want {want}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the peer closes `sock` (reads EOF or a reset), discarding anything sent.
async fn closed_by_peer(sock: &mut TcpStream, what: &str) {
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(BOUND, sock.read(&mut buf)).await {
            Err(_) => panic!("timed out waiting for {what}"),
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(_)) => {}
        }
    }
}

/// Starts `mcpq serve` as [`TestEnv::spawn_daemon`] does, with `adjust` applied to the
/// command (inherited descriptors, a wrapper).
async fn spawn_daemon_with(
    env: &TestEnv,
    wrapper: Option<(&str, &[&str])>,
    adjust: impl FnOnce(&mut tokio::process::Command),
) -> Daemon {
    let stderr_path = env.dir.path().join("daemon.log");
    let stderr = std::fs::File::create(&stderr_path).unwrap();
    let mut cmd = match wrapper {
        Some((program, leading)) => {
            let mut c = tokio::process::Command::new(program);
            c.args(leading).arg(BIN);
            c
        }
        None => tokio::process::Command::new(BIN),
    };
    cmd.arg("--config")
        .arg(&env.config)
        .arg("serve")
        .env("RUST_LOG", "debug,sqlx=warn,hyper=info")
        .envs(env.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true);
    adjust(&mut cmd);
    let mut child = cmd.spawn().expect("spawn mcpq serve");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut metrics = None;
    let line = loop {
        let line = tokio::time::timeout(BOUND, lines.next_line())
            .await
            .expect("daemon printed its address in time")
            .unwrap()
            .unwrap_or_else(|| {
                panic!(
                    "daemon exited before listening; log:\n{}",
                    std::fs::read_to_string(&stderr_path).unwrap_or_default()
                )
            });
        match line.strip_prefix("metrics on ") {
            Some(a) => metrics = Some(a.parse().unwrap()),
            None => break line,
        }
    };
    let addr = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .unwrap();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Daemon {
        addr,
        metrics,
        proc: Proc::new(child, stderr_path),
    }
}

/// Whether a process is gone (exited; a zombie counts as gone).
fn process_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// Kills the tool processes a test recorded, when dropped (a failed test leaves none).
struct Reap(Vec<i32>);

impl Drop for Reap {
    fn drop(&mut self) {
        for pid in &self.0 {
            if !process_gone(*pid) {
                // SAFETY: a plain kill of a process this test started (through the daemon).
                unsafe { libc::kill(*pid, libc::SIGKILL) };
            }
        }
    }
}

/// A signed answer's `result` as JSON.
fn result_of(r: &mcpq::envelope::VerifiedResponse) -> Value {
    mcpq::json::Json::Object(r.result.clone().unwrap_or_default()).to_serde()
}

/// The first value under `key`, at any depth (a tool's output sits under `result` in a
/// job's poll).
fn find_key(v: &Value, key: &str) -> Value {
    match v {
        Value::Object(o) => o
            .get(key)
            .cloned()
            .or_else(|| o.values().map(|x| find_key(x, key)).find(|x| !x.is_null()))
            .unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

fn text_of(result: &Value) -> String {
    result["content"][0]["text"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

// ---------------------------------------------------------------------------------------
// 1. Held SSE calls.

/// Issue 20, item 1: a held 2025 call closed by its client after the response head must
/// stop re-reading its job at once. What the fix exposes: the gauge `mcpq_mcp_held_calls`
/// (calls held open waiting for a job, streaming or not), which must fall back to 0 as soon
/// as the client has gone, while the job still runs.
#[tokio::test]
async fn abandoned_held_sse_call_stops_polling_when_the_client_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let gate_path = dir.path().join("gate");
    let env = TestEnv::new(&gate_tool("gated", &gate_path));
    let gate = Gate(gate_path);
    let d = env.spawn_daemon().await;
    let auth = bearer(TOKEN);
    let body = legacy_body(
        "tools/call",
        json!({"name": "gated", "arguments": {}, "_meta": {"progressToken": "p1"}}),
    );
    let held = Response::post(d.addr, &legacy_headers(&auth), &body).await;
    assert_eq!(held.status(), 200, "{}", held.head);
    assert!(
        held.sse,
        "a held call with a progressToken streams: {}",
        held.head
    );
    gauge_reaches(
        &d,
        "mcpq_mcp_held_calls",
        1.0,
        "the held call to be counted",
    )
    .await;
    // The client leaves after the head; its job runs on (the gate is shut).
    drop(held);
    gauge_reaches(
        &d,
        "mcpq_mcp_held_calls",
        0.0,
        "the abandoned held call to stop waiting for its job",
    )
    .await;
    gate.open();
}

/// Issue 20, item 1 (related): docs/MCP.md promises that a held call's first message names
/// its durable job, so a client that loses the connection can poll it. It must come at
/// once, not only when the tool reports progress (this tool reports none, and finishes
/// only when the test has read that first message).
#[tokio::test]
async fn a_held_sse_call_names_its_job_first_even_before_any_progress() {
    let dir = tempfile::tempdir().unwrap();
    let gate_path = dir.path().join("gate");
    let env = TestEnv::new(&gate_tool("gated", &gate_path));
    let gate = Gate(gate_path);
    let d = env.spawn_daemon().await;
    let auth = bearer(TOKEN);
    let body = legacy_body(
        "tools/call",
        json!({"name": "gated", "arguments": {}, "_meta": {"progressToken": "p1"}}),
    );
    let mut held = Response::post(d.addr, &legacy_headers(&auth), &body).await;
    let first = held
        .next(
            BOUND,
            "the first message of a held call, naming its job, while the job runs",
        )
        .await
        .expect("a message before the stream ends");
    assert_eq!(first["method"], "notifications/progress", "{first}");
    let job = first["params"]["_meta"]["io.mcpq/job_id"]
        .as_str()
        .unwrap_or_else(|| panic!("the first message names no job: {first}"))
        .to_string();
    assert!(
        first["params"]["message"]
            .as_str()
            .unwrap_or("")
            .contains(&job),
        "{first}"
    );
    gate.open();
    let rest = held.rest("the held call's result").await;
    let result = rest.last().expect("a result");
    assert_eq!(
        result["result"]["structuredContent"]["released"], true,
        "{result}"
    );
    assert_eq!(result["result"]["_meta"]["io.mcpq/job_id"], job.as_str());
}

// ---------------------------------------------------------------------------------------
// 2. 2025 questions bridged over a call's stream.

fn ask_tools() -> String {
    format!(
        "{}[tools.ask_name]\ndescription = \"Asks the client for a name, then greets\"\nmode = \"sync\"\n\
         command = [\"/usr/bin/python3\", \"{ask}\", \"elicitation\"]\n\n",
        other_client(),
        ask = ask_py()
    )
}

/// Opens a 2025-11-25 call of `ask_name` over SSE and reads the question it asks.
async fn asked(addr: SocketAddr, token: &str) -> (Response, Value) {
    let auth = bearer(token);
    let body = legacy_body(
        "tools/call",
        json!({"name": "ask_name", "arguments": {"pad": "x"}}),
    );
    let mut r = Response::post(addr, &legacy_headers(&auth), &body).await;
    let q = r
        .next(BOUND, "the tool's question on the call's stream")
        .await
        .expect("a question");
    (r, q)
}

/// Issue 20, item 2: a question whose stream the client closed must be dropped at once (its
/// arguments and task freed), not after the 300 s answer timeout. The fix counts pending
/// questions in the gauge `mcpq_mcp_pending_questions`.
#[tokio::test]
async fn an_abandoned_2025_question_is_dropped_when_its_stream_closes() {
    let env = TestEnv::new(&ask_tools());
    let d = env.spawn_daemon().await;
    let (stream, question) = asked(d.addr, TOKEN).await;
    assert_eq!(question["method"], "elicitation/create", "{question}");
    gauge_reaches(
        &d,
        "mcpq_mcp_pending_questions",
        1.0,
        "the question to be counted",
    )
    .await;
    drop(stream);
    gauge_reaches(
        &d,
        "mcpq_mcp_pending_questions",
        0.0,
        "the question of a closed stream to be dropped",
    )
    .await;
}

/// Issue 20, item 2: pending questions are capped per client
/// (`mcp.max_pending_questions_per_client`); a call over the cap gets a clear error instead
/// of one more question, and another client is not affected.
#[tokio::test]
async fn pending_2025_questions_are_capped_per_client() {
    let env = TestEnv::new(&ask_tools()).set("MCPQ__MCP__MAX_PENDING_QUESTIONS_PER_CLIENT", "2");
    let d = env.spawn_daemon().await;
    let (_a, qa) = asked(d.addr, TOKEN).await;
    let (_b, qb) = asked(d.addr, TOKEN).await;
    assert_eq!(qa["method"], "elicitation/create", "{qa}");
    assert_eq!(qb["method"], "elicitation/create", "{qb}");
    // The third question of the same client: refused, clearly.
    let auth = bearer(TOKEN);
    let body = legacy_body("tools/call", json!({"name": "ask_name", "arguments": {}}));
    let (status, messages) = exchange(d.addr, &legacy_headers(&auth), &body).await;
    assert!(
        !messages.iter().any(|m| m["method"] == "elicitation/create"),
        "a third pending question was asked (status {status}): {messages:?}"
    );
    let last = messages.last().cloned().unwrap_or(Value::Null);
    let why = last["error"]["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| text_of(&last["result"]));
    assert!(
        why.contains("pending") && why.contains("max_pending_questions_per_client"),
        "status {status}: {last}"
    );
    // Another client still gets its question.
    let (_c, qc) = asked(d.addr, OTHER_TOKEN).await;
    assert_eq!(qc["method"], "elicitation/create", "{qc}");
}

// ---------------------------------------------------------------------------------------
// 3. A client that stops reading a log stream.

/// Issue 20, item 3: a 2025 client takes a sync tool's log stream and stops reading. The
/// tool's timeout (2 s here) and its concurrency slot (1) must not depend on that client:
/// the tool is stopped at its timeout and the next caller gets the slot, not `busy`.
#[tokio::test]
async fn a_client_that_stops_reading_logs_cannot_stall_the_tools_timeout_or_slot() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let env = TestEnv::new(&format!(
        "[tools.flood]\ndescription = \"Logs a flood, then hangs\"\nmode = \"sync\"\n\
         timeout_secs = 2\nconcurrency = 1\nkill_grace_secs = 1\n\
         command = [\"/usr/bin/python3\", \"{}\"]\n\
         env = {{ PIDFILE = \"{}\" }}\n",
        fixture("log_flood.py"),
        pidfile.display()
    ));
    let d = env.spawn_daemon().await;
    let mut reap = Reap(Vec::new());
    // A reader with a tiny receive window that never reads.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let mut slow = sock.connect(d.addr).await.unwrap();
    let auth = bearer(TOKEN);
    slow.write_all(&request_bytes(
        d.addr,
        &legacy_headers(&auth),
        &legacy_body("tools/call", json!({"name": "flood", "arguments": {}})),
    ))
    .await
    .unwrap();
    let mut pid = 0;
    eventually(BOUND, "the flooding tool to start", || {
        let p = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.trim().parse().ok());
        if let Some(p) = p {
            pid = p;
        }
        async move { p.is_some() }
    })
    .await;
    reap.0.push(pid);
    eventually(
        BOUND,
        "the tool to be stopped at its 2 s timeout although its log reader stalled",
        || async move { process_gone(pid) },
    )
    .await;
    // The slot is free again: the next caller runs the tool (which times out in turn).
    let mut c = env.client(&d).await;
    let r = c.call("flood", args("{}")).await.unwrap();
    if let Ok(s) = std::fs::read_to_string(&pidfile) {
        if let Ok(p) = s.trim().parse() {
            reap.0.push(p);
        }
    }
    assert_ne!(r.error_code(), Some("busy"), "{}", r.raw);
    drop(slow);
}

// ---------------------------------------------------------------------------------------
// 4. Shedding under connection pressure.

/// Issue 20, item 4: with `server.max_connections = 8`, a held SSE call and 7 idle sockets:
/// shedding closes the idle sockets and must leave the held call alone (its response is
/// still streaming), which then ends with its result.
#[tokio::test]
async fn shedding_idle_connections_spares_a_connection_whose_response_is_still_streaming() {
    let dir = tempfile::tempdir().unwrap();
    let gate_path = dir.path().join("gate");
    let env =
        TestEnv::new(&gate_tool("gated", &gate_path)).set("MCPQ__SERVER__MAX_CONNECTIONS", "8");
    let gate = Gate(gate_path);
    let d = env.spawn_daemon().await;
    let auth = bearer(TOKEN);
    let body = legacy_body(
        "tools/call",
        json!({"name": "gated", "arguments": {}, "_meta": {"progressToken": "p1"}}),
    );
    let mut held = Response::post(d.addr, &legacy_headers(&auth), &body).await;
    assert!(held.sse, "{}", held.head);
    let mut idle = Vec::new();
    for _ in 0..7 {
        idle.push(TcpStream::connect(d.addr).await.unwrap());
    }
    // Every slot is taken: the daemon sheds the idle sockets.
    for s in &mut idle {
        closed_by_peer(s, "an idle socket to be shed under pressure").await;
    }
    gate.open();
    let messages = held.rest("the held call's result").await;
    assert!(
        messages
            .iter()
            .any(|m| m["result"]["structuredContent"]["released"] == true),
        "the held call was cut instead of answered: {messages:?}"
    );
}

// ---------------------------------------------------------------------------------------
// 5. HTTP tools' transport errors.

/// Issue 20, item 5: an HTTP tool's endpoint is down. The caller gets a generic, stable
/// message that names neither the URL nor its query (`?api_key=…`), on both endpoints; the
/// log gets the full error with the query redacted.
#[tokio::test]
async fn an_http_tools_transport_error_shows_the_caller_neither_its_url_nor_its_query() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let env = TestEnv::new(&format!(
        "[tools.leaky]\ndescription = \"An HTTP tool whose endpoint is down\"\nmode = \"sync\"\n\
         url = \"http://127.0.0.1:{port}/hooks/leaky-path?api_key=SECRET-4f9a1c\"\n"
    ));
    let d = env.spawn_daemon().await;
    let (_, mcp) = legacy(
        d.addr,
        TOKEN,
        "tools/call",
        json!({"name": "leaky", "arguments": {}}),
    )
    .await;
    let mut c = env.client(&d).await;
    let signed = c.call("leaky", args("{}")).await.unwrap();
    for (what, text) in [("/mcp", mcp.to_string()), ("/v1/call", signed.raw.clone())] {
        assert!(text.contains("connect_failed"), "{what}: {text}");
        for secret in [
            "SECRET-4f9a1c",
            "api_key",
            "leaky-path",
            &format!(":{port}"),
        ] {
            assert!(
                !text.contains(secret),
                "{what} shows {secret:?} to the caller: {text}"
            );
        }
    }
    // The operator's log has the full error, the URL's path included, its query redacted.
    let log = d.proc.logs();
    assert!(
        log.lines()
            .any(|l| l.contains("hooks/leaky-path") && l.contains("refused")),
        "the log lacks the transport error"
    );
    assert!(
        !log.contains("SECRET-4f9a1c"),
        "the log shows the URL's query"
    );
}

// ---------------------------------------------------------------------------------------
// 6. Answers without a requestState.

/// Issue 20, item 6: `inputResponses` without a `requestState` answer nothing that was
/// asked, so the tool must not see them (docs/MCP.md: unasked answers are dropped). Here
/// the tool would greet whoever the client names without ever having asked.
#[tokio::test]
async fn answers_without_a_request_state_never_reach_a_sync_tool() {
    let env = TestEnv::new(&ask_tools());
    let d = env.spawn_daemon().await;
    let (status, msg) = modern(
        d.addr,
        TOKEN,
        "tools/call",
        json!({"name": "ask_name", "arguments": {},
               "inputResponses": {"user_name": {"action": "accept", "content": {"name": "Mallory"}}}}),
        json!({"elicitation": {}}),
    )
    .await;
    let refused = msg["error"]["code"] == -32602;
    let asked = msg["result"]["resultType"] == "input_required";
    assert!(
        refused || asked,
        "unasked answers reached the tool (status {status}): {msg}"
    );
    assert!(!msg.to_string().contains("Mallory"), "{msg}");
}

/// Issue 20, item 6, for a job tool that declares its questions up front: answers sent
/// without the sealed round do not skip the question; the client is asked (or refused).
#[tokio::test]
async fn answers_without_a_request_state_do_not_skip_a_job_tools_declared_questions() {
    let env = TestEnv::new(&format!(
        "[tools.greet_task]\ndescription = \"Asks a name up front, greets from a task\"\n\
         task_support = \"required\"\ncommand = [\"/usr/bin/python3\", \"{}\", \"greet_answer\"]\n\
         [tools.greet_task.ask.user_name]\nmethod = \"elicitation/create\"\n\
         params = {{ message = \"Name?\" }}\n",
        ask_py()
    ));
    let d = env.spawn_daemon().await;
    let (status, msg) = modern(
        d.addr,
        TOKEN,
        "tools/call",
        json!({"name": "greet_task", "arguments": {},
               "inputResponses": {"user_name": {"action": "accept", "content": {"name": "Mallory"}}}}),
        json!({"elicitation": {}, "extensions": {TASKS: {}}}),
    )
    .await;
    let refused = msg["error"]["code"] == -32602;
    let asked = msg["result"]["resultType"] == "input_required";
    assert!(
        refused || asked,
        "a task was created from answers nobody asked for (status {status}): {msg}"
    );
}

// ---------------------------------------------------------------------------------------
// 7. Jobs waiting for input.

fn confirm_tool() -> String {
    format!(
        "[tools.confirm]\ndescription = \"Asks to confirm mid-task\"\n\
         command = [\"/usr/bin/python3\", \"{}\", \"confirm_delete\"]\n\n",
        ask_py()
    )
}

async fn start_task(addr: SocketAddr, tool: &str) -> (u16, Value, Option<u64>) {
    let mut params = json!({"name": tool, "arguments": {"path": "/tmp/x"}});
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}, "extensions": {TASKS: {}}},
    });
    let auth = bearer(TOKEN);
    let headers = vec![
        ("Authorization", auth.as_str()),
        ("MCP-Protocol-Version", MODERN),
        ("Mcp-Method", "tools/call"),
        ("Mcp-Name", tool),
    ];
    let body =
        json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": params}).to_string();
    let mut r = Response::post(addr, &headers, &body).await;
    let retry_after = r.head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("retry-after")
            .then(|| v.trim().parse().ok())?
    });
    let status = r.status();
    let messages = r.rest("a tools/call answer").await;
    (
        status,
        messages.last().cloned().unwrap_or(Value::Null),
        retry_after,
    )
}

async fn task_status(addr: SocketAddr, id: &str) -> Value {
    let (_, m) = modern(
        addr,
        TOKEN,
        "tasks/get",
        json!({"taskId": id}),
        json!({"extensions": {TASKS: {}}}),
    )
    .await;
    m["result"].clone()
}

async fn task_waiting_for_input(addr: SocketAddr) -> String {
    let (status, msg, _) = start_task(addr, "confirm").await;
    assert_eq!(
        msg["result"]["resultType"], "task",
        "status {status}: {msg}"
    );
    let id = msg["result"]["taskId"].as_str().unwrap().to_string();
    let what = format!("task {id} to wait for input");
    let id2 = id.clone();
    eventually(BOUND, &what, || {
        let id = id2.clone();
        async move { task_status(addr, &id).await["status"] == "input_required" }
    })
    .await;
    id
}

/// Issue 20, item 7: with `limits.max_queued_per_client = 2`, two jobs waiting for input
/// fill the client's queue: a third is refused (`queue_full`, 429) every time, also after
/// the Retry-After the daemon gave (when it counts again).
#[tokio::test]
async fn jobs_waiting_for_input_count_toward_the_clients_queue_cap() {
    let env = TestEnv::new(&confirm_tool()).set("MCPQ__LIMITS__MAX_QUEUED_PER_CLIENT", "2");
    let d = env.spawn_daemon().await;
    task_waiting_for_input(d.addr).await;
    task_waiting_for_input(d.addr).await;
    for attempt in 1..=3 {
        let (status, msg, retry_after) = start_task(d.addr, "confirm").await;
        assert!(
            status == 429 && msg["error"]["code"] == -32000,
            "attempt {attempt}: a third job was accepted while two wait for input \
             (cap 2): status {status}: {msg}"
        );
        // Come back when the daemon said to (it counts the queue again by then).
        tokio::time::sleep(Duration::from_secs(retry_after.unwrap_or(1).max(1))).await;
    }
}

/// Issue 20, item 7: a job waiting for input does not wait forever. With the waiting-job
/// expiry `jobs.input_wait_secs` (default 7 days) at 1 s, it fails with a reason that
/// says so.
#[tokio::test]
async fn a_job_left_waiting_for_input_expires_with_a_clear_reason() {
    let env = TestEnv::new(&confirm_tool())
        .set("MCPQ__JOBS__INPUT_WAIT_SECS", "1")
        .set("MCPQ__JOBS__RESCUE_INTERVAL_MS", "100");
    let d = env.spawn_daemon().await;
    let id = task_waiting_for_input(d.addr).await;
    let mut last = Value::Null;
    let deadline = tokio::time::Instant::now() + BOUND;
    while tokio::time::Instant::now() < deadline {
        last = task_status(d.addr, &id).await;
        if last["status"] != "input_required" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last["status"], "failed", "{last}");
    let why = last["statusMessage"].as_str().unwrap_or("");
    assert!(why.starts_with("input_expired:"), "{last}");
}

// ---------------------------------------------------------------------------------------
// 8. Descriptors.

/// Issue 20, item 8: started from a shell that leaves a descriptor open (here fd 57, not
/// close-on-exec), the daemon must not hand it to its tools: everything above fd 3 is
/// closed in the child.
#[tokio::test]
async fn tools_do_not_inherit_descriptors_the_daemon_was_started_with() {
    const STRAY: i32 = 57;
    let env = TestEnv::new(&format!(
        "[tools.fds]\ndescription = \"Lists its descriptors\"\nmode = \"sync\"\n\
         command = [\"/usr/bin/python3\", \"{}\"]\n\n\
         [tools.fds_job]\ndescription = \"Lists its descriptors, as a job\"\n\
         command = [\"/usr/bin/python3\", \"{}\"]\n",
        fixture("list_fds.py"),
        fixture("list_fds.py"),
    ));
    let stray = std::fs::File::open("/dev/null").unwrap();
    let src = stray.as_raw_fd();
    // `pre_exec` dup2s it to fd 57 without close-on-exec, as a shell's redirection would
    // leave it.
    let d = spawn_daemon_with(&env, None, move |cmd| {
        // SAFETY: dup2 is async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(src, STRAY) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    })
    .await;
    let daemon_pid = d.proc.pid();
    assert!(
        Path::new(&format!("/proc/{daemon_pid}/fd/{STRAY}")).exists(),
        "the test's setup: the daemon holds fd {STRAY}"
    );
    let mut c = env.client(&d).await;
    let r = c.call("fds", args("{}")).await.unwrap();
    assert!(r.ok, "{}", r.raw);
    let fds: Vec<i64> = find_key(&result_of(&r), "fds")
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(Value::as_i64)
        .collect();
    assert!(!fds.is_empty(), "{}", r.raw);
    assert!(
        !fds.contains(&(STRAY as i64)),
        "a sync tool inherited the daemon's fd {STRAY}: {fds:?}"
    );
    let r = c.call("fds_job", args("{}")).await.unwrap();
    let id = job_id(&r);
    let done = poll_until_finished(&mut c, &id, BOUND).await;
    let fds = find_key(&result_of(&done), "fds");
    assert!(fds.is_array(), "{}", done.raw);
    assert!(
        !fds.as_array().unwrap().contains(&json!(STRAY)),
        "a job (embedded worker) inherited the daemon's fd {STRAY}: {fds}"
    );
    drop(stray);
}

// ---------------------------------------------------------------------------------------
// 9. Smaller points.

/// Issue 20, item 9: the metrics listener (loopback) refuses a Host that is not a loopback
/// name, as `/mcp` does: a DNS-rebinding page must not read it.
#[tokio::test]
async fn the_metrics_endpoint_refuses_a_foreign_host_name() {
    let env = TestEnv::new("");
    let d = env.spawn_daemon().await;
    let addr = d.metrics.unwrap();
    let (ok, _) = scrape_as(addr, &format!("localhost:{}", addr.port())).await;
    assert!(ok.contains(" 200 "), "{ok}");
    let (status, body) = scrape_as(addr, &format!("rebind.evil.example:{}", addr.port())).await;
    assert!(
        status.contains(" 403 "),
        "a rebound name read the metrics: {status}; {} bytes",
        body.len()
    );
}

/// Issue 20, item 9: the metrics listener caps its connections (`metrics.max_connections`):
/// beyond it, a connection is closed unanswered instead of served.
#[tokio::test]
async fn the_metrics_listener_caps_its_connections() {
    let env = TestEnv::new("").set("MCPQ__METRICS__MAX_CONNECTIONS", "4");
    let d = env.spawn_daemon().await;
    let addr = d.metrics.unwrap();
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    let (status, _) = scrape_as(addr, &addr.to_string()).await;
    assert!(
        !status.contains(" 200 "),
        "a fifth connection was served while four are held: {status}"
    );
    drop(held);
}

/// Issue 20, item 9: under socket activation the `/mcp` Host/Origin policy follows the
/// socket actually served (here loopback), not `server.listen` (here 0.0.0.0): a rebound
/// name is refused.
#[tokio::test]
async fn under_socket_activation_the_origin_policy_follows_the_socket_served() {
    let env = TestEnv::new("").set("MCPQ__SERVER__LISTEN", "0.0.0.0:0");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let fd = listener.as_raw_fd();
    let d = spawn_daemon_with(
        &env,
        Some((
            "/bin/sh",
            &["-c", "LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" \"$@\""][..],
        )),
        move |cmd| {
            // SAFETY: dup2 is async-signal-safe; it clears close-on-exec on fd 3.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::dup2(fd, 3) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        },
    )
    .await;
    assert_eq!(
        d.addr,
        listener.local_addr().unwrap(),
        "served the activated socket"
    );
    let auth = bearer(TOKEN);
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}).to_string();
    let (ok, _) = exchange(d.addr, &[("Authorization", &auth)], &body).await;
    assert_eq!(ok, 200);
    let mut sock = TcpStream::connect(d.addr).await.unwrap();
    let req = format!(
        "POST /mcp HTTP/1.1\r\nHost: rebind.evil.example:{}\r\nAuthorization: {auth}\r\n\
         Content-Type: application/json\r\nAccept: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        d.addr.port(),
        body.len()
    );
    sock.write_all(req.as_bytes()).await.unwrap();
    let mut buf = String::new();
    tokio::time::timeout(BOUND, sock.read_to_string(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(
        buf.starts_with("HTTP/1.1 403"),
        "a rebound Host reached /mcp on a loopback socket: {}",
        buf.lines().next().unwrap_or("")
    );
}

/// Issue 20, item 9: a tool's own `env` entry named like an `MCPQ_*` variable does not
/// make a duplicate: the tool sees exactly one, the daemon's (docs/TOOLS.md: `MCPQ_*` win).
#[tokio::test]
async fn mcpq_variables_replace_a_tools_own_entries_of_the_same_name() {
    let env = TestEnv::new(&format!(
        "[tools.environ]\ndescription = \"Shows its raw environment\"\nmode = \"sync\"\n\
         command = [\"/usr/bin/python3\", \"{}\"]\n\
         env = {{ MCPQ_CLIENT_ID = \"someone-else\", MCPQ_TOOL = \"spoofed\", KEEP = \"yes\" }}\n",
        fixture("raw_environ.py")
    ));
    let d = env.spawn_daemon().await;
    let mut c = env.client(&d).await;
    let r = c.call("environ", args("{}")).await.unwrap();
    assert!(r.ok, "{}", r.raw);
    let pairs = find_key(&result_of(&r), "environ")
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("{}", r.raw));
    let values = |name: &str| -> Vec<String> {
        pairs
            .iter()
            .filter(|p| p[0] == name)
            .map(|p| p[1].as_str().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(values("MCPQ_CLIENT_ID"), ["client-001"], "{pairs:?}");
    assert_eq!(values("MCPQ_TOOL"), ["environ"], "{pairs:?}");
    assert_eq!(values("KEEP"), ["yes"], "{pairs:?}");
}

/// Issue 20, item 9: a resource template's variables are escaped for the resource's MIME
/// type: in a JSON resource, a value with quotes stays one string.
#[tokio::test]
async fn resource_templates_escape_variables_in_json_text() {
    let env = TestEnv::new(
        r#"[resources.item]
uri_template = "items://{id}"
mime_type = "application/json"
text = "{\"id\": \"{{id}}\", \"admin\": false}"
"#,
    );
    let d = env.spawn_daemon().await;
    let value = r#"x","admin":true,"y":"z"#;
    let (_, msg) = legacy(
        d.addr,
        TOKEN,
        "resources/read",
        json!({"uri": format!("items://{value}")}),
    )
    .await;
    let text = msg["result"]["contents"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("{msg}"))
        .to_string();
    let parsed: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    assert_eq!(parsed, json!({"id": value, "admin": false}), "{text}");
}
