//! Runners: how one call or attempt of a config tool is carried out, by a child process
//! ([`command`]) or an HTTP request ([`http`]).
//!
//! A runner gets an [`Invocation`] (the args as canonical JSON, who and what it is for, its
//! deadline, a cancellation token and a progress sink) and answers with the result object
//! or a [`JobError`] that says whether another attempt is worth it. The same runners serve
//! job tools (in workers) and sync tools (in the daemon).
//!
//! Runners must not touch the store or decide a job's next state.

pub mod command;
pub mod http;
pub(crate) mod spawn;
pub mod upstream;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::config::tool_table::{Target, ToolDef};
use crate::config::ConfigError;
use crate::json::Object;
use crate::tools::{JobCtx, JobError};

/// What a tool that asks its client for input gets back (docs/TOOLS.md "Asking the
/// client for input"): the capabilities the client declared (a sync call of a 2026-07-28
/// client; unknown for a job), its answers to the previous round's requests, and the
/// tool's own state from that round (checked by the daemon). JSON text.
#[derive(Debug, Clone, Default)]
pub struct InputRound {
    pub client_capabilities: Option<String>,
    pub input_responses: Option<String>,
    pub request_state: Option<String>,
}

/// One call or attempt.
pub struct Invocation<'a> {
    pub tool: &'a str,
    pub client_id: &'a str,
    /// `None` for a sync call.
    pub job_id: Option<&'a str>,
    pub attempt: u32,
    /// The arguments as canonical JSON.
    pub args_json: &'a str,
    pub timeout: Duration,
    /// Cancellation and progress.
    pub ctx: JobCtx,
    /// A standard MCP call's input round; `None` on `/v1/call`, for jobs and in 2025-11-25.
    pub input: Option<&'a InputRound>,
    /// The W3C context of the call or attempt, when traced (docs/TRACING.md): a command
    /// gets `TRACEPARENT`/`TRACESTATE`, an HTTP tool `traceparent`/`tracestate` headers.
    pub trace: Option<crate::otel::TraceHeaders>,
}

#[derive(Debug, Clone)]
pub enum Runner {
    Command(command::CommandRunner),
    Http(http::HttpRunner),
    Upstream(upstream::UpstreamRunner),
}

impl Runner {
    /// `process_slots` bounds the tool processes of this whole process (all command tools).
    /// `upstreams`: this process's upstream sessions (for `Target::Upstream`).
    pub fn build(
        def: &ToolDef,
        process_slots: Arc<Semaphore>,
        upstreams: Option<&crate::tools::upstream::Upstreams>,
    ) -> Result<Runner, ConfigError> {
        match &def.target {
            Target::Command { .. } => {
                command::CommandRunner::new(&def.target, def.max_output_bytes, process_slots)
                    .map(Runner::Command)
                    .ok_or_else(|| {
                        ConfigError::Invalid(format!("tools.{}: not a command", def.name))
                    })
            }
            Target::Http { .. } => {
                http::HttpRunner::new(&def.name, &def.target, def.max_output_bytes)
                    .map(Runner::Http)
            }
            Target::Upstream { upstream, tool } => match upstreams {
                Some(u) => Ok(Runner::Upstream(upstream::UpstreamRunner {
                    upstreams: u.clone(),
                    upstream: upstream.clone(),
                    tool: tool.clone(),
                    max_output: def.max_output_bytes,
                    resume: def.on_worker_crash == crate::jobs::CrashPolicy::Resume,
                })),
                None => Err(ConfigError::Invalid(format!(
                    "tools.{}: an upstream tool without upstreams",
                    def.name
                ))),
            },
        }
    }

    pub async fn run(&self, inv: &Invocation<'_>) -> Result<Object, JobError> {
        match self {
            // Each on the heap at its own size: a sync call's future is moved into its box
            // whole, and inline it would be the largest runner's (12 KiB, a command's).
            Runner::Command(c) => Box::pin(c.run(inv)).await,
            Runner::Http(h) => Box::pin(h.run(inv)).await,
            Runner::Upstream(u) => Box::pin(u.run(inv)).await,
        }
    }
}

/// Whether an attempt's error (as recorded in the job's history) is the tool's own answer
/// (the process exited non-zero, the endpoint refused with a 4xx) rather than a failure to
/// get one (a crash, a timeout, output that is not a JSON object, a lost worker). MCP tells
/// the two apart: a tool's error is a result with `isError`, the rest a protocol error.
pub fn reported_by_tool(error: &str) -> bool {
    let status = |rest: &str| rest.split([' ', ';', ':']).next().unwrap_or("").to_string();
    if error.starts_with(upstream_call_tool_error()) {
        return true;
    }
    if let Some(rest) = error.strip_prefix("exit ") {
        return status(rest).parse::<i32>().is_ok();
    }
    if let Some(rest) = error.strip_prefix("http ") {
        return status(rest)
            .parse::<u16>()
            .is_ok_and(|c| (400..500).contains(&c));
    }
    false
}

fn upstream_call_tool_error() -> &'static str {
    crate::tools::upstream::call::TOOL_ERROR
}

/// The end of a process's stderr or a response body as text for the error history:
/// lossy UTF-8, trimmed, cut at a character boundary.
pub fn tail_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::reported_by_tool;

    #[test]
    fn a_tool_s_own_error_is_told_apart_from_a_failure_to_run_it() {
        assert!(reported_by_tool("exit 3; stderr: no such file"));
        assert!(reported_by_tool("exit 2"));
        assert!(reported_by_tool("http 404: not here"));
        for other in [
            "invalid_output: stdout is not one JSON object (EOF)",
            "timeout: no result within 5 s; the process group was terminated",
            "killed by signal 9",
            "lease_expired",
            "http 503: busy",
            "spawn_failed: /x: No such file",
            "exited",
        ] {
            assert!(!reported_by_tool(other), "{other}");
        }
    }
}
