//! The synchronous tools, called as a user would.

use crate::common::*;
use mcpq::json::Json;
use sha2::{Digest, Sha256};

#[tokio::test]
async fn server_identity_reports_id_fingerprint_and_capabilities() {
    let env = TestEnv::new("");
    let d = env.spawn_daemon().await;
    let mut c = env.client(&d).await;
    let r = c.call("server_identity", args("{}")).await.unwrap();
    assert!(r.ok, "{}", r.raw);
    let res = r.result.unwrap();
    assert_eq!(
        res.get("server_id").and_then(Json::as_str),
        Some("mcp-server-001")
    );
    let fp = hex::encode(Sha256::digest(env.settings().server.secret.expose()))[..16].to_string();
    assert_eq!(
        res.get("fingerprint").and_then(Json::as_str),
        Some(fp.as_str())
    );
    let caps = res.get("capabilities").and_then(Json::as_object).unwrap();
    assert_eq!(caps.get("async"), Some(&Json::Bool(true)));
    assert_eq!(caps.get("stateless"), Some(&Json::Bool(true)));
    let Some(Json::Array(tools)) = caps.get("tools") else {
        panic!("no tools")
    };
    let names: Vec<&str> = tools
        .iter()
        .filter_map(|t| t.as_object()?.get("name")?.as_str())
        .collect();
    for t in [
        "batch_sum",
        "cancel_job",
        "poll_job",
        "server_identity",
        "start_long_task",
    ] {
        assert!(names.contains(&t), "{t} missing from {names:?}");
    }
    assert!(
        !names.contains(&"noop"),
        "bench-only tool exposed by default"
    );
    let extra = c.call("server_identity", args(r#"{"x":1}"#)).await.unwrap();
    assert_eq!(extra.error_code(), Some("invalid_args"));
}

#[tokio::test]
async fn batch_sum_sums_and_names_every_bad_field() {
    let env = TestEnv::new("");
    let d = env.spawn_daemon().await;
    let mut c = env.client(&d).await;
    for (a, want) in [
        (r#"{"numbers":[1,2,3]}"#, r#"{"count":3,"total":6.0}"#),
        (
            r#"{"numbers":[0.1,0.2]}"#,
            r#"{"count":2,"total":0.30000000000000004}"#,
        ),
        (r#"{"numbers":[1e16,1]}"#, r#"{"count":2,"total":1e+16}"#),
        (r#"{"numbers":[-1.5]}"#, r#"{"count":1,"total":-1.5}"#),
    ] {
        let r = c.call("batch_sum", args(a)).await.unwrap();
        assert!(
            r.raw.contains(&format!(r#""result":{want}"#)),
            "{a}: {}",
            r.raw
        );
    }
    let too_many = format!(r#"{{"numbers":[{}]}}"#, vec!["1"; 10_001].join(","));
    for (a, needle) in [
        (
            r#"{"numbers":[]}"#,
            "field \"numbers\" must have at least 1 item",
        ),
        (
            r#"{"numbers":[1,"2"]}"#,
            "field \"numbers[1]\" must be a number",
        ),
        (
            r#"{"numbers":[1,true]}"#,
            "field \"numbers[1]\" must be a number",
        ),
        (
            r#"{"numbers":[NaN]}"#,
            "field \"numbers[0]\" must be a finite number",
        ),
        (
            r#"{"numbers":[Infinity]}"#,
            "field \"numbers[0]\" must be a finite number",
        ),
        (
            r#"{"numbers":[1e308,1e308]}"#,
            "sums beyond the float range",
        ),
        (r#"{"numbers":[1],"more":2}"#, "unexpected field \"more\""),
        (r#"{}"#, "field \"numbers\" is required"),
        (too_many.as_str(), "at most 10000"),
    ] {
        let r = c.call("batch_sum", args(a)).await.unwrap();
        assert_eq!(r.error_code(), Some("invalid_args"), "{a}: {}", r.raw);
        assert!(
            r.error.as_deref().unwrap().contains(needle),
            "{a}: {}",
            r.raw
        );
    }
}

#[tokio::test]
async fn unknown_tool_is_404() {
    let env = TestEnv::new("");
    let d = env.spawn_daemon().await;
    let mut c = env.client(&d).await;
    let e = c.envelope("rm_rf", args("{}"));
    let (s, r) = c.send(&e).await.unwrap();
    assert_eq!(
        (s, r.error.as_deref()),
        (404, Some("unknown_tool: unknown tool \"rm_rf\""))
    );
}
