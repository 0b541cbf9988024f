//! The tool registry: every tool callable over the wire, sync or job, with its argument schema.
//!
//! A tool is one file in this folder. Synchronous tools implement [`SyncTool`] and
//! answer in the request; job tools implement [`JobTool`]: the server validates their
//! arguments and enqueues a durable job, and a worker later calls [`JobTool::run`].
//! The registry is the single list both the `mcp/0.1` endpoint and (later) the
//! standard MCP endpoint read from. Built-in tools are one file each; tools declared in
//! the configuration (`[tools.NAME]`) are [`config_tool`]s, run by a [`runner`].
//!
//! Tools must not touch the daemon's HTTP, signatures or SQL directly; they get what they
//! need through [`CallCtx`] and [`JobCtx`].

mod args;
mod batch_sum;
mod cancel_job;
pub mod config_tool;
mod noop;
mod poll_job;
pub mod runner;
pub mod schema;
mod server_identity;
mod start_long_task;
pub mod upstream;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

pub use args::ArgReader;
use tokio_util::sync::CancellationToken;

pub use crate::config::tool_table::TaskSupport;
use crate::config::{ConfigError, Settings};
use crate::envelope::{CallError, ClientId, Status};
use crate::jobs::{CrashPolicy, JobId, RetryPolicy};
use crate::json::{Json, Object};
use crate::store::{BoxFuture, ClaimFilter, Store};

/// What a synchronous tool gets to work with.
pub struct CallCtx<'a> {
    pub client_id: &'a ClientId,
    pub now_ms: i64,
    pub store: &'a dyn Store,
    pub server: &'a ServerInfo,
    /// A standard MCP client's input round (see [`runner::InputRound`]).
    pub input: Option<&'a runner::InputRound>,
    /// Where the tool's log messages go, if the client listens.
    pub logs: Option<LogSink>,
}

pub use crate::asks::asks_for_input;

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
    fn name(&self) -> &str;
    fn description(&self) -> &str;
    /// JSON Schema of `args`.
    fn input_schema(&self) -> serde_json::Value;
    /// JSON Schema every result matches, if the tool promises one.
    fn output_schema(&self) -> Option<serde_json::Value> {
        None
    }
    /// An upstream's tool: the `title` and `annotations` it lists.
    fn presentation(&self) -> Option<&serde_json::Map<String, serde_json::Value>> {
        None
    }
    /// Whether it can send log messages (a command tool's fd 3): only then does a
    /// listening MCP client's call run behind a stream. Built-in tools never log.
    fn may_log(&self) -> bool {
        false
    }
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
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// Worth another attempt (after back-off).
    #[error("{0}")]
    Retryable(String),
    /// Worth another attempt, but not sooner than `after_ms` (an HTTP `Retry-After`).
    #[error("{0}")]
    RetryAfter(String, i64),
    /// No attempt will ever succeed.
    #[error("{0}")]
    Fatal(String),
}

/// Which job an attempt belongs to, for tools that pass it on (environment, headers).
#[derive(Debug, Clone)]
pub struct JobMeta {
    pub job_id: JobId,
    pub attempt: u32,
    pub client_id: ClientId,
    /// What a client answered to the previous attempt's question, and its state.
    pub input: Option<runner::InputRound>,
}

/// Where a sync call's log messages go (MCP `notifications/message`): each a `{level,
/// message, …}` object. Bounded: a tool that logs faster than the client reads loses lines.
pub type LogSink = tokio::sync::mpsc::Sender<Object>;

/// What a running job gets: its identity, its cancellation signal and a place to report
/// progress (and, for a sync call whose client listens, log messages).
#[derive(Clone)]
pub struct JobCtx {
    pub cancel: CancellationToken,
    pub meta: Option<Arc<JobMeta>>,
    progress: Arc<Mutex<Option<Object>>>,
    logs: Option<LogSink>,
    keep: Option<KeepState>,
}

/// Writes a string the job's next attempt gets (`JobMeta::input`'s `request_state`) while
/// this attempt runs, fenced to it; `Ok(false)` when the attempt no longer holds the job.
pub type KeepState =
    Arc<dyn Fn(Option<String>) -> BoxFuture<'static, Result<bool, String>> + Send + Sync>;

impl JobCtx {
    pub fn new(cancel: CancellationToken) -> JobCtx {
        JobCtx {
            cancel,
            meta: None,
            progress: Arc::new(Mutex::new(None)),
            logs: None,
            keep: None,
        }
    }

