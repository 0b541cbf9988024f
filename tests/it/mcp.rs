//! Standard MCP at `/mcp`, exercised as clients do: the Python `mcp` SDK (2.x) in both
//! protocol eras, and raw JSON-RPC over HTTP for what an SDK would hide (tokens, other
//! clients' tasks, DNS rebinding, every protocol error, a task surviving kill -9).

use crate::common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::common::*;
use serde_json::{json, Value};
use sha2::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "dev-only-mcp-token-00000000000000000000000000000000";
/// An MCP-only client (a token, no signing key).
const OTHER_TOKEN: &str = "client-three-mcp-token-000000000000000000000000000";
const MODERN: &str = "2026-07-28";
const TASKS: &str = "io.modelcontextprotocol/tasks";

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

fn env() -> TestEnv {
    let other = hex::encode(sha2::Sha256::digest(OTHER_TOKEN.as_bytes()));
    TestEnv::new(&format!(
        "[clients.client-003]\ntoken_sha256 = \"{other}\"\n\n\
         [tools.slow]\ndescription = \"Reports progress three times, then echoes its arguments\"\n\
         command = [\"{}\"]\nenv = {{ PATH = \"/usr/bin:/bin\", MCPQ_STEP_MS = \"300\" }}\n\n\
         [tools.ask_name]\ndescription = \"Asks the client for a name, then greets\"\nmode = \"sync\"\n\
         command = [\"/usr/bin/python3\", \"{ask}\", \"elicitation\"]\n\n\
         [tools.ask_model]\ndescription = \"Asks the client's model\"\nmode = \"sync\"\n\
         command = [\"/usr/bin/python3\", \"{ask}\", \"needs_sampling\"]\n\n\
         [tools.long_only]\ndescription = \"Runs only as a task\"\ntask_support = \"required\"\n\
         command = [\"/bin/sh\", \"-c\", \"cat > /dev/null; echo '{{}}'\"]\n\n\
         [tools.refuses]\ndescription = \"Exits non-zero: the tool's own error\"\n\
         command = [\"/bin/sh\", \"-c\", \"cat > /dev/null; echo no >&2; exit 2\"]\n\n\
         [tools.garbles]\ndescription = \"Prints no JSON: a protocol error\"\n\
         command = [\"/bin/sh\", \"-c\", \"cat > /dev/null; echo garbage\"]\n\n\
         [tools.confirm]\ndescription = \"Asks to confirm mid-task\"\n\
         command = [\"/usr/bin/python3\", \"{ask}\", \"confirm_delete\"]\n\n\
         [tools.greet_task]\ndescription = \"Asks a name up front, greets from a task\"\n\
         task_support = \"required\"\ncommand = [\"/usr/bin/python3\", \"{ask}\", \"greet_answer\"]\n\
         [tools.greet_task.ask.user_name]\nmethod = \"elicitation/create\"\n\
         params = {{ message = \"Name?\" }}\n\n\
         [tools.chatty]\ndescription = \"Logs three messages\"\nmode = \"sync\"\n\
         command = [\"/usr/bin/python3\", \"{logs}\"]\n\n\
         [prompts.review]\ndescription = \"Review a diff\"\n\
         arguments = [{{ name = \"diff\", required = true }}]\n\
         [[prompts.review.messages]]\nrole = \"user\"\ntext = \"Review {{{{diff}}}} carefully\"\n",
        fixture("progress_tool.sh"),
        ask = fixture("../conformance/fixtures/ask.py"),
        logs = fixture("../conformance/fixtures/logs.py"),
    ))
    .set("MCPQ__JOBS__HEARTBEAT_MS", "100")
}

/// One HTTP exchange: status, raw head, and the JSON-RPC messages of the body (one for a
/// JSON answer, every event for a stream).
struct Http {
    status: u16,
    head: String,
    messages: Vec<Value>,
}

impl Http {
    fn last(&self) -> &Value {
        self.messages.last().unwrap_or(&Value::Null)
    }
}

/// POSTs one message; `Accept` is both JSON and SSE unless `headers` set it.
async fn post(addr: SocketAddr, headers: &[(&str, &str)], body: &str) -> Http {
    let accept = if headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("accept"))
    {
        ""
    } else {
        "Accept: application/json, text/event-stream\r\n"
    };
    let mut req = format!(
        "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{accept}Content-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut buf))
        .await
        .expect("answer in time")
        .unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    let messages = if head.to_ascii_lowercase().contains("text/event-stream") {
        body.split("\n\n")
            .filter_map(|ev| ev.lines().find_map(|l| l.strip_prefix("data: ")))
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    } else if body.trim().is_empty() {
        Vec::new()
    } else {
        vec![serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))]
    };
    Http {
        status,
        head: head.to_string(),
        messages,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A 2025-11-25 request (no `_meta` version; the version header after initialize).
async fn legacy(addr: SocketAddr, token: &str, method: &str, params: Value) -> Http {
    let auth = bearer(token);
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params}).to_string();
    post(
        addr,
        &[
            ("Authorization", &auth),
            ("MCP-Protocol-Version", "2025-11-25"),
        ],
        &body,
    )
    .await
}

/// A 2026-07-28 request with its `_meta` and headers; `tasks`: declare the extension.
async fn modern(addr: SocketAddr, token: &str, method: &str, params: Value, tasks: bool) -> Http {
    let caps = if tasks {
        json!({"extensions": {TASKS: {}}})
    } else {
        json!({})
    };
    modern_with(addr, token, method, params, caps).await
}

/// A 2026-07-28 request declaring the client capabilities `caps`.
async fn modern_with(
    addr: SocketAddr,
    token: &str,
    method: &str,
    params: Value,
    caps: Value,
) -> Http {
    let (headers, body) = modern_request(token, method, params, caps);
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    post(addr, &headers, &body).await
}

