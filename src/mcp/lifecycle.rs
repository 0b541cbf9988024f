//! The lifecycle methods of `/mcp`: what the server says of itself (`initialize` in
//! 2025-11-25, `server/discover` in 2026-07-28) and the capabilities it declares.
//!
//! It must not read the registry or the store.

use serde_json::{json, Value};

use super::call::*;
use super::Era;

pub fn server_info() -> Value {
    json!({"name": "mcpq", "title": "mcpq tool-call daemon", "version": env!("CARGO_PKG_VERSION")})
}

pub fn capabilities(era: Era) -> Value {
    match era {
        Era::Legacy => json!({
            "tools": {"listChanged": false},
            "prompts": {"listChanged": false},
            "resources": {"listChanged": false},
            "completions": {},
            // No `list`: listing a client's jobs would walk the whole table.
            "tasks": {"cancel": {}, "requests": {"tools": {"call": {}}}},
        }),
        Era::Modern => json!({
            "tools": {},
            "prompts": {},
            "resources": {},
            "completions": {},
            "extensions": { TASKS_EXTENSION: {} },
        }),
    }
}

const INSTRUCTIONS: &str = "Tools of this daemon. Long tools run as durable jobs: ask for a task, \
or wait for the result (send a progressToken to get progress, whose first message names the job).";

/// `tools/list`: every tool of the registry, in name order.
pub fn initialize_result(version: &str) -> Value {
    json!({
        "protocolVersion": version,
        "capabilities": capabilities(Era::Legacy),
        "serverInfo": server_info(),
        "instructions": INSTRUCTIONS,
    })
}

/// `server/discover` (2026-07-28).
pub fn discover_result(supported: &[&str]) -> Value {
    json!({
        "supportedVersions": supported,
        "capabilities": capabilities(Era::Modern),
        "instructions": INSTRUCTIONS,
        "ttlMs": 60_000,
        "cacheScope": "public",
    })
}