    /// Lets the attempt keep state for the next one (a worker's job attempts).
    pub fn with_keep(mut self, keep: KeepState) -> JobCtx {
        self.keep = Some(keep);
        self
    }

    /// Keeps `state` for the job's next attempt, durably before it returns (an upstream
    /// task's id, so a lost worker's successor resumes it). `Ok(false)`: nothing to keep it
    /// in (a sync call) or the attempt lost its job.
    pub async fn keep_state(&self, state: Option<String>) -> Result<bool, String> {
        match &self.keep {
            Some(keep) => keep(state).await,
            None => Ok(false),
        }
    }

    /// Sends the tool's log messages to `logs` (`None`: they are dropped).
    pub fn with_logs(mut self, logs: Option<LogSink>) -> JobCtx {
        self.logs = logs;
        self
    }

    /// A log message from the tool; dropped when nobody listens or the client lags.
    pub fn log(&self, message: Object) {
        if let Some(tx) = &self.logs {
            let _ = tx.try_send(message);
        }
    }

    pub fn for_job(cancel: CancellationToken, meta: JobMeta) -> JobCtx {
        JobCtx {
            meta: Some(Arc::new(meta)),
            ..JobCtx::new(cancel)
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

/// How a job tool's jobs are stored, claimed and retried.
#[derive(Debug, Clone, PartialEq)]
pub struct JobPolicy {
    /// The tool's version, recorded on each job; only a worker with the same version of
    /// the tool runs it.
    pub definition: String,
    pub on_crash: CrashPolicy,
    /// `None`: `jobs.max_attempts`.
    pub max_attempts: Option<u32>,
    /// `None`: the `[jobs]` back-off.
    pub retry: Option<RetryPolicy>,
    /// Running jobs of this tool across all workers; `None`: no limit.
    pub concurrency: Option<u32>,
    /// Its jobs' priority when the call does not ask for one (docs/FLOW.md).
    pub priority: u8,
    /// Running jobs per key across all workers; `None`: no such limit.
    pub per_key: Option<(crate::jobs::ConcurrencyKey, u32)>,
    /// Starts per second across all workers; `None`: no limit.
    pub rate: Option<f64>,
    /// A call repeating one of its client's calls of this tool with the same canonical
    /// arguments within this many ms gets that call's job (`dedupe_secs`); `None`: off.
    pub dedupe_ms: Option<i64>,
}

impl JobPolicy {
    /// Its jobs are claimed one tool at a time (a limit of some kind holds across workers).
    pub fn is_capped(&self) -> bool {
        self.concurrency.is_some() || self.per_key.is_some() || self.rate.is_some()
    }
}

pub use crate::store::BUILTIN_DEFINITION;

pub trait JobTool: Send + Sync + 'static {
    fn name(&self) -> &str;
    fn description(&self) -> &str;
    fn input_schema(&self) -> serde_json::Value;
    fn output_schema(&self) -> Option<serde_json::Value> {
        None
    }
    /// An upstream's tool: the `title` and `annotations` it lists.
    fn presentation(&self) -> Option<&serde_json::Map<String, serde_json::Value>> {
        None
    }
    fn policy(&self) -> JobPolicy {
        JobPolicy {
            definition: BUILTIN_DEFINITION.to_string(),
            on_crash: CrashPolicy::Retry,
            max_attempts: None,
            retry: None,
            concurrency: None,
            priority: 0,
            per_key: None,
            rate: None,
            dedupe_ms: None,
        }
    }
    /// Questions a `/mcp` client answers before a job is accepted (MCP input requests keyed
    /// by id); the answers reach the first attempt. `None`: it asks nothing up front.
    fn ask_first(&self) -> Option<&serde_json::Map<String, serde_json::Value>> {
        None
    }
    /// Whether a standard MCP client must run it as a task (see [`TaskSupport`]).
    fn task_support(&self) -> TaskSupport {
        TaskSupport::Optional
    }
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
    pub fn name(&self) -> &str {
        match self {
            Tool::Sync(t) => t.name(),
            Tool::Job(t) => t.name(),
        }
    }
    pub fn description(&self) -> &str {
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
    pub fn output_schema(&self) -> Option<serde_json::Value> {
        match self {
            Tool::Sync(t) => t.output_schema(),
            Tool::Job(t) => t.output_schema(),
        }
    }
    pub fn presentation(&self) -> Option<&serde_json::Map<String, serde_json::Value>> {
        match self {
            Tool::Sync(t) => t.presentation(),
            Tool::Job(t) => t.presentation(),
        }
    }
}

/// A registry that a reload can replace while calls and workers use it: each reader takes
/// one snapshot (`load`) and keeps it for a whole call or claim.
pub type SharedRegistry = Arc<arc_swap::ArcSwap<Registry>>;

/// All tools by name.
#[derive(Clone, Default)]
pub struct Registry {
    tools: BTreeMap<String, Tool>,
    /// Static resources served at `/mcp` (they change with the tools, on reload).
    resources: Vec<crate::config::resources::ResourceDef>,
    /// Prompt templates served at `/mcp`, likewise.
    prompts: Vec<crate::config::prompts::PromptDef>,
}

/// Names config tools may not take, whether or not the built-in tool is switched on.
const RESERVED: &[&str] = &[
    "server_identity",
    "poll_job",
    "cancel_job",
    "batch_sum",
    "start_long_task",
    "noop",
    "noop_keyed",
];

/// Limits the built-in tools enforce on their arguments (not per-client limits:
/// `crate::limits::ClientLimits`).
#[derive(Debug, Clone, Copy)]
pub struct ArgumentLimits {
    pub max_batch_numbers: usize,
}

impl Default for ArgumentLimits {
    fn default() -> Self {
        ArgumentLimits {
            max_batch_numbers: 10_000,
        }
    }
}

impl Registry {
    /// The built-in tools. `bench_tools` adds tools that exist only for benchmarks.
    pub fn builtin(limits: ArgumentLimits, bench_tools: bool) -> Registry {
        Registry::core(limits, true, bench_tools)
    }

    fn core(limits: ArgumentLimits, demo_tools: bool, bench_tools: bool) -> Registry {
        let mut r = Registry::default();
        r.add(Tool::Sync(Arc::new(server_identity::ServerIdentity)));
        r.add(Tool::Sync(Arc::new(poll_job::PollJob)));
        r.add(Tool::Sync(Arc::new(cancel_job::CancelJob)));
        if demo_tools {
            r.add(Tool::Sync(Arc::new(batch_sum::BatchSum {
                max: limits.max_batch_numbers,
            })));
            r.add(Tool::Job(Arc::new(start_long_task::StartLongTask)));
        }
        if bench_tools {
            r.add(Tool::Job(Arc::new(noop::Noop)));
            r.add(Tool::Job(Arc::new(noop::NoopKeyed)));
        }
        r
    }

    /// Every tool the settings call for: the built-in ones (the demo tools unless switched
    /// off) and each `[tools.NAME]` of the configuration. Fails, naming the tool, on a
    /// schema that does not compile or a name a built-in tool already has.
    pub fn from_settings(settings: &Settings) -> Result<Registry, ConfigError> {
        Registry::build(settings, None)
    }

    /// [`Registry::from_settings`] plus the tools `upstreams` listed last (each
    /// upstream's published tools; one whose definition mcpq cannot take is left out
    /// with a warning, as is one whose name another tool has).
    pub fn build(
        settings: &Settings,
        upstreams: Option<&upstream::Upstreams>,
    ) -> Result<Registry, ConfigError> {
        let mut r = Registry::core(
            ArgumentLimits::default(),
            settings.server.demo_tools,
            settings.server.bench_tools,
        );
        let process_slots = Arc::new(tokio::sync::Semaphore::new(
            settings.worker.max_processes.max(1),
        ));
        for def in &settings.tools {
            if r.get(&def.name).is_some() || RESERVED.contains(&def.name.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "tools.{}: a built-in tool has this name; choose another",
                    def.name
                )));
            }
            r.add(config_tool::ConfigTool::build(
                def,
                &settings.jobs,
                process_slots.clone(),
                None,
            )?);
        }
        if let Some(ups) = upstreams {
            r.add_upstream_tools(settings, ups, &process_slots);
        }
        r.resources = settings.resources.clone();
        r.prompts = settings.prompts.clone();
        r.check_schedules(settings)?;
        Ok(r)
    }

