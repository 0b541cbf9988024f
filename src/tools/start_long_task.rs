//! `start_long_task {seconds: 1..=20, payload: object, idempotency_key?: string}`: a durable job
//! that runs for `seconds`, reporting progress each second, and whose result is `payload`.

use std::time::Duration;

use serde_json::json;

use super::{ArgReader, JobCtx, JobError, JobRequest, JobTool};
use crate::envelope::{CallError, MAX_ID_LEN};
use crate::json::{Json, Object};
use crate::store::BoxFuture;

pub struct StartLongTask;

impl JobTool for StartLongTask {
    fn name(&self) -> &'static str {
        "start_long_task"
    }
    fn description(&self) -> &'static str {
        "Starts a durable job that runs for `seconds` and returns `payload` as its result. Poll it with poll_job."
    }
    fn input_schema(&self) -> serde_json::Value {
        json!({
            "type": "object",
            "properties": {
                "seconds": {"type": "integer", "minimum": 1, "maximum": 20},
                "payload": {"type": "object"},
                "idempotency_key": {"type": "string", "maxLength": MAX_ID_LEN}
            },
            "required": ["seconds"],
            "additionalProperties": false
        })
    }
    fn validate(&self, args: &Object) -> Result<JobRequest, CallError> {
        let r = ArgReader::new(args, &["seconds", "payload", "idempotency_key"])?;
        let seconds = r.int_in("seconds", 1, 20)?;
        let payload = r.object_or_empty("payload")?;
        let idempotency_key = match r.get("idempotency_key") {
            None => None,
            Some(_) => Some(r.string("idempotency_key", MAX_ID_LEN)?.to_string()),
        };
        Ok(JobRequest {
            args: Object::from_pairs([
                ("seconds".to_string(), Json::Int(seconds)),
                ("payload".to_string(), Json::Object(payload)),
            ]),
            idempotency_key,
        })
    }
    fn run(&self, ctx: JobCtx, args: Object) -> BoxFuture<'static, Result<Object, JobError>> {
        Box::pin(async move {
            let seconds = match args.get("seconds") {
                Some(Json::Int(s)) => *s,
                _ => {
                    return Err(JobError::Fatal(
                        "stored args lack an integer \"seconds\"".into(),
                    ))
                }
            };
            let payload = match args.get("payload") {
                Some(Json::Object(p)) => p.clone(),
                _ => Object::new(),
            };
            for done in 1..=seconds {
                tokio::select! {
                    _ = ctx.cancel.cancelled() => return Err(JobError::Fatal("cancelled".into())),
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                // The last second's progress would only be written to be overwritten by
                // the result an instant later.
                if done < seconds {
                    ctx.report_progress(Object::from_pairs([
                        ("elapsed_seconds".to_string(), Json::Int(done)),
                        ("seconds".to_string(), Json::Int(seconds)),
                    ]));
                }
            }
            Ok(payload)
        })
    }
}
