//! `poll_job {job_id}`: a job's state mapped onto the seed's status literals.
//! Another client's job is indistinguishable from a missing one.

use crate::store::fault::call_error;
use serde_json::json;

use super::{ArgReader, CallCtx, Reply, SyncTool};
use crate::envelope::{CallError, MAX_ID_LEN};
use crate::jobs::{JobId, JobState};
use crate::json::{self, Json, Object};
use crate::store::{BoxFuture, JobRecord};

pub struct PollJob;

/// Reads the `job_id` field; a malformed id is `unknown_job`, exactly like a missing job.
/// The argument schema of the tools that take only a job id.
pub(super) fn job_id_schema() -> serde_json::Value {
    json!({
        "type": "object",
        "properties": {"job_id": {"type": "string"}},
        "required": ["job_id"],
        "additionalProperties": false
    })
}

pub(super) fn job_id_arg(args: &Object) -> Result<JobId, CallError> {
    let r = ArgReader::new(args, &["job_id"])?;
    let s = r.string("job_id", MAX_ID_LEN)?;
    JobId::parse(s).ok_or(CallError::UnknownJob)
}

fn parse_stored(text: &str, what: &str) -> Result<Json, CallError> {
    json::parse(text.as_bytes())
        .map_err(|e| CallError::internal(&format!("stored job {what} does not parse"), &e))
}

/// The last error recorded for the job, for failed jobs' messages.
fn last_error(job: &JobRecord) -> String {
    match json::parse(job.errors.as_bytes()) {
        Ok(Json::Array(items)) => items
            .last()
            .and_then(|e| e.as_object())
            .and_then(|o| o.get("error"))
            .and_then(Json::as_str)
            .unwrap_or("no error recorded")
            .to_string(),
        _ => "no error recorded".to_string(),
    }
}

pub(super) fn describe(job: &JobRecord) -> Result<Reply, CallError> {
    let status = job.state.wire_status();
    let mut info = Object::from_pairs([
        ("job_id".to_string(), Json::str(&job.id.0)),
        ("state".to_string(), Json::str(job.state.as_str())),
        ("attempt".to_string(), Json::Int(job.attempt as i64)),
    ]);
    match job.state {
        JobState::Queued => Ok(Reply {
            status,
            result: Some(info),
        }),
        // Its questions are answered over `/mcp` (tasks/update); here it reads as running.
        JobState::AwaitingInput => {
            if let Some(r) = &job.input_requests {
                info.insert("input_requests".into(), parse_stored(r, "input_requests")?);
            }
            Ok(Reply {
                status,
                result: Some(info),
            })
        }
        JobState::Running => {
            if let Some(p) = &job.progress {
                info.insert("progress".into(), parse_stored(p, "progress")?);
            }
            Ok(Reply {
                status,
                result: Some(info),
            })
        }
        JobState::Succeeded => {
            // As the seed does: a finished job's result is the job's own result object.
            let result = match &job.result {
                Some(r) => parse_stored(r, "result")?,
                None => Json::Object(Object::new()),
            };
            match result {
                Json::Object(o) => Ok(Reply {
                    status,
                    result: Some(o),
                }),
                other => Err(CallError::internal(
                    "stored job result is not an object",
                    &other.type_name(),
                )),
            }
        }
        JobState::Failed => Err(CallError::JobFailed(format!(
            "job failed after {} attempt(s): {}",
            job.attempt,
            last_error(job)
        ))),
        JobState::Cancelled => Err(CallError::JobCancelled),
        JobState::InDoubt => Err(CallError::JobInDoubt(format!(
            "job is in doubt: its worker was lost during attempt {} and the tool must not run twice unchecked; an operator retries or fails it ({})",
            job.attempt,
            last_error(job)
        ))),
    }
}

impl SyncTool for PollJob {
    fn name(&self) -> &'static str {
        "poll_job"
    }
    fn description(&self) -> &'static str {
        "Returns a job's status: accepted (queued), running (with progress), done (with its result) or error."
    }
    fn input_schema(&self) -> serde_json::Value {
        job_id_schema()
    }
    fn call<'a>(
        &'a self,
        ctx: CallCtx<'a>,
        args: &'a Object,
    ) -> BoxFuture<'a, Result<Reply, CallError>> {
        Box::pin(async move {
            let id = job_id_arg(args)?;
            let job = ctx
                .store
                .get_job(ctx.client_id, &id)
                .await
                .map_err(|e| call_error(ctx.store.status(), "poll_job: store read", e))?;
            describe(&job.ok_or(CallError::UnknownJob)?)
        })
    }
}