#[tokio::test]
async fn configured_resources_are_listed_and_read_in_both_eras() {
    let env = TestEnv::new(
        "[resources.guide]\nuri = \"docs://guide\"\ndescription = \"How to call our tools\"\n\
         text = \"read me first\"\n\n\
         [resources.logo]\nuri = \"docs://logo\"\nfile = \"logo.bin\"\nmime_type = \"application/octet-stream\"\n\n\
         [resources.ticket]\nuri_template = \"tickets://{project}/{id}\"\n\
         text = \"ticket {{id}} of {{project}}\"\n",
    );
    std::fs::write(env.dir.path().join("logo.bin"), [0u8, 159, 146, 150]).unwrap();
    let d = env.spawn_daemon().await;
    let list = legacy(d.addr, TOKEN, "resources/list", json!({})).await;
    assert_eq!(
        list.last()["result"]["resources"],
        json!([
            {"uri": "docs://guide", "name": "guide", "mimeType": "text/plain",
             "description": "How to call our tools"},
            {"uri": "docs://logo", "name": "logo", "mimeType": "application/octet-stream"}
        ]),
        "{:?}",
        list.messages
    );
    let list = modern(d.addr, TOKEN, "resources/list", json!({}), false).await;
    assert_eq!(
        list.last()["result"]["resources"].as_array().unwrap().len(),
        2
    );
    assert_eq!(list.last()["result"]["ttlMs"], json!(60_000));

    let text = modern(
        d.addr,
        TOKEN,
        "resources/read",
        json!({"uri": "docs://guide"}),
        false,
    )
    .await;
    assert_eq!(
        text.last()["result"]["contents"],
        json!([{"uri": "docs://guide", "mimeType": "text/plain", "text": "read me first"}]),
        "{:?}",
        text.messages
    );
    assert_eq!(text.last()["result"]["cacheScope"], json!("public"));
    let blob = legacy(
        d.addr,
        TOKEN,
        "resources/read",
        json!({"uri": "docs://logo"}),
    )
    .await;
    assert_eq!(
        blob.last()["result"]["contents"][0]["blob"],
        json!("AJ+Slg=="),
        "{:?}",
        blob.messages
    );
    // An unknown URI: the spec's -32602, naming it.
    let missing = legacy(
        d.addr,
        TOKEN,
        "resources/read",
        json!({"uri": "docs://nope"}),
    )
    .await;
    assert_eq!(missing.last()["error"]["code"], json!(-32602));
    assert!(missing.last()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("docs://nope"));
    // Without a token: refused like every other method.
    let anon = post(
        d.addr,
        &[("MCP-Protocol-Version", "2025-11-25")],
        &json!({"jsonrpc": "2.0", "id": 1, "method": "resources/read", "params": {"uri": "docs://guide"}}).to_string(),
    )
    .await;
    assert_eq!(anon.status, 401);
}

fn python() -> String {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python3");
    assert!(
        venv.exists(),
        "the Python SDK test needs .venv with mcp==2.3.0 (bash .ci/run creates it)"
    );
    venv.display().to_string()
}

#[tokio::test]
async fn the_python_sdk_lists_calls_and_waits_for_a_job_with_progress_in_both_eras() {
    let env = env();
    let d = env.spawn_daemon().await;
    let out = tokio::process::Command::new(python())
        .arg(fixture("../mcp_sdk_client.py"))
        .arg(format!("http://{}/mcp", d.addr))
        .arg(TOKEN)
        .arg("slow")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let runs: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(runs.len(), 2, "{stdout}");
    assert_eq!(runs[0]["protocol"], "2025-11-25", "{stdout}");
    assert_eq!(runs[1]["protocol"], MODERN, "{stdout}");
    for r in &runs {
        let tools: Vec<&str> = r["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        for t in ["batch_sum", "poll_job", "slow", "start_long_task"] {
            assert!(tools.contains(&t), "{t} missing: {r}");
        }
        assert_eq!(r["batch_sum"]["total"], 6.5, "{r}");
        assert_eq!(r["held_error"], false, "{r}");
        assert_eq!(
            r["held"]["args"]["text"],
            format!("hello {}", r["mode"].as_str().unwrap())
        );
        // The held call streamed progress; its first message names the durable job.
        let progress = r["progress"].as_array().unwrap();
        assert!(progress.len() >= 2, "{r}");
        let job = r["held"]["job"].as_str().unwrap();
        assert!(
            progress[0]["message"].as_str().unwrap().contains(job),
            "{r}"
        );
        let values: Vec<f64> = progress
            .iter()
            .map(|p| p["progress"].as_f64().unwrap())
            .collect();
        assert!(
            values.windows(2).all(|w| w[0] <= w[1]),
            "progress never goes back: {values:?}"
        );
    }
}

/// Runs tests/mcp_sdk_tasks.py COMMAND against the daemon; its one JSON line.
async fn sdk(addr: SocketAddr, command: &str, arg: &str) -> Value {
    common::sdk_client(addr, TOKEN, command, &[arg]).await
}