    /// Each `[schedules.NAME]` names a job tool and gives it arguments its schema accepts
    /// (checked once, at start, so a tick never enqueues a job that would be refused). A
    /// tool under an upstream's prefix that is not listed yet (the upstream is down, or
    /// still starting) is not an error: the scheduler retries its ticks until it is, and
    /// the enqueue checks the arguments then.
    fn check_schedules(&self, settings: &Settings) -> Result<(), ConfigError> {
        for s in &settings.schedules {
            let bad = |m: String| ConfigError::Invalid(format!("schedules.{}: {m}", s.name));
            let Some(t) = self.job_tool(&s.tool) else {
                let upstream = settings
                    .upstreams
                    .iter()
                    .find(|u| s.tool.starts_with(&u.prefix) && self.get(&s.tool).is_none());
                if let Some(u) = upstream {
                    tracing::info!(schedule = %s.name, tool = %s.tool, upstream = %u.name, "schedules: the tool is not listed by its upstream yet; ticks wait for it");
                    continue;
                }
                return Err(bad(format!("tool {:?} is not a job tool", s.tool)));
            };
            let Json::Object(args) = Json::from_serde(&s.arguments) else {
                return Err(bad("arguments must be a table".into()));
            };
            t.validate(&args)
                .map_err(|e| bad(format!("arguments refused by {}: {e}", s.tool)))?;
        }
        Ok(())
    }

