//! A tool declared in the configuration (`[tools.NAME]`): its schemas, its runner and its
//! policies, as a [`SyncTool`] (`mode = "sync"`) or a [`JobTool`] (`mode = "job"`).
//!
//! Owns argument validation against the input schema before anything is stored or run
//! (`invalid_args` names the JSON pointer and the rule), result validation against the
//! output schema (a mismatch fails the attempt), the cap on concurrent sync runs in this
//! daemon (`busy` over it, never a queue), and the job policy recorded on each job.
//!
//! It must not know how a process or a request is carried out (see [`runner`]).

use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::runner::{Invocation, Runner};
use super::schema::Schema;
use super::{CallCtx, JobCtx, JobError, JobPolicy, JobRequest, JobTool, Reply, SyncTool, Tool};
use crate::config::tool_table::{Mode, ToolDef};
use crate::config::{ConfigError, JobSettings};
use crate::envelope::CallError;
use crate::jobs::RetryPolicy;
use crate::json::{Json, Object};
use crate::store::BoxFuture;

struct Inner {
    def: ToolDef,
    input: Schema,
    output: Option<Schema>,
    runner: Runner,
    policy: JobPolicy,
    /// Sync tools: runs at once in this daemon.
    slots: Option<Arc<Semaphore>>,
}

#[derive(Clone)]
pub struct ConfigTool {
    inner: Arc<Inner>,
}

impl ConfigTool {
    /// Compiles the schemas and builds the runner; the tool is sync or job as its `mode` says.
    pub fn build(
        def: &ToolDef,
        jobs: &JobSettings,
        process_slots: Arc<Semaphore>,
        upstreams: Option<&super::upstream::Upstreams>,
    ) -> Result<Tool, ConfigError> {
        let schema = |key: &str, v: &serde_json::Value| {
            Schema::compile(v).map_err(|e| {
                ConfigError::Invalid(format!(
                    "tools.{}: {key} is not a valid JSON Schema: {e}",
                    def.name
                ))
            })
        };
        let input = schema("input_schema", &def.input_schema)?;
        let output = def
            .output_schema
            .as_ref()
            .map(|s| schema("output_schema", s))
            .transpose()?;
        let retry =
            (def.retry_base_ms.is_some() || def.retry_max_ms.is_some()).then(|| RetryPolicy {
                base_ms: def.retry_base_ms.unwrap_or(jobs.retry_base_ms),
                max_ms: def.retry_max_ms.unwrap_or(jobs.retry_max_ms),
            });
        let policy = JobPolicy {
            definition: def.definition.clone(),
            on_crash: def.on_worker_crash,
            max_attempts: def.max_attempts,
            retry,
            concurrency: def.concurrency,
            priority: def.priority,
            per_key: def.per_key.clone(),
            rate: def.rate_per_sec,
            dedupe_ms: def.dedupe_secs.map(|s| s as i64 * 1000),
        };
        let slots = match def.mode {
            Mode::Sync => Some(Arc::new(Semaphore::new(
                def.concurrency.unwrap_or(1) as usize
            ))),
            Mode::Job => None,
        };
        let tool = ConfigTool {
            inner: Arc::new(Inner {
                runner: Runner::build(def, process_slots, upstreams)?,
                def: def.clone(),
                input,
                output,
                policy,
                slots,
            }),
        };
        Ok(match def.mode {
            Mode::Sync => Tool::Sync(Arc::new(tool)),
            Mode::Job => Tool::Job(Arc::new(tool)),
        })
    }

    fn check_args(&self, args: &Object) -> Result<(), CallError> {
        self.inner
            .input
            .check_object(args)
            .map_err(CallError::InvalidArgs)
    }
}

impl Inner {
    /// One run through the runner, its result held to the output schema.
    async fn attempt(&self, inv: &Invocation<'_>) -> Result<Object, JobError> {
        let out = self.runner.run(inv).await?;
        if super::asks_for_input(&out) {
            // Not a result: the output schema is for the answer that follows.
            return Ok(out);
        }
        if let Some(schema) = &self.output {
            // An upstream's output schema is its `structuredContent`'s.
            let checked = match (&self.runner, out.get("structuredContent")) {
                (Runner::Upstream(_), Some(Json::Object(s))) => s,
                (Runner::Upstream(_), _) => {
                    return Err(JobError::Fatal(
                        "output_schema: the upstream's result has no structuredContent".into(),
                    ))
                }
                _ => &out,
            };
            schema.check_object(checked).map_err(|e| {
                JobError::Fatal(format!("output_schema: the result does not match: {e}"))
            })?;
        }
        Ok(out)
    }
}