#[tokio::test]
async fn the_python_sdk_runs_a_job_as_a_task_and_finds_it_again_after_kill_9() {
    let env = env().set("MCPQ__SERVER__EMBEDDED_WORKERS", "0");
    let mut d = env.spawn_daemon().await;
    let _w = env.spawn_worker(1).await;
    // A task whose job is running on a worker: the client ends, the daemon dies.
    let started = sdk(d.addr, "start", "slow").await;
    assert_eq!(started["protocol"], MODERN, "{started}");
    assert_eq!(started["kind"], "CreatedTask", "{started}");
    assert_eq!(started["status"], "working", "{started}");
    let task_id = started["task_id"].as_str().unwrap().to_string();
    let running = task_until(d.addr, &task_id, |t| {
        t["statusMessage"].as_str().is_some_and(|m| m != "queued")
    })
    .await;
    assert_eq!(running["status"], "working", "{running}");
    // 2025-11-25: the SDK's tools/call takes no CreateTaskResult, so this task is made
    // over raw JSON-RPC; the SDK reads it back below.
    let r = legacy(
        d.addr,
        TOKEN,
        "tools/call",
        json!({"name": "slow", "arguments": {"text": "legacy task"}, "task": {"ttl": 60000}}),
    )
    .await;
    let legacy_id = r.last()["result"]["task"]["taskId"]
        .as_str()
        .unwrap()
        .to_string();
    d.proc.kill9().await;

    let d = env.spawn_daemon().await;
    let finished = sdk(d.addr, "finish", &task_id).await;
    let task = &finished["task"];
    assert_eq!(task["status"], "completed", "{finished}");
    assert_eq!(
        task["result"]["structuredContent"]["args"]["text"], "survives",
        "{finished}"
    );
    let legacy_done = sdk(d.addr, "legacy-finish", &legacy_id).await;
    assert_eq!(legacy_done["protocol"], "2025-11-25", "{legacy_done}");
    assert_eq!(legacy_done["is_error"], false, "{legacy_done}");
    assert_eq!(
        legacy_done["structured"]["args"]["text"], "legacy task",
        "{legacy_done}"
    );
    // Transparent: the extension's claim waits for the task; the caller gets the result.
    let r = sdk(d.addr, "task", "slow").await;
    assert_eq!(r["protocol"], MODERN, "{r}");
    assert_eq!(r["is_error"], false, "{r}");
    assert_eq!(r["structured"]["args"]["text"], "as a task", "{r}");
}

#[tokio::test]
async fn the_python_sdk_answers_a_tools_question_in_both_eras() {
    let env = env();
    let d = env.spawn_daemon().await;
    // The SDK's multi-round driver answers the elicitation through its callback (which
    // gives "Ada") and calls again with the answer and the sealed requestState.
    let r = sdk(d.addr, "ask", "ask_name").await;
    assert_eq!(r["protocol"], MODERN, "{r}");
    assert_eq!(r["is_error"], false, "{r}");
    assert_eq!(r["text"], "Hello, Ada!", "{r}");
    // 2025-11-25: the same tool's question travels as a request on the call's stream.
    let r = sdk(d.addr, "legacy-ask", "ask_name").await;
    assert_eq!(r["protocol"], "2025-11-25", "{r}");
    assert_eq!(r["is_error"], false, "{r}");
    assert_eq!(r["text"], "Hello, Ada!", "{r}");
}

#[tokio::test]
async fn a_tools_question_round_is_sealed_and_refused_where_it_cannot_be_answered() {
    let env = env();
    let d = env.spawn_daemon().await;
    let elicit = json!({"elicitation": {}});
    let call = |extra: Value| {
        let mut p = json!({"name": "ask_name", "arguments": {}});
        for (k, v) in extra.as_object().unwrap() {
            p[k] = v.clone();
        }
        p
    };
    let r = modern_with(d.addr, TOKEN, "tools/call", call(json!({})), elicit.clone()).await;
    let asked = r.last()["result"].clone();
    assert_eq!(asked["resultType"], "input_required", "{asked}");
    assert_eq!(
        asked["inputRequests"]["user_name"]["method"],
        "elicitation/create"
    );
    let state = asked["requestState"].as_str().unwrap().to_string();
    let answer = json!({"user_name": {"action": "accept", "content": {"name": "Grace"}}});

    // An altered state, or one replayed by another client or for other arguments, is
    // refused before the tool runs again.
    let mut altered = state.clone().into_bytes();
    altered[5] ^= 1;
    let altered = String::from_utf8(altered).unwrap();
    let r = modern_with(
        d.addr,
        TOKEN,
        "tools/call",
        call(json!({"inputResponses": answer, "requestState": altered})),
        elicit.clone(),
    )
    .await;
    assert_eq!(r.last()["error"]["code"], -32602, "{:?}", r.messages);
    let r = modern_with(
        d.addr,
        OTHER_TOKEN,
        "tools/call",
        call(json!({"inputResponses": answer, "requestState": state})),
        elicit.clone(),
    )
    .await;
    assert_eq!(r.last()["error"]["code"], -32602, "{:?}", r.messages);
    let mut other_args = call(json!({"inputResponses": answer, "requestState": state}));
    other_args["arguments"] = json!({"x": 1});
    let r = modern_with(d.addr, TOKEN, "tools/call", other_args, elicit.clone()).await;
    assert_eq!(r.last()["error"]["code"], -32602, "{:?}", r.messages);

    // The genuine round completes, with the answer reaching the tool.
    let r = modern_with(
        d.addr,
        TOKEN,
        "tools/call",
        call(json!({"inputResponses": answer, "requestState": state})),
        elicit.clone(),
    )
    .await;
    let done = &r.last()["result"];
    assert_eq!(done["resultType"], "complete", "{done}");
    assert_eq!(done["content"][0]["text"], "Hello, Grace!", "{done}");

    // Asking for what the client did not declare: -32021 naming it, HTTP 400.
    let r = modern_with(
        d.addr,
        TOKEN,
        "tools/call",
        json!({"name": "ask_model", "arguments": {}}),
        elicit.clone(),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.last()["error"]["code"], -32021, "{:?}", r.messages);
    assert_eq!(
        r.last()["error"]["data"]["requiredCapabilities"],
        json!({"sampling": {}})
    );

    // A 2025-11-25 client that takes no stream, and /v1/call, cannot be asked: a clear
    // tool error (with a stream, the question is bridged: the Python SDK test).
    let auth = bearer(TOKEN);
    let body = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "ask_name", "arguments": {}}});
    let r = post(
        d.addr,
        &[
            ("Authorization", &auth),
            ("MCP-Protocol-Version", "2025-11-25"),
            ("Accept", "application/json"),
        ],
        &body.to_string(),
    )
    .await;
    let res = &r.last()["result"];
    assert_eq!(res["isError"], true, "{res}");
    assert!(
        res["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("input_required"),
        "{res}"
    );
    let mut c = env.client(&d).await;
    let r = c.call("ask_name", args("{}")).await.unwrap();
    assert_eq!(r.error_code(), Some("tool_failed"), "{}", r.raw);
    assert!(r.raw.contains("input_required"), "{}", r.raw);
}

