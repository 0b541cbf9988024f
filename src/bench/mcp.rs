//! MCP load: closed loops of JSON-RPC `tools/call`s against any MCP server's endpoint
//! (mcpq's `/mcp` or a peer's), as a call or as a task.
//!
//! It must not be used by the daemon itself.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::load::{closed_loops, Report};
use crate::config::ClientSettings;

/// What an MCP load run sends: the JSON-RPC body and headers of one `tools/call`, and
/// what a good answer contains.
#[derive(Clone)]
pub struct McpLoad {
    pub path: String,
    pub token: Option<String>,
    pub headers: Vec<(String, String)>,
    /// The JSON-RPC message, with `"id":1` (each call gets its own id).
    pub body: String,
    /// A byte string every successful answer contains (e.g. `"result"`).
    pub expect: String,
}

/// How a load's `tools/call` travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// 2025-11-25, no session, nothing declared: the least a server has to read.
    V2025,
    /// 2026-07-28, with the per-request `_meta` declaring what mcpq declares to its own
    /// upstreams (elicitation, sampling, the tasks extension): the request mcpq sends a
    /// stateless upstream, so a pass-through can be compared with the same call made
    /// straight at the upstream.
    V2026,
    /// 2026-07-28 asking for a task (tasks extension): measures durable task creation.
    Task,
}

impl Wire {
    /// From `mcpq bench mcp`'s `--task` and `--wire REVISION`.
    pub fn of(task: bool, revision: &str) -> Wire {
        match (task, revision) {
            (true, _) => Wire::Task,
            (false, "2026-07-28") => Wire::V2026,
            _ => Wire::V2025,
        }
    }
}

impl McpLoad {
    /// One `tools/call` of `tool(args)` at `/mcp` with bearer `token` ("" for none), on
    /// `wire`.
    pub fn tools_call(tool: &str, args: serde_json::Value, token: String, wire: Wire) -> McpLoad {
        let modern = "2026-07-28";
        let modern_headers = || {
            vec![
                ("MCP-Protocol-Version".to_string(), modern.to_string()),
                ("Mcp-Method".to_string(), "tools/call".to_string()),
                ("Mcp-Name".to_string(), tool.to_string()),
            ]
        };
        let (headers, body, expect) = if wire == Wire::Task {
            let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": tool, "arguments": args, "_meta": {
                    "io.modelcontextprotocol/protocolVersion": modern,
                    "io.modelcontextprotocol/clientCapabilities": {"extensions": {"io.modelcontextprotocol/tasks": {}}}}}});
            (modern_headers(), body, "\"taskId\"".to_string())
        } else if wire == Wire::V2026 {
            let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": tool, "arguments": args, "_meta": {
                    "io.modelcontextprotocol/protocolVersion": modern,
                    "io.modelcontextprotocol/clientInfo": {"name": "mcpq-bench", "version": env!("CARGO_PKG_VERSION")},
                    "io.modelcontextprotocol/clientCapabilities": {
                        "elicitation": {"form": {}},
                        "sampling": {},
                        "extensions": {"io.modelcontextprotocol/tasks": {}}}}}});
            (modern_headers(), body, "\"result\"".to_string())
        } else {
            let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": tool, "arguments": args}});
            let headers = vec![("MCP-Protocol-Version".to_string(), "2025-11-25".to_string())];
            (headers, body, "\"result\"".to_string())
        };
        McpLoad {
            path: "/mcp".into(),
            token: Some(token).filter(|t| !t.is_empty()),
            headers,
            body: body.to_string(),
            expect,
        }
    }
}

/// Closed loops POSTing `load` (an MCP server: mcpq's `/mcp` or a peer's), counting an
/// answer good when it is 200 and contains `expect`.
pub async fn mcp_load(
    settings: ClientSettings,
    connections: usize,
    duration: Duration,
    load: McpLoad,
) -> Result<Report, crate::client::ClientError> {
    let mut headers = load.headers.clone();
    headers.push((
        "Accept".into(),
        "application/json, text/event-stream".into(),
    ));
    if let Some(t) = &load.token {
        headers.push(("Authorization".into(), format!("Bearer {t}")));
    }
    let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let template = load.body.clone();
    let expect = load.expect.clone().into_bytes();
    closed_loops(
        settings,
        connections,
        duration,
        &load.path,
        headers,
        move |i, _| {
            let n = counter.fetch_add(1, Ordering::Relaxed);
            template
                .replace("\"id\":1", &format!("\"id\":{}", (i as u64) << 32 | n))
                .into_bytes()
        },
        move |status, body| status == 200 && body.windows(expect.len()).any(|w| w == expect),
    )
    .await
}
