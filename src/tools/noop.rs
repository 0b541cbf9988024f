//! `noop {}`: a job that does nothing, to measure the queue itself; `noop_keyed {key}`: the
//! same under a per-key limit (2 running per `/key`), to measure the keyed claim. Only
//! registered when `server.bench_tools = true`.

use serde_json::json;

use super::{ArgReader, JobCtx, JobError, JobPolicy, JobRequest, JobTool};
use crate::envelope::CallError;
use crate::json::Object;
use crate::store::BoxFuture;

pub struct Noop;

impl JobTool for Noop {
    fn name(&self) -> &'static str {
        "noop"
    }
    fn description(&self) -> &'static str {
        "Benchmark-only job that completes at once with an empty result."
    }
    fn input_schema(&self) -> serde_json::Value {
        json!({"type": "object", "properties": {}, "additionalProperties": false})
    }
    fn validate(&self, args: &Object) -> Result<JobRequest, CallError> {
        ArgReader::new(args, &[])?;
        Ok(JobRequest {
            args: Object::new(),
            idempotency_key: None,
        })
    }
    fn run(&self, _ctx: JobCtx, _args: Object) -> BoxFuture<'static, Result<Object, JobError>> {
        Box::pin(async { Ok(Object::new()) })
    }
}

/// Running `noop_keyed` jobs per key, across all workers.
pub const KEYED_LIMIT: u32 = 2;

pub struct NoopKeyed;

impl JobTool for NoopKeyed {
    fn name(&self) -> &'static str {
        "noop_keyed"
    }
    fn description(&self) -> &'static str {
        "Benchmark-only job that completes at once, at most 2 running per `key`."
    }
    fn input_schema(&self) -> serde_json::Value {
        json!({
            "type": "object",
            "properties": {"key": {"type": "string"}},
            "required": ["key"],
            "additionalProperties": false
        })
    }
    fn policy(&self) -> JobPolicy {
        JobPolicy {
            per_key: Some((
                crate::jobs::ConcurrencyKey::Pointer("/key".into()),
                KEYED_LIMIT,
            )),
            ..Noop.policy()
        }
    }
    fn validate(&self, args: &Object) -> Result<JobRequest, CallError> {
        let r = ArgReader::new(args, &["key"])?;
        let key = r.string("key", 256)?;
        let mut out = Object::new();
        out.insert("key".into(), crate::json::Json::Str(key.to_string()));
        Ok(JobRequest {
            args: out,
            idempotency_key: None,
        })
    }
    fn run(&self, _ctx: JobCtx, _args: Object) -> BoxFuture<'static, Result<Object, JobError>> {
        Box::pin(async { Ok(Object::new()) })
    }
}
