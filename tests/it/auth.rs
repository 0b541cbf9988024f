//! Authentication over real HTTP: who gets in, in which order checks run, and that secrets stay out of logs.

use crate::common::*;
use mcpq::client::Client;
use mcpq::json::Json;

async fn code_of(client: &mut Client, env: &mcpq::json::Object) -> (u16, String) {
    let (status, r) = client.send(env).await.expect("send");
    assert!(!r.ok);
    (status, r.error_code().unwrap_or_default().to_string())
}

#[tokio::test]
async fn a_signed_call_is_answered_and_the_response_verifies() {
    let env = TestEnv::new("");
    let d = env.spawn_daemon().await;
    let mut c = env.client(&d).await;
    let r = c
        .call("batch_sum", args(r#"{"numbers":[1,2,3]}"#))
        .await
        .unwrap();
    assert!(r.ok, "{}", r.raw);
    assert_eq!(r.server_id, "mcp-server-001");
    assert!(
        r.raw.contains(r#""result":{"count":3,"total":6.0}"#),
        "{}",
        r.raw
    );
}

#[tokio::test]
async fn unknown_client_is_rejected() {
    let env = TestEnv::new("");
    let d = env.spawn_daemon().await;
    let mut s = env.client_settings(&d);
    s.client_id = "nobody".into();
    let mut c = Client::connect(s).await.unwrap();
    let e = c.envelope("batch_sum", args(r#"{"numbers":[1]}"#));
    assert_eq!(
        code_of(&mut c, &e).await,
        (401, "unknown_client".to_string())
    );
}

#[tokio::test]
async fn every_tampered_field_is_rejected_with_its_code() {
    let env = TestEnv::new("");
    let d = env.spawn_daemon().await;
    let mut c = env.client(&d).await;
    let cases: Vec<(&str, Json, u16, &str)> = vec![
        ("request_id", Json::str("other"), 401, "bad_signature"),
        ("ts_ms", Json::Int(now_ms() - 1), 401, "bad_signature"),
        ("tool", Json::str("server_identity"), 401, "bad_signature"),
        (
            "args",
            Json::Object(args(r#"{"numbers":[1,2,4]}"#)),
            401,
            "bad_signature",
        ),
        ("nonce", Json::str("another-nonce"), 401, "bad_signature"),
        ("client_id", Json::str(CLIENT2), 401, "bad_signature"),
        ("client_id", Json::str("stranger"), 401, "unknown_client"),
        (
            "server_id",
            Json::str("mcp-server-999"),
            400,
            "wrong_server",
        ),
        ("v", Json::str("mcp/0.2"), 400, "unsupported_version"),
        ("signature", Json::str("0".repeat(64)), 401, "bad_signature"),
        ("signature", Json::str("zz"), 401, "bad_signature"),
    ];
    for (field, value, status, code) in cases {
        let mut e = c.envelope("batch_sum", args(r#"{"numbers":[1,2,3]}"#));
        e.insert(field.to_string(), value);
        assert_eq!(
            code_of(&mut c, &e).await,
            (status, code.to_string()),
            "tampered {field}"
        );
    }
    // Nothing tampered: the same shape succeeds.
    let e = c.envelope("batch_sum", args(r#"{"numbers":[1,2,3]}"#));
    assert!(c.send(&e).await.unwrap().1.ok);
}

#[tokio::test]
async fn stale_and_future_timestamps_are_rejected_both_ways() {
    let env = TestEnv::new("");
    let d = env.spawn_daemon().await;
    let mut c = env.client(&d).await;
    let a = || args(r#"{"numbers":[1]}"#);
    let stale = c.envelope_at("batch_sum", a(), now_ms() - 301_000);
    assert_eq!(
        code_of(&mut c, &stale).await,
        (401, "stale_timestamp".into())
    );
    let future = c.envelope_at("batch_sum", a(), now_ms() + 301_000);
    assert_eq!(
        code_of(&mut c, &future).await,
        (401, "future_timestamp".into())
    );
    for skew in [-290_000, 290_000] {
        let ok = c.envelope_at("batch_sum", a(), now_ms() + skew);
        assert!(
            c.send(&ok).await.unwrap().1.ok,
            "skew {skew} is inside the window"
        );
    }
}

#[tokio::test]
async fn both_rotation_keys_are_accepted_and_no_other() {
    let env = TestEnv::new("");
    let d = env.spawn_daemon().await;
    for secret in [CLIENT2_CURRENT, CLIENT2_PREVIOUS] {
        let mut c = Client::connect(env.client2_settings(&d, secret))
            .await
            .unwrap();
        let r = c
            .call("batch_sum", args(r#"{"numbers":[2]}"#))
            .await
            .unwrap();
        assert!(r.ok, "{secret}: {}", r.raw);
    }
    let mut c =
        Client::connect(env.client2_settings(&d, "client-two-retired-secret-0000000000000000000"))
            .await
            .unwrap();
    let e = c.envelope("batch_sum", args(r#"{"numbers":[2]}"#));
    assert_eq!(code_of(&mut c, &e).await, (401, "bad_signature".into()));
}

#[tokio::test]
async fn checks_run_in_the_documented_order() {
    let env = TestEnv::new("");
    let d = env.spawn_daemon().await;
    let mut c = env.client(&d).await;
    let bad_sig = Json::str("0".repeat(64));
    // version before server_id before timestamp before signature.
    let mut e = c.envelope_at("batch_sum", args("{}"), now_ms() - 10_000_000);
    e.insert("v".into(), Json::str("x"));
    e.insert("server_id".into(), Json::str("elsewhere"));
    e.insert("signature".into(), bad_sig.clone());
    assert_eq!(code_of(&mut c, &e).await.1, "unsupported_version");
    e.insert("v".into(), Json::str("mcp/0.1"));
    assert_eq!(code_of(&mut c, &e).await.1, "wrong_server");
    e.insert("server_id".into(), Json::str("mcp-server-001"));
    assert_eq!(code_of(&mut c, &e).await.1, "stale_timestamp");
    // signature before nonce: a forged replay is a bad signature, not a replay.
    let good = c.envelope("no_such_tool", args(r#"{"bad":1}"#));
    assert_eq!(code_of(&mut c, &good).await, (404, "unknown_tool".into()));
    let mut forged = good.clone();
    forged.insert("signature".into(), bad_sig);
    assert_eq!(code_of(&mut c, &forged).await.1, "bad_signature");
    // nonce before tool: the replayed unknown-tool call is a replay.
    assert_eq!(code_of(&mut c, &good).await.1, "replayed_nonce");
    // tool before args.
    let e = c.envelope("batch_sum", args(r#"{"numbers":"x"}"#));
    assert_eq!(code_of(&mut c, &e).await, (400, "invalid_args".into()));
}

/// A job tool that fails for good, so the worker logs inside the job's span.
fn failing_tool() -> String {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fatal.sh");
    format!(
        "[tools.fatal]\ndescription = \"fails\"\ncommand = [\"{}\"]\nenv = {{ PATH = \"/usr/bin:/bin\" }}\nmax_attempts = 1\n",
        script.display()
    )
}

/// A value only the arguments carry: it must not reach a log line.
const PAYLOAD_MARK: &str = "payload-mark-5c1f0e";

/// Makes every kind of call (good, refused, unknown tool, wrong key, a failing job) and
/// returns the daemon's logs, after checking that no secret and no payload is in them.
async fn exercise_and_collect_logs(env: &TestEnv) -> String {
    let d = env.spawn_daemon().await;
    let mut c = env.client(&d).await;
    for tool in ["server_identity", "batch_sum", "start_long_task", "nope"] {
        let _ = c
            .call(tool, args(r#"{"numbers":[1],"seconds":1}"#))
            .await
            .unwrap();
    }
    let r = c
        .call("fatal", args(&format!(r#"{{"input":"{PAYLOAD_MARK}"}}"#)))
        .await
        .unwrap();
    let job = job_id(&r);
    let done = poll_until_finished(&mut c, &job, std::time::Duration::from_secs(30)).await;
    assert!(done.raw.contains("failed"), "{}", done.raw);
    let mut bad = env.client_settings(&d);
    bad.secret = mcpq::config::Secret::new(b"a-wrong-key-that-must-not-be-logged-either".to_vec());
    let mut bc = Client::connect(bad).await.unwrap();
    let _ = bc
        .call("batch_sum", args(r#"{"numbers":[1]}"#))
        .await
        .unwrap();
    let mut d = d;
    d.proc.sigterm().await;
    let logs = d.proc.logs();
    assert!(logs.contains("DEBUG"), "debug logging was on:\n{logs}");
    let s = env.settings();
    let mut secrets: Vec<String> =
        vec![String::from_utf8(s.server.secret.expose().to_vec()).unwrap()];
    for keys in s.clients.values() {
        for k in &keys.secrets {
            secrets.push(String::from_utf8(k.expose().to_vec()).unwrap());
        }
    }
    secrets.push("a-wrong-key-that-must-not-be-logged-either".into());
    for secret in secrets {
        assert!(!logs.contains(&secret), "a secret leaked into the logs");
    }
    assert!(
        !logs.contains(PAYLOAD_MARK),
        "a payload leaked into the logs:\n{logs}"
    );
    logs.replace(&job, "<JOB>")
}

#[tokio::test]
async fn secrets_never_appear_in_logs() {
    let env = TestEnv::new(&failing_tool()).set("MCPQ__LOG__FORMAT", "text");
    let logs = exercise_and_collect_logs(&env).await;
    assert!(logs.contains("job failed"), "{logs}");
}

#[tokio::test]
async fn json_logs_carry_request_and_job_fields_and_never_secrets() {
    let env = TestEnv::new(&failing_tool()).set("MCPQ__LOG__FORMAT", "json");
    let logs = exercise_and_collect_logs(&env).await;
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .filter(|l| !l.starts_with("listening on"))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for l in &lines {
        for key in ["ts_ms", "level", "target", "message"] {
            assert!(l.get(key).is_some(), "{key} missing: {l}");
        }
    }
    // A refused call (unknown tool) is logged with who asked and what.
    let refused = lines
        .iter()
        .find(|l| l["message"] == "call refused" && l["code"] == "unknown_tool")
        .unwrap_or_else(|| panic!("no refused-call line:\n{logs}"));
    assert_eq!(refused["client_id"], "client-001", "{refused}");
    assert_eq!(refused["tool"], "nope", "{refused}");
    assert!(
        refused["request_id"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{refused}"
    );
    // The failing job's line carries the job, its tool, its owner and the attempt.
    let failed = lines
        .iter()
        .find(|l| l["message"] == "job failed")
        .unwrap_or_else(|| panic!("no job-failed line:\n{logs}"));
    assert_eq!(failed["job_id"], "<JOB>", "{failed}");
    assert_eq!(failed["tool"], "fatal", "{failed}");
    assert_eq!(failed["client_id"], "client-001", "{failed}");
    assert_eq!(failed["attempt"], 1, "{failed}");
}

const SEES_SOME: &str = "client-003";
const SEES_SOME_SECRET: &str = "client-003-secret-0123456789abcdef0123456789abcdef";
const SEES_SOME_TOKEN: &str = "client-003-mcp-token-000000000000000000000000000000000";
const DEV_TOKEN: &str = "dev-only-mcp-token-00000000000000000000000000000000";

fn sees_some(globs: &str) -> String {
    use sha2::Digest;
    let hash = hex::encode(sha2::Sha256::digest(SEES_SOME_TOKEN.as_bytes()));
    format!(
        "[clients.{SEES_SOME}]\nsecret = \"{SEES_SOME_SECRET}\"\ntoken_sha256 = \"{hash}\"\n\
         tools = {globs}\n"
    )
}

/// A 2026-07-28 `/mcp` request with `token`: the JSON-RPC answer.
async fn mcp(
    d: &Daemon,
    token: &str,
    method: &str,
    params: serde_json::Value,
) -> serde_json::Value {
    let (headers, body) = modern_request(token, method, params, serde_json::json!({}));
    let mut req = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
         Content-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    let (_, body) = raw_http(d.addr, req.as_bytes()).await;
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn listed(answer: &serde_json::Value) -> Vec<String> {
    let mut names: Vec<String> = answer["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_client_sees_and_calls_only_its_tools_on_both_endpoints() {
    let env = TestEnv::new(&sees_some(r#"["batch_*", "start_long_task", "poll_?ob"]"#))
        .set("MCPQ__SERVER__EMBEDDED_WORKERS", "0");
    let d = env.spawn_daemon().await;
    let mut settings = env.client_settings(&d);
    settings.client_id = SEES_SOME.into();
    settings.secret = mcpq::config::Secret::new(SEES_SOME_SECRET.as_bytes().to_vec());
    let mut some = Client::connect(settings).await.unwrap();

    // /v1/call: its tools answer; another is unknown to it exactly as a tool that does not
    // exist is (same code, same HTTP status).
    let r = some
        .call("batch_sum", args(r#"{"numbers":[1,2]}"#))
        .await
        .unwrap();
    assert!(r.ok, "{}", r.raw);
    let job = some
        .call("start_long_task", args(r#"{"seconds":1}"#))
        .await
        .unwrap();
    let id = job_id(&job);
    let r = some
        .call("poll_job", args(&format!(r#"{{"job_id":"{id}"}}"#)))
        .await
        .unwrap();
    assert!(r.ok, "{}", r.raw);
    let hidden = some.envelope("server_identity", args("{}"));
    let absent = some.envelope("no_such_tool", args("{}"));
    assert_eq!(
        code_of(&mut some, &hidden).await,
        (404, "unknown_tool".into())
    );
    assert_eq!(
        code_of(&mut some, &absent).await,
        (404, "unknown_tool".into())
    );

    // /mcp: tools/list shows only its tools; calling another is -32602 unknown tool.
    let list = mcp(&d, SEES_SOME_TOKEN, "tools/list", serde_json::json!({})).await;
    assert_eq!(
        listed(&list),
        vec!["batch_sum", "poll_job", "start_long_task"],
        "{list}"
    );
    for tool in ["server_identity", "cancel_job", "no_such_tool"] {
        let a = mcp(
            &d,
            SEES_SOME_TOKEN,
            "tools/call",
            serde_json::json!({"name": tool, "arguments": {}}),
        )
        .await;
        assert_eq!(a["error"]["code"], -32602, "{tool}: {a}");
        assert_eq!(
            a["error"]["message"].as_str().unwrap_or_default(),
            format!("invalid params: unknown tool {tool:?}"),
            "{a}"
        );
    }
    let ok = mcp(
        &d,
        SEES_SOME_TOKEN,
        "tools/call",
        serde_json::json!({"name": "batch_sum", "arguments": {"numbers": [2, 3]}}),
    )
    .await;
    assert!(ok["result"].is_object(), "{ok}");

    // A client without `tools` sees every tool.
    let all = listed(&mcp(&d, DEV_TOKEN, "tools/list", serde_json::json!({})).await);
    assert!(
        all.contains(&"server_identity".to_string()) && all.len() > 3,
        "{all:?}"
    );
    let mut dev = env.client(&d).await;
    let r = dev.call("server_identity", args("{}")).await.unwrap();
    assert!(r.ok, "{}", r.raw);
}

#[tokio::test]
async fn a_tools_glob_that_does_not_parse_is_refused_with_its_client() {
    let env = TestEnv::new(&sees_some(r#"["batch_[sum"]"#));
    let (code, out, err) = env.run(&["config", "check"]).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("clients.client-003.tools") && err.contains("batch_[sum"),
        "{err}"
    );
}
