//! The tool registry: every tool callable over the wire, sync or job, with its argument schema.
//!
//! A tool is one file in this folder. Synchronous tools implement [`SyncTool`] and
//! answer in the request; job tools implement [`JobTool`]: the server validates their
//! arguments and enqueues a durable job, and a worker later calls [`JobTool::run`].
//! The registry is the single list both the `mcp/0.1` endpoint and (later) the
//! standard MCP endpoint read from.
//!
//! Tools must not touch HTTP, signatures or SQL directly; they get what they need
//! through [`CallCtx`] and [`JobCtx`].

mod args;
mod batch_sum;
mod cancel_job;
mod noop;
mod poll_job;
mod server_identity;
mod start_long_task;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

pub use args::ArgReader;
use tokio_util::sync::CancellationToken;

use crate::json::{Json, Object};
use crate::protocol::{CallError, ClientId, Status};
use crate::store::{BoxFuture, Store};

/// What a synchronous tool gets to work with.
pub struct CallCtx<'a> {
    pub client_id: &'a ClientId,
    pub now_ms: i64,
    pub store: &'a dyn Store,
    pub server: &'a ServerInfo,
}

/// Facts about this server that tools may report.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub server_id: String,
    pub fingerprint: String,
    pub capabilities: Object,
}

/// A successful answer: the status literal and the result object.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: Status,
    pub result: Option<Object>,
}

impl Reply {
    pub fn ok(result: Object) -> Reply {
        Reply {
            status: Status::Ok,
            result: Some(result),
        }
    }
}

pub trait SyncTool: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    fn description(&self) -> &'static str;
    /// JSON Schema of `args`.
    fn input_schema(&self) -> serde_json::Value;
    fn call<'a>(
        &'a self,
        ctx: CallCtx<'a>,
        args: &'a Object,
    ) -> BoxFuture<'a, Result<Reply, CallError>>;
}

/// A validated job request, ready to enqueue.
#[derive(Debug, Clone)]
pub struct JobRequest {
    /// Arguments to store (canonical JSON is taken of this).
    pub args: Object,
    pub idempotency_key: Option<String>,
}

/// How a job attempt ended badly.
#[derive(Debug, Clone, thiserror::Error)]
pub enum JobError {
    /// Worth another attempt (after back-off).
    #[error("{0}")]
    Retryable(String),
    /// No attempt will ever succeed.
    #[error("{0}")]
    Fatal(String),
}

/// What a running job gets: its cancellation signal and a place to report progress.
#[derive(Clone)]
pub struct JobCtx {
    pub cancel: CancellationToken,
    progress: Arc<Mutex<Option<Object>>>,
}

impl JobCtx {
    pub fn new(cancel: CancellationToken) -> JobCtx {
        JobCtx {
            cancel,
            progress: Arc::new(Mutex::new(None)),
        }
    }

    /// Records progress; the worker persists the latest value with its next heartbeat.
    pub fn report_progress(&self, progress: Object) {
        *self.progress.lock().unwrap_or_else(|p| p.into_inner()) = Some(progress);
    }

    /// The latest progress reported, taken (so unchanged progress is not rewritten).
    pub fn take_progress(&self) -> Option<Object> {
        self.progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

pub trait JobTool: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    fn description(&self) -> &'static str;
    fn input_schema(&self) -> serde_json::Value;
    /// Validates arguments at call time, so a bad call is refused before anything is stored.
    fn validate(&self, args: &Object) -> Result<JobRequest, CallError>;
    /// Runs one attempt. Must return promptly once `ctx.cancel` fires.
    fn run(&self, ctx: JobCtx, args: Object) -> BoxFuture<'static, Result<Object, JobError>>;
}

#[derive(Clone)]
pub enum Tool {
    Sync(Arc<dyn SyncTool>),
    Job(Arc<dyn JobTool>),
}

impl Tool {
    pub fn name(&self) -> &'static str {
        match self {
            Tool::Sync(t) => t.name(),
            Tool::Job(t) => t.name(),
        }
    }
    pub fn description(&self) -> &'static str {
        match self {
            Tool::Sync(t) => t.description(),
            Tool::Job(t) => t.description(),
        }
    }
    pub fn input_schema(&self) -> serde_json::Value {
        match self {
            Tool::Sync(t) => t.input_schema(),
            Tool::Job(t) => t.input_schema(),
        }
    }
}

/// All tools by name.
#[derive(Clone, Default)]
pub struct Registry {
    tools: BTreeMap<&'static str, Tool>,
}

/// Limits tools enforce on their arguments.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_batch_numbers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_batch_numbers: 10_000,
        }
    }
}

impl Registry {
    /// The built-in tools. `bench_tools` adds tools that exist only for benchmarks.
    pub fn builtin(limits: Limits, bench_tools: bool) -> Registry {
        let mut r = Registry::default();
        r.add(Tool::Sync(Arc::new(server_identity::ServerIdentity)));
        r.add(Tool::Sync(Arc::new(batch_sum::BatchSum {
            max: limits.max_batch_numbers,
        })));
        r.add(Tool::Job(Arc::new(start_long_task::StartLongTask)));
        r.add(Tool::Sync(Arc::new(poll_job::PollJob)));
        r.add(Tool::Sync(Arc::new(cancel_job::CancelJob)));
        if bench_tools {
            r.add(Tool::Job(Arc::new(noop::Noop)));
        }
        r
    }

    pub fn add(&mut self, tool: Tool) {
        self.tools.insert(tool.name(), tool);
    }

    pub fn get(&self, name: &str) -> Option<&Tool> {
        self.tools.get(name)
    }

    pub fn job_tool(&self, name: &str) -> Option<&Arc<dyn JobTool>> {
        match self.tools.get(name) {
            Some(Tool::Job(t)) => Some(t),
            _ => None,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Tool> {
        self.tools.values()
    }

    /// The `capabilities` object `server_identity` reports.
    pub fn capabilities(&self, window_ms: i64, max_body_bytes: usize) -> Object {
        let tools = self
            .iter()
            .map(|t| {
                let kind = match t {
                    Tool::Sync(_) => "sync",
                    Tool::Job(_) => "job",
                };
                Json::Object(Object::from_pairs([
                    ("name".to_string(), Json::str(t.name())),
                    ("kind".to_string(), Json::str(kind)),
                    ("description".to_string(), Json::str(t.description())),
                    (
                        "input_schema".to_string(),
                        Json::from_serde(&t.input_schema()),
                    ),
                ]))
            })
            .collect();
        Object::from_pairs([
            ("async".to_string(), Json::Bool(true)),
            ("stateless".to_string(), Json::Bool(true)),
            ("protocol".to_string(), Json::str(crate::protocol::VERSION)),
            ("durable_jobs".to_string(), Json::Bool(true)),
            ("replay_protection".to_string(), Json::Bool(true)),
            ("timestamp_window_ms".to_string(), Json::Int(window_ms)),
            (
                "max_body_bytes".to_string(),
                Json::Int(max_body_bytes as i64),
            ),
            ("tools".to_string(), Json::Array(tools)),
        ])
    }
}