    fn add_upstream_tools(
        &mut self,
        settings: &Settings,
        ups: &upstream::Upstreams,
        slots: &Arc<tokio::sync::Semaphore>,
    ) {
        for u in ups.all() {
            let Some(listing) = u.listing() else { continue };
            for t in listing.iter().filter(|t| u.def.publishes(&t.name)) {
                let input = serde_json::Value::Object((*t.input_schema).clone());
                let output = t
                    .output_schema
                    .as_ref()
                    .map(|o| serde_json::Value::Object((**o).clone()));
                let mut shown = serde_json::Map::new();
                if let Some(title) = &t.title {
                    shown.insert("title".into(), serde_json::Value::String(title.clone()));
                }
                if let Some(a) = t
                    .annotations
                    .as_ref()
                    .and_then(|a| serde_json::to_value(a).ok())
                {
                    shown.insert("annotations".into(), a);
                }
                let built = u
                    .def
                    .tool_def(
                        &t.name,
                        t.description.as_deref().unwrap_or(""),
                        &input,
                        output.as_ref(),
                        Some(shown),
                    )
                    .and_then(|def| {
                        if self.get(&def.name).is_some() || RESERVED.contains(&def.name.as_str()) {
                            return Err(ConfigError::Invalid(format!(
                                "another tool is called {}",
                                def.name
                            )));
                        }
                        config_tool::ConfigTool::build(
                            &def,
                            &settings.jobs,
                            slots.clone(),
                            Some(ups),
                        )
                    });
                match built {
                    Ok(tool) => self.add(tool),
                    Err(e) => tracing::warn!(
                        upstream = %u.def.name, tool = %t.name, error = %e,
                        "upstream tool not published"
                    ),
                }
            }
        }
    }

    /// The configured prompt templates, in name order.
    pub fn prompts(&self) -> &[crate::config::prompts::PromptDef] {
        &self.prompts
    }

    /// The configured static resources, in name order.
    pub fn resources(&self) -> &[crate::config::resources::ResourceDef] {
        &self.resources
    }

    pub fn add(&mut self, tool: Tool) {
        self.tools.insert(tool.name().to_string(), tool);
    }

    /// What the worker may claim: the definitions of every job tool here, tools with a
    /// concurrency limit apart.
    pub fn claim_filter(&self) -> ClaimFilter {
        let mut filter = ClaimFilter::default();
        for t in self.tools.values() {
            let Tool::Job(t) = t else { continue };
            let p = t.policy();
            if p.is_capped() {
                filter.capped.push(crate::store::CappedTool {
                    tool: t.name().to_string(),
                    limit: p.concurrency.unwrap_or(u32::MAX),
                    per_key: p.per_key.as_ref().map(|(_, n)| *n),
                    rate: p.rate,
                    defs: vec![p.definition],
                });
            } else {
                filter.defs.push(ClaimFilter::key(t.name(), &p.definition));
            }
        }
        filter
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
                let mut o = Object::from_pairs([
                    ("name".to_string(), Json::str(t.name())),
                    ("kind".to_string(), Json::str(kind)),
                    ("description".to_string(), Json::str(t.description())),
                    (
                        "input_schema".to_string(),
                        Json::from_serde(&t.input_schema()),
                    ),
                ]);
                if let Some(out) = t.output_schema() {
                    o.insert("output_schema".into(), Json::from_serde(&out));
                }
                Json::Object(o)
            })
            .collect();
        Object::from_pairs([
            ("async".to_string(), Json::Bool(true)),
            ("stateless".to_string(), Json::Bool(true)),
            ("protocol".to_string(), Json::str(crate::envelope::VERSION)),
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