#[tokio::test]
async fn task_only_tools_and_how_a_failed_job_shows_as_a_task() {
    let env = env();
    let d = env.spawn_daemon().await;
    // task_support = "required": refused without the extension, in both eras.
    let r = modern(
        d.addr,
        TOKEN,
        "tools/call",
        json!({"name": "long_only", "arguments": {}}),
        false,
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.last()["error"]["code"], -32021, "{:?}", r.messages);
    assert_eq!(
        r.last()["error"]["data"]["requiredCapabilities"],
        json!({"extensions": {TASKS: {}}})
    );
    let r = legacy(
        d.addr,
        TOKEN,
        "tools/call",
        json!({"name": "long_only", "arguments": {}}),
    )
    .await;
    assert_eq!(r.last()["error"]["code"], -32601, "{:?}", r.messages);
    let r = legacy(d.addr, TOKEN, "tools/list", json!({})).await;
    let tools = r.last()["result"]["tools"].as_array().unwrap().clone();
    let support = |n: &str| {
        tools.iter().find(|t| t["name"] == n).unwrap()["execution"]["taskSupport"].clone()
    };
    assert_eq!(support("long_only"), "required");
    assert_eq!(support("slow"), "optional");
    assert_eq!(support("batch_sum"), "forbidden");
    let r = modern(
        d.addr,
        TOKEN,
        "tools/call",
        json!({"name": "long_only", "arguments": {}}),
        true,
    )
    .await;
    assert_eq!(r.last()["result"]["resultType"], "task", "{:?}", r.messages);

    // A tool's own error is a completed task with isError; a job that never got an answer
    // from its tool is a failed task with the error inline.
    let finish = |tool: &'static str| {
        let addr = d.addr;
        async move {
            let r = modern(
                addr,
                TOKEN,
                "tools/call",
                json!({"name": tool, "arguments": {}}),
                true,
            )
            .await;
            let id = r.last()["result"]["taskId"].as_str().unwrap().to_string();
            for _ in 0..300 {
                let t = modern(addr, TOKEN, "tasks/get", json!({"taskId": id}), true).await;
                let t = t.last()["result"].clone();
                if t["status"] != "working" {
                    return t;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("{tool} never finished");
        }
    };
    let t = finish("refuses").await;
    assert_eq!(t["status"], "completed", "{t}");
    assert_eq!(t["result"]["isError"], true, "{t}");
    assert!(t.get("error").is_none(), "{t}");
    let t = finish("garbles").await;
    assert_eq!(t["status"], "failed", "{t}");
    assert_eq!(t["error"]["code"], -32603, "{t}");
    assert!(
        t["error"]["message"]
            .as_str()
            .unwrap()
            .contains("invalid_output"),
        "{t}"
    );
    assert!(t.get("result").is_none(), "{t}");
}

/// Polls a task until `done(task)`; the last task seen.
async fn task_until(addr: SocketAddr, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut t = Value::Null;
    for _ in 0..300 {
        let r = modern(addr, TOKEN, "tasks/get", json!({ "taskId": id }), true).await;
        t = r.last()["result"].clone();
        if done(&t) {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("task {id} never got there: {t}");
}

#[tokio::test]
async fn a_task_that_asks_waits_for_its_answers_across_a_restart() {
    let env = env().set("MCPQ__SERVER__EMBEDDED_WORKERS", "0");
    let mut d = env.spawn_daemon().await;
    let mut w = env.spawn_worker(1).await;
    let confirm = json!({"name": "confirm", "arguments": {"filename": "f.txt"}});
    let r = modern(d.addr, TOKEN, "tools/call", confirm.clone(), true).await;
    let id = r.last()["result"]["taskId"].as_str().unwrap().to_string();
    let t = task_until(d.addr, &id, |t| t["status"] != "working").await;
    assert_eq!(t["status"], "input_required", "{t}");
    assert_eq!(
        t["inputRequests"]["confirm"]["method"], "elicitation/create",
        "{t}"
    );
    assert!(t.get("result").is_none(), "{t}");
    // A client without tasks cannot answer: its held call says so, naming the job.
    let r = modern(d.addr, TOKEN, "tools/call", confirm, false).await;
    let held = &r.last()["result"];
    assert_eq!(held["isError"], true, "{held}");
    assert!(
        held["content"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("input_required"),
        "{held}"
    );

    // The question is durable: it outlives the daemon and the worker.
    d.proc.kill9().await;
    w.kill9().await;
    let d = env.spawn_daemon().await;
    let _w = env.spawn_worker(1).await;
    let t = task_until(d.addr, &id, |_| true).await;
    assert_eq!(t["status"], "input_required", "{t}");
    let answer = json!({"taskId": id, "inputResponses": {"confirm": {"action": "accept", "content": {"confirm": true}}}});
    let r = modern(d.addr, OTHER_TOKEN, "tasks/update", answer.clone(), true).await;
    assert_eq!(
        r.last()["error"]["code"],
        -32602,
        "another client's task: {:?}",
        r.messages
    );
    let r = modern(d.addr, TOKEN, "tasks/update", answer, true).await;
    assert_eq!(
        r.last()["result"]["resultType"],
        "complete",
        "{:?}",
        r.messages
    );
    assert!(r.last()["result"].get("status").is_none());
    let t = task_until(d.addr, &id, |t| t["status"] == "completed").await;
    assert_eq!(t["result"]["content"][0]["text"], "deleted f.txt", "{t}");

    // Questions declared up front: asked before any job exists, then one task.
    let call = json!({"name": "greet_task", "arguments": {}});
    let r = modern_with(
        d.addr,
        TOKEN,
        "tools/call",
        call.clone(),
        json!({"elicitation": {}, "extensions": {TASKS: {}}}),
    )
    .await;
    let asked = r.last()["result"].clone();
    assert_eq!(asked["resultType"], "input_required", "{asked}");
    assert!(asked.get("taskId").is_none(), "{asked}");
    let mut again = call.clone();
    again["inputResponses"] =
        json!({"user_name": {"action": "accept", "content": {"name": "Ada"}}});
    again["requestState"] = asked["requestState"].clone();
    let r = modern_with(
        d.addr,
        TOKEN,
        "tools/call",
        again,
        json!({"elicitation": {}, "extensions": {TASKS: {}}}),
    )
    .await;
    let created = r.last()["result"].clone();
    assert_eq!(created["resultType"], "task", "{created}");
    assert!(created.get("requestState").is_none(), "{created}");
    let t = task_until(d.addr, created["taskId"].as_str().unwrap(), |t| {
        t["status"] == "completed"
    })
    .await;
    assert_eq!(
        t["result"]["content"][0]["text"], "Hello, Ada! (from a task)",
        "{t}"
    );
    // The signed endpoint cannot answer questions: refused, nothing stored.
    let mut c = env.client(&d).await;
    let r = c.call("greet_task", args("{}")).await.unwrap();
    assert_eq!(r.error_code(), Some("tool_failed"), "{}", r.raw);
}

#[tokio::test]
async fn a_sync_tools_log_messages_reach_only_a_client_that_listens() {
    let env = env();
    let d = env.spawn_daemon().await;
    let auth = bearer(TOKEN);
    let call = |level: Option<&str>| {
        let mut meta = json!({
            "io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": {},
        });
        if let Some(l) = level {
            meta["io.modelcontextprotocol/logLevel"] = json!(l);
        }
        json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
            "params": {"name": "chatty", "arguments": {}, "_meta": meta}})
        .to_string()
    };
    let headers = [
        ("Authorization", auth.as_str()),
        ("MCP-Protocol-Version", MODERN),
        ("Mcp-Method", "tools/call"),
        ("Mcp-Name", "chatty"),
    ];
    let logs = |r: &Http| -> Vec<String> {
        r.messages
            .iter()
            .filter(|m| m["method"] == "notifications/message")
            .map(|m| m["params"]["data"].as_str().unwrap().to_string())
            .collect()
    };
    let r = post(d.addr, &headers, &call(Some("info"))).await;
    assert_eq!(
        logs(&r),
        [
            "Tool execution started",
            "Tool processing data",
            "Tool execution completed"
        ],
        "{:?}",
        r.messages
    );
    assert_eq!(
        r.last()["result"]["content"][0]["text"],
        "Logged three messages"
    );
    // Above the tool's level, or no level at all: no messages, the same result.
    for level in [Some("error"), None] {
        let r = post(d.addr, &headers, &call(level)).await;
        assert!(logs(&r).is_empty(), "{level:?}: {:?}", r.messages);
        assert_eq!(
            r.last()["result"]["content"][0]["text"],
            "Logged three messages"
        );
    }
    // 2025-11-25 keeps no session for logging/setLevel: a streaming client gets them all.
    let r = legacy(
        d.addr,
        TOKEN,
        "tools/call",
        json!({"name": "chatty", "arguments": {}}),
    )
    .await;
    assert_eq!(logs(&r).len(), 3, "{:?}", r.messages);
}

#[tokio::test]
async fn resource_templates_are_read_by_matching_uri_and_prompt_arguments_complete() {
    let env = TestEnv::new(
        "[resources.ticket]\nuri_template = \"tickets://{project}/{id}\"\n\
         text = \"ticket {{id}} of {{project}}\"\n\n\
         [prompts.pick]\ndescription = \"Pick a city\"\n\
         arguments = [{ name = \"city\", completions = [\"Paris\", \"Parma\", \"Oslo\"] }]\n\
         [[prompts.pick.messages]]\nrole = \"user\"\ntext = \"Go to {{city}}\"\n",
    );
    let d = env.spawn_daemon().await;
    let t = legacy(d.addr, TOKEN, "resources/templates/list", json!({})).await;
    assert_eq!(
        t.last()["result"]["resourceTemplates"][0]["uriTemplate"],
        "tickets://{project}/{id}"
    );
    let l = legacy(d.addr, TOKEN, "resources/list", json!({})).await;
    assert_eq!(
        l.last()["result"]["resources"],
        json!([]),
        "templates are not resources"
    );
    let r = modern(
        d.addr,
        TOKEN,
        "resources/read",
        json!({"uri": "tickets://ops/42"}),
        false,
    )
    .await;
    let c = &r.last()["result"]["contents"][0];
    assert_eq!(c["uri"], "tickets://ops/42");
    assert_eq!(c["text"], "ticket 42 of ops", "{:?}", r.messages);
    for miss in ["tickets://ops", "tickets://ops/42/x"] {
        let r = legacy(d.addr, TOKEN, "resources/read", json!({ "uri": miss })).await;
        assert_eq!(r.last()["error"]["code"], -32602, "{miss}");
    }
    let complete = |value: &str| {
        json!({"ref": {"type": "ref/prompt", "name": "pick"},
               "argument": {"name": "city", "value": value}})
    };
    let r = legacy(d.addr, TOKEN, "completion/complete", complete("pa")).await;
    assert_eq!(
        r.last()["result"]["completion"],
        json!({"values": ["Paris", "Parma"], "total": 2, "hasMore": false})
    );
    let r = modern(d.addr, TOKEN, "completion/complete", complete("x"), false).await;
    assert_eq!(r.last()["result"]["completion"]["values"], json!([]));
    let mut bad = complete("p");
    bad["argument"]["name"] = json!("country");
    let r = legacy(d.addr, TOKEN, "completion/complete", bad).await;
    assert_eq!(r.last()["error"]["code"], -32602, "{:?}", r.messages);
}

#[tokio::test]
async fn configured_prompts_are_listed_and_filled_in_in_both_eras() {
    let env = env();
    let d = env.spawn_daemon().await;
    let l = legacy(d.addr, TOKEN, "prompts/list", json!({})).await;
    let m = modern(d.addr, TOKEN, "prompts/list", json!({}), false).await;
    for r in [&l, &m] {
        let p = &r.last()["result"]["prompts"][0];
        assert_eq!(p["name"], "review", "{:?}", r.messages);
        assert_eq!(p["arguments"][0], json!({"name": "diff", "required": true}));
    }
    assert_eq!(m.last()["result"]["ttlMs"], 60_000);
    let get = json!({"name": "review", "arguments": {"diff": "a.rs"}});
    for r in [
        legacy(d.addr, TOKEN, "prompts/get", get.clone()).await,
        modern(d.addr, TOKEN, "prompts/get", get, false).await,
    ] {
        let msg = &r.last()["result"]["messages"][0];
        assert_eq!(msg["role"], "user");
        assert_eq!(
            msg["content"]["text"], "Review a.rs carefully",
            "{:?}",
            r.messages
        );
    }
    let r = legacy(d.addr, TOKEN, "prompts/get", json!({"name": "review"})).await;
    assert_eq!(r.last()["error"]["code"], -32602, "{:?}", r.messages);
    assert!(r.last()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("required"));
    let r = legacy(d.addr, TOKEN, "prompts/get", json!({"name": "nope"})).await;
    assert_eq!(
        r.last()["error"]["data"]["name"],
        "nope",
        "{:?}",
        r.messages
    );
}

#[tokio::test]
async fn tokens_decide_who_gets_in_and_a_clients_jobs_are_its_own_on_both_endpoints() {
    let env = env();
    let d = env.spawn_daemon().await;
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).to_string();
    for auth in [None, Some("Bearer not-a-token"), Some("Basic Zm9vOmJhcg==")] {
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", *a)).collect();
        let r = post(d.addr, &headers, &list).await;
        assert_eq!(r.status, 401, "{auth:?}");
        assert!(
            r.head
                .to_ascii_lowercase()
                .contains("www-authenticate: bearer"),
            "{}",
            r.head
        );
    }
    // client-001 starts a task over /mcp.
    let r = modern(
        d.addr,
        TOKEN,
        "tools/call",
        json!({"name": "slow", "arguments": {"n": 1}}),
        true,
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.messages);
    let task = r.last()["result"].clone();
    assert_eq!(task["resultType"], "task", "{task}");
    let id = task["taskId"].as_str().unwrap().to_string();
    // Another client cannot see it on /mcp ...
    let r = modern(
        d.addr,
        OTHER_TOKEN,
        "tasks/get",
        json!({"taskId": id}),
        true,
    )
    .await;
    assert_eq!(r.last()["error"]["code"], -32602, "{:?}", r.messages);
    let r = modern(
        d.addr,
        OTHER_TOKEN,
        "tasks/cancel",
        json!({"taskId": id}),
        true,
    )
    .await;
    assert_eq!(r.last()["error"]["code"], -32602, "{:?}", r.messages);
    // ... nor on /v1/call (client-002 signs), while its owner polls it there.
    let mut owner = env.client(&d).await;
    let r = owner
        .call("poll_job", args(&format!(r#"{{"job_id":"{id}"}}"#)))
        .await
        .unwrap();
    assert!(r.ok, "{}", r.raw);
    let mut other = mcpq::client::Client::connect(env.client2_settings(&d, CLIENT2_CURRENT))
        .await
        .unwrap();
    let r = other
        .call("poll_job", args(&format!(r#"{{"job_id":"{id}"}}"#)))
        .await
        .unwrap();
    assert_eq!(r.error_code(), Some("unknown_job"), "{}", r.raw);
    // A job started on /v1/call is a task on /mcp for the same client.
    let r = owner
        .call("slow", args(r#"{"via":"envelope"}"#))
        .await
        .unwrap();
    let signed = job_id(&r);
    let r = modern(d.addr, TOKEN, "tasks/get", json!({"taskId": signed}), true).await;
    assert_eq!(
        r.last()["result"]["taskId"],
        signed.as_str(),
        "{:?}",
        r.messages
    );
}

#[tokio::test]
async fn a_task_survives_kill_9_of_the_daemon_in_both_eras() {
    let env = env().set("MCPQ__SERVER__EMBEDDED_WORKERS", "0");
    let mut d = env.spawn_daemon().await;
    let r = modern(
        d.addr,
        TOKEN,
        "tools/call",
        json!({"name": "slow", "arguments": {"era": "modern"}}),
        true,
    )
    .await;
    let modern_id = r.last()["result"]["taskId"].as_str().unwrap().to_string();
    let r = legacy(
        d.addr,
        TOKEN,
        "tools/call",
        json!({"name": "slow", "arguments": {"era": "legacy"}, "task": {"ttl": 60000}}),
    )
    .await;
    let task = &r.last()["result"]["task"];
    assert_eq!(task["status"], "working", "{:?}", r.messages);
    assert!(
        task["ttl"].as_u64().is_some() && task["pollInterval"].as_u64().is_some(),
        "{task}"
    );
    let legacy_id = task["taskId"].as_str().unwrap().to_string();
    // Durable before the reply: the daemon dies at once, before any worker ran them.
    d.proc.kill9().await;
    let d = env.spawn_daemon().await;
    let _w = env.spawn_worker(1).await;
    let r = modern(
        d.addr,
        TOKEN,
        "tasks/get",
        json!({"taskId": modern_id}),
        true,
    )
    .await;
    assert_eq!(r.last()["result"]["status"], "working", "{:?}", r.messages);
    // 2025-11-25: tasks/result waits for the end.
    let r = legacy(d.addr, TOKEN, "tasks/result", json!({"taskId": legacy_id})).await;
    let result = &r.last()["result"];
    assert_eq!(
        result["structuredContent"]["args"]["era"], "legacy",
        "{result}"
    );
    assert_eq!(
        result["_meta"]["io.modelcontextprotocol/related-task"]["taskId"],
        legacy_id.as_str()
    );
    // 2026-07-28: poll tasks/get until completed; the result is inline.
    let mut done = Value::Null;
    for _ in 0..300 {
        let r = modern(
            d.addr,
            TOKEN,
            "tasks/get",
            json!({"taskId": modern_id}),
            true,
        )
        .await;
        done = r.last()["result"].clone();
        if done["status"] != "working" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        done["result"]["structuredContent"]["args"]["era"], "modern",
        "{done}"
    );
    assert_eq!(done["resultType"], "complete");
}

#[tokio::test]
async fn protocol_faults_get_the_specified_status_and_code() {
    let env = env();
    let d = env.spawn_daemon().await;
    let auth = bearer(TOKEN);
    let discover = |meta: Value| {
        json!({"jsonrpc": "2.0", "id": 3, "method": "server/discover", "params": {"_meta": meta}})
            .to_string()
    };
    let good_meta = json!({"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}});
    let std_headers = |v: &'static str| {
        vec![
            ("Authorization", auth.as_str()),
            ("MCP-Protocol-Version", v),
            ("Mcp-Method", "server/discover"),
        ]
    };
    // DNS rebinding: a foreign Host or Origin is refused.
    let mut h = std_headers(MODERN);
    h.push(("Origin", "http://evil.example.com"));
    assert_eq!(
        post(d.addr, &h, &discover(good_meta.clone())).await.status,
        403
    );
    let mut h = std_headers(MODERN);
    h.push(("Origin", "http://localhost:3000"));
    assert_eq!(
        post(d.addr, &h, &discover(good_meta.clone())).await.status,
        200
    );
    // Discover answers, with caching hints and the server's identity.
    let r = post(d.addr, &std_headers(MODERN), &discover(good_meta.clone())).await;
    let res = &r.last()["result"];
    assert_eq!(res["resultType"], "complete");
    assert!(
        res["ttlMs"].as_u64().is_some() && res["cacheScope"] == "public",
        "{res}"
    );
    assert_eq!(
        res["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "mcpq"
    );
    assert_eq!(r.last()["id"], 3);
    // Missing _meta fields: -32602 with 400.
    let r = post(
        d.addr,
        &std_headers(MODERN),
        &discover(json!({"io.modelcontextprotocol/protocolVersion": MODERN})),
    )
    .await;
    assert_eq!(
        (r.status, r.last()["error"]["code"].clone()),
        (400, json!(-32602))
    );
    // The header disagrees with the body: -32020.
    let r = post(d.addr, &std_headers(MODERN), &discover(json!({"io.modelcontextprotocol/protocolVersion": "v999.0.0", "io.modelcontextprotocol/clientCapabilities": {}}))).await;
    assert_eq!(
        (r.status, r.last()["error"]["code"].clone()),
        (400, json!(-32020))
    );
    // An unknown version: -32022 naming what is supported.
    let r = post(d.addr, &std_headers("v999.0.0"), &discover(json!({"io.modelcontextprotocol/protocolVersion": "v999.0.0", "io.modelcontextprotocol/clientCapabilities": {}}))).await;
    assert_eq!(
        (r.status, r.last()["error"]["code"].clone()),
        (400, json!(-32022))
    );
    assert_eq!(r.last()["error"]["data"]["requested"], "v999.0.0");
    assert!(r.last()["error"]["data"]["supported"]
        .as_array()
        .unwrap()
        .contains(&json!(MODERN)));
    // Mcp-Method must match the body.
    let mut h = std_headers(MODERN);
    h[2] = ("Mcp-Method", "tools/list");
    let r = post(d.addr, &h, &discover(good_meta.clone())).await;
    assert_eq!(
        (r.status, r.last()["error"]["code"].clone()),
        (400, json!(-32020))
    );
    // Methods 2026-07-28 removed, and unknown ones: 404 and -32601.
    for m in [
        "initialize",
        "ping",
        "unknown/method",
        "tasks/result",
        "tasks/list",
    ] {
        let r = modern(d.addr, TOKEN, m, json!({}), true).await;
        assert_eq!(
            (r.status, r.last()["error"]["code"].clone()),
            (404, json!(-32601)),
            "{m}"
        );
    }
    // Task methods need the extension declared.
    let r = modern(d.addr, TOKEN, "tasks/get", json!({"taskId": "x"}), false).await;
    assert_eq!(r.last()["error"]["code"], -32021, "{:?}", r.messages);
    // 2025-11-25: ping is exactly {}; a notification is 202 with no body.
    let r = legacy(d.addr, TOKEN, "ping", json!({})).await;
    assert_eq!(r.last()["result"], json!({}));
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string();
    let r = post(d.addr, &[("Authorization", &auth)], &note).await;
    assert_eq!(r.status, 202);
    assert!(r.messages.is_empty());
    // GET and DELETE: 405.
    for method in ["GET", "DELETE"] {
        let mut s = tokio::net::TcpStream::connect(d.addr).await.unwrap();
        s.write_all(format!("{method} /mcp HTTP/1.1\r\nHost: {}\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n", d.addr).as_bytes()).await.unwrap();
        let mut buf = String::new();
        s.read_to_string(&mut buf).await.unwrap();
        assert!(buf.starts_with("HTTP/1.1 405"), "{buf}");
    }
    // Strict JSON as on /v1/call: duplicate keys are a parse error.
    let r = post(
        d.addr,
        &[("Authorization", &auth)],
        r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"tools/list"}"#,
    )
    .await;
    assert_eq!(
        (r.status, r.last()["error"]["code"].clone()),
        (400, json!(-32700))
    );
    // An unknown tool is a protocol error; a tool's own failure is a result with isError.
    let r = legacy(d.addr, TOKEN, "tools/call", json!({"name": "nope"})).await;
    assert_eq!(r.last()["error"]["code"], -32602);
    let r = legacy(
        d.addr,
        TOKEN,
        "tools/call",
        json!({"name": "batch_sum", "arguments": {"numbers": "x"}}),
    )
    .await;
    // Arguments that fail the schema are a tool error the model can correct.
    assert_eq!(r.last()["result"]["isError"], true, "{:?}", r.messages);
    let text = r.last()["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.starts_with("invalid_args: "), "{text}");
    // The body cap holds.
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{{"pad":"{}"}}}}"#,
        "x".repeat(2 << 20)
    );
    assert_eq!(
        post(d.addr, &[("Authorization", &auth)], &big).await.status,
        413
    );
}

/// Held calls are answered when their job is signalled as finished, and workers claim when
/// a job is signalled as committed, not when their timers fire: here every timer is ten
/// minutes (the held call's fallback re-read, the worker's idle back-off, its pause after a
/// claim that did not fill up), so each call below would hang for ten minutes (and fail the
/// 60 s answer bound of `post`) if either signal were lost. The worker is another process.
async fn held_calls_follow_signals_not_timers(env: TestEnv) {
    let env = env
        .set("MCPQ__SERVER__EMBEDDED_WORKERS", "0")
        .set("MCPQ__SERVER__BENCH_TOOLS", "true")
        .set("MCPQ__MCP__HELD_POLL_MS", "600000")
        .set("MCPQ__WORKER__IDLE_BACKOFF_MAX_MS", "600000")
        .set("MCPQ__WORKER__CLAIM_INTERVAL_MS", "600000");
    let d = env.spawn_daemon().await;
    let _worker = env.spawn_worker(1).await;
    for round in 0..3 {
        let r = legacy(
            d.addr,
            TOKEN,
            "tools/call",
            json!({"name": "noop", "arguments": {}}),
        )
        .await;
        assert_eq!(r.status, 200, "round {round}: {}", r.head);
        let result = &r.last()["result"];
        assert_eq!(result["isError"], json!(false), "round {round}: {result}");
        assert!(
            result["_meta"]["io.mcpq/job_id"].is_string(),
            "a durable job answered round {round}: {result}"
        );
    }
}

#[tokio::test]
async fn held_calls_follow_signals_not_timers_on_sqlite() {
    held_calls_follow_signals_not_timers(TestEnv::new("")).await;
}

#[tokio::test]
async fn held_calls_follow_signals_not_timers_on_postgres() {
    let Some(env) = TestEnv::postgres("") else {
        return;
    };
    held_calls_follow_signals_not_timers(env).await;
}

/// A held call whose daemon died is sent again with the same idempotency key (in `_meta`
/// under `io.mcpq/job`): it reattaches to the job the first call started, which runs once.
#[tokio::test]
async fn a_retried_held_call_with_its_idempotency_key_reattaches_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let (runs, release) = (dir.path().join("runs"), dir.path().join("release"));
    let env = TestEnv::new(&format!(
        "[tools.once]\ndescription = \"Counts its runs, waits to be released\"\n\
         command = [\"/bin/sh\", \"-c\", \"cat > /dev/null; echo run >> {runs}; \
         while [ ! -e {release} ]; do sleep 0.02; done; echo '{{\\\"ran\\\": true}}'\"]\n",
        runs = runs.display(),
        release = release.display(),
    ))
    .set("MCPQ__SERVER__EMBEDDED_WORKERS", "0");
    let call = json!({"name": "once", "arguments": {},
                      "_meta": {"io.mcpq/job": {"idempotency_key": "nightly-report-7"}}});
    let mut d = env.spawn_daemon().await;
    let _worker = env.spawn_worker(1).await;
    // The first call is held; its client will never hear back.
    let body =
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": call}).to_string();
    let mut first = tokio::net::TcpStream::connect(d.addr).await.unwrap();
    first
        .write_all(
            format!(
                "POST /mcp HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
                 Accept: application/json, text/event-stream\r\nAuthorization: Bearer {TOKEN}\r\n\
                 MCP-Protocol-Version: 2025-11-25\r\nContent-Length: {}\r\n\r\n{body}",
                d.addr,
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let runs_now = || {
        std::fs::read_to_string(&runs)
            .unwrap_or_default()
            .lines()
            .count()
    };
    eventually(Duration::from_secs(20), "the job started", || async {
        runs_now() == 1
    })
    .await;
    d.proc.kill9().await;
    drop(first);

    let d = env.spawn_daemon().await;
    let retry = tokio::spawn(async move { legacy(d.addr, TOKEN, "tools/call", call).await });
    std::fs::write(&release, "").unwrap();
    let r = retry.await.unwrap();
    let result = &r.last()["result"];
    assert_eq!(result["isError"], json!(false), "{:?}", r.messages);
    assert_eq!(
        result["structuredContent"],
        json!({"ran": true}),
        "{result}"
    );
    assert_eq!(
        runs_now(),
        1,
        "the retry reattached instead of running again"
    );
    let pool = db(&env.db_path()).await;
    let (jobs,): (i64,) = sqlx::query_as("SELECT count(*) FROM jobs WHERE tool = 'once'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(jobs, 1);

    // A malformed key is refused before anything is stored.
    let bad = json!({"name": "once", "arguments": {},
                     "_meta": {"io.mcpq/job": {"idempotency_key": ""}}});
    let r = legacy(d.addr, TOKEN, "tools/call", bad).await;
    assert_eq!(r.last()["error"]["code"], json!(-32602), "{:?}", r.messages);
    let (jobs,): (i64,) = sqlx::query_as("SELECT count(*) FROM jobs WHERE tool = 'once'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(jobs, 1);
}
