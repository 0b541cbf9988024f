//! `noop {}`: a job that does nothing, to measure the queue itself. Only registered
//! when `server.bench_tools = true`.

use serde_json::json;

use super::{ArgReader, JobCtx, JobError, JobRequest, JobTool};
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
