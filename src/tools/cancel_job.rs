//! `cancel_job {job_id}`: cancels a queued job at once, or asks the worker running it to stop.

use super::poll_job::{job_id_arg, job_id_schema};
use super::{CallCtx, Reply, SyncTool};
use crate::envelope::CallError;
use crate::json::{Json, Object};
use crate::store::fault::call_error;
use crate::store::{BoxFuture, CancelOutcome};

pub struct CancelJob;

impl SyncTool for CancelJob {
    fn name(&self) -> &'static str {
        "cancel_job"
    }
    fn description(&self) -> &'static str {
        "Cancels a job: a queued job at once (state cancelled), a running one at the worker's next heartbeat (state cancelling)."
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
            let outcome = ctx
                .store
                .cancel(ctx.client_id, &id, ctx.now_ms)
                .await
                .map_err(|e| call_error(ctx.store.status(), "cancel_job: store write", e))?;
            let state = match outcome {
                CancelOutcome::Cancelled => "cancelled",
                CancelOutcome::Requested => "cancelling",
                CancelOutcome::AlreadyFinished(crate::jobs::JobState::InDoubt) => {
                    return Err(CallError::JobInDoubt(
                        "job is in doubt (its worker was lost mid-attempt); only an operator can retry or fail it".into(),
                    ))
                }
                CancelOutcome::AlreadyFinished(s) => {
                    return Err(CallError::JobFinished(s.as_str().to_string()))
                }
                CancelOutcome::NotFound => return Err(CallError::UnknownJob),
            };
            Ok(Reply::ok(Object::from_pairs([
                ("job_id".to_string(), Json::str(&id.0)),
                ("state".to_string(), Json::str(state)),
            ])))
        })
    }
}
