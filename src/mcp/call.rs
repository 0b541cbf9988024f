//! One `/mcp` request's context ([`Call`]: who asked, in which era, with which declared
//! capabilities, over which transport state) and the constants the methods share.
//!
//! It must not implement a method: `lifecycle`, `catalog`, `tool_call` and `tasks` do.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::error::McpError;
use super::Era;
use super::Mcp;
use crate::app::App;
use crate::envelope::ClientId;

/// Tasks extension id (2026-07-28) and the related-task `_meta` key.
pub const TASKS_EXTENSION: &str = "io.modelcontextprotocol/tasks";
pub const RELATED_TASK: &str = "io.modelcontextprotocol/related-task";
/// Where a held call names its durable job, in progress messages' and results' `_meta`.
pub const JOB_META: &str = "io.mcpq/job_id";
/// Where a `tools/call` of a job tool asks for a priority or a schedule (docs/FLOW.md).
pub const JOB_OPTIONS_META: &str = "io.mcpq/job";
/// A held call streaming progress re-reads its job at most this far apart (or
/// `mcp.held_poll_ms` if shorter), so that progress steps are not skipped; other held calls
/// and `tasks/result` wait for their job's signal, re-reading every `mcp.held_poll_ms`.
pub const PROGRESS_POLL: Duration = Duration::from_millis(100);
/// How often a client should poll a task.
pub const POLL_INTERVAL_MS: u64 = 1000;

/// One request's context: who asked, in which era, with which declared capabilities.
#[derive(Clone)]
pub struct Call {
    /// The transport (and through it the core) this request came in on.
    pub mcp: Arc<Mcp>,
    pub client: ClientId,
    /// What an OAuth access token allows; `None` for a static token (everything).
    pub grant: Option<Arc<crate::oauth::Grant>>,
    pub era: Era,
    pub wants_tasks: bool,
    /// The client capabilities a 2026-07-28 request declared; `None` in 2025-11-25.
    pub capabilities: Option<Value>,
    /// The client accepts an SSE answer (a 2025-11-25 tool may then ask it questions).
    pub streams: bool,
    /// Where a sync tool's log messages go while the call's stream is open.
    pub logs: Option<crate::tools::LogSink>,
    /// The JSON-RPC id (for the audit record) and whether the call stored a job (whose
    /// audit record then committed with it).
    pub request_id: String,
    pub enqueued: Arc<std::sync::atomic::AtomicBool>,
}

pub fn str_param<'a>(params: &'a Value, key: &str) -> Result<&'a str, McpError> {
    params
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| McpError::InvalidParams(format!("{key} must be a string")))
}

impl Call {
    /// The shared core.
    pub fn app(&self) -> &App {
        &self.mcp.app
    }

    /// The request may see and call `tool`.
    pub fn may_call(&self, tool: &str) -> bool {
        self.sees(tool) && self.grant.as_ref().is_none_or(|g| g.can_call(tool))
    }

    /// The client sees `tool` (`[clients.ID] tools`): one it does not is absent to it.
    pub fn sees(&self, tool: &str) -> bool {
        self.app().may_see(&self.client.0, tool)
    }

    /// Refuses (403 `insufficient_scope`) a call of a tool the token's scopes do not cover.
    pub fn check_tool_scope(&self, tool: &str) -> Result<(), McpError> {
        match &self.grant {
            Some(g) if !g.can_call(tool) => Err(self.mcp.insufficient_scope(g.scope_for(tool))),
            _ => Ok(()),
        }
    }

    /// Refuses (403) a tasks method to a token without the tasks scope.
    pub fn check_tasks_scope(&self) -> Result<(), McpError> {
        match &self.grant {
            Some(g) if !g.can_use_tasks() => {
                Err(self.mcp.insufficient_scope(g.policy.tasks_scope.clone()))
            }
            _ => Ok(()),
        }
    }
}