/// A sync tool asked for input where no client can answer it.
const INPUT_NEEDS_MCP: &str = "input_required: the tool asks the client for input, which only a \
standard MCP client of revision 2026-07-28 can give (POST /mcp)";

impl SyncTool for ConfigTool {
    fn name(&self) -> &str {
        &self.inner.def.name
    }
    fn description(&self) -> &str {
        &self.inner.def.description
    }
    fn input_schema(&self) -> serde_json::Value {
        self.inner.def.input_schema.clone()
    }
    fn output_schema(&self) -> Option<serde_json::Value> {
        self.inner.def.output_schema.clone()
    }
    fn presentation(&self) -> Option<&serde_json::Map<String, serde_json::Value>> {
        self.inner.def.presentation.as_ref()
    }
    fn may_log(&self) -> bool {
        matches!(self.inner.runner, Runner::Command(_))
    }
    fn call<'a>(
        &'a self,
        ctx: CallCtx<'a>,
        args: &'a Object,
    ) -> BoxFuture<'a, Result<Reply, CallError>> {
        Box::pin(async move {
            self.check_args(args)?;
            let inner = &self.inner;
            let Some(_permit) = inner
                .slots
                .as_ref()
                .and_then(|s| s.clone().try_acquire_owned().ok())
            else {
                return Err(CallError::Busy(format!(
                    "{} already runs {} calls at once; try again shortly",
                    inner.def.name,
                    inner.def.concurrency.unwrap_or(1)
                )));
            };
            let args_json = Json::Object(args.clone()).to_canonical();
            let inv = Invocation {
                tool: &inner.def.name,
                client_id: &ctx.client_id.0,
                job_id: None,
                attempt: 1,
                args_json: &args_json,
                timeout: inner.def.timeout,
                // A dropped request drops this future, and the runner ends the process
                // group on drop; nothing else cancels a sync call.
                ctx: JobCtx::new(CancellationToken::new()).with_logs(ctx.logs.clone()),
                input: ctx.input,
                trace: crate::otel::current(),
            };
            match inner.attempt(&inv).await {
                Ok(out) if super::asks_for_input(&out) && ctx.input.is_none() => {
                    Err(CallError::ToolFailed(INPUT_NEEDS_MCP.into()))
                }
                Ok(out) => Ok(Reply::ok(out)),
                Err(JobError::Fatal(m)) => Err(CallError::ToolFailed(m)),
                Err(JobError::Retryable(m)) if m == super::runner::command::BUSY => {
                    Err(CallError::Busy(m))
                }
                Err(JobError::Retryable(m)) | Err(JobError::RetryAfter(m, _)) => {
                    Err(CallError::ToolUnavailable(m))
                }
            }
        })
    }
}

impl JobTool for ConfigTool {
    fn name(&self) -> &str {
        &self.inner.def.name
    }
    fn description(&self) -> &str {
        &self.inner.def.description
    }
    fn input_schema(&self) -> serde_json::Value {
        self.inner.def.input_schema.clone()
    }
    fn output_schema(&self) -> Option<serde_json::Value> {
        self.inner.def.output_schema.clone()
    }
    fn presentation(&self) -> Option<&serde_json::Map<String, serde_json::Value>> {
        self.inner.def.presentation.as_ref()
    }
    fn policy(&self) -> JobPolicy {
        self.inner.policy.clone()
    }
    fn task_support(&self) -> super::TaskSupport {
        self.inner.def.task_support
    }
    fn ask_first(&self) -> Option<&serde_json::Map<String, serde_json::Value>> {
        self.inner.def.ask.as_ref()
    }
    fn validate(&self, args: &Object) -> Result<JobRequest, CallError> {
        self.check_args(args)?;
        Ok(JobRequest {
            args: args.clone(),
            idempotency_key: None,
        })
    }
    fn run(&self, ctx: JobCtx, args: Object) -> BoxFuture<'static, Result<Object, JobError>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let Some(meta) = ctx.meta.clone() else {
                return Err(JobError::Fatal("a job attempt without its job".into()));
            };
            let args_json = Json::Object(args).to_canonical();
            let inv = Invocation {
                tool: &inner.def.name,
                client_id: &meta.client_id.0,
                job_id: Some(&meta.job_id.0),
                attempt: meta.attempt,
                args_json: &args_json,
                timeout: inner.def.timeout,
                input: meta.input.as_ref(),
                ctx: ctx.clone(),
                trace: crate::otel::current(),
            };
            // A question is the worker's to handle: the job waits for its answers.
            inner.attempt(&inv).await
        })
    }
}
