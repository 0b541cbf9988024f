//! rmcp (the official Rust MCP SDK, 3.11) as the client of `/mcp`: the handshake, the tool
//! list, a sync call and a held job call, with a bearer token; and no way in without one.

use std::time::Duration;

use crate::common::*;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::ServiceExt;

const TOKEN: &str = "dev-only-mcp-token-00000000000000000000000000000000";

fn transport(url: &str, token: Option<&str>) -> StreamableHttpClientTransport<reqwest::Client> {
    let mut config = StreamableHttpClientTransportConfig::with_uri(url);
    if let Some(t) = token {
        config = config.auth_header(t);
    }
    StreamableHttpClientTransport::from_config(config)
}

fn args(json: &str) -> serde_json::Map<String, serde_json::Value> {
    serde_json::from_str(json).unwrap()
}

#[tokio::test]
async fn rmcp_lists_tools_and_calls_a_sync_and_a_job_tool() {
    let env = TestEnv::new(&format!(
        "[tools.echo]\ndescription = \"Echoes its arguments\"\ncommand = [\"{}/tests/fixtures/echo_tool.sh\"]\nenv = {{ PATH = \"/usr/bin:/bin\" }}\n",
        env!("CARGO_MANIFEST_DIR")
    ));
    let d = env.spawn_daemon().await;
    let url = format!("http://{}/mcp", d.addr);
    let client = tokio::time::timeout(
        Duration::from_secs(10),
        ().serve(transport(&url, Some(TOKEN))),
    )
    .await
    .expect("handshake in time")
    .expect("handshake");
    let tools = client.list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    for t in ["batch_sum", "echo", "poll_job", "start_long_task"] {
        assert!(names.contains(&t), "{t} missing from {names:?}");
    }
    let sum = client
        .call_tool(
            CallToolRequestParams::new("batch_sum").with_arguments(args(r#"{"numbers":[1,2,4]}"#)),
        )
        .await
        .unwrap();
    assert_eq!(sum.is_error, Some(false));
    assert_eq!(sum.structured_content.as_ref().unwrap()["total"], 7.0);
    // A job tool: the call is held until the durable job ran on the embedded worker.
    let echoed = client
        .call_tool(CallToolRequestParams::new("echo").with_arguments(args(r#"{"text":"hi"}"#)))
        .await
        .unwrap();
    assert_eq!(echoed.is_error, Some(false), "{echoed:?}");
    assert_eq!(
        echoed.structured_content.as_ref().unwrap()["args"]["text"],
        "hi"
    );
    client.cancel().await.unwrap();

    // Without the token the handshake itself is refused.
    let refused = tokio::time::timeout(Duration::from_secs(10), ().serve(transport(&url, None)))
        .await
        .expect("an answer in time");
    assert!(refused.is_err(), "a client without a token got in");
}
