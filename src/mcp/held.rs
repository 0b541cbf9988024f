//! A held `tools/call` of a job tool streamed as server-sent events: progress
//! notifications naming the job, then its result.
//!
//! It must not run or change the job: the job runs to its end whatever happens to the stream.

use serde_json::{json, Value};

use super::call::{Call, PROGRESS_POLL};
use super::reply::{result_message, sse_response};
use super::tasks;
use crate::http::sse::sse_event;
use crate::http::{self, HttpResponse};

/// Holds a long call open as server-sent events: a progress notification naming the job
/// (so a client that loses the connection can still poll it), one per progress change,
/// then the result. The job does not depend on the stream: it runs to the end whatever
/// happens to the connection.
pub(super) fn held_with_progress(
    call: &Call,
    id: &Value,
    job_id: crate::jobs::JobId,
    token: Value,
) -> HttpResponse {
    let (tx, body) = http::SseBody::channel();
    let call = call.clone();
    let id = id.clone();
    let held = HeldCall::new();
    tokio::spawn(async move {
        let _held = held;
        let mut first = true;
        let mut last = 0.0f64;
        let gone = tx.closed();
        let sent = tasks::wait_finished(
            &call,
            &job_id,
            PROGRESS_POLL.min(call.mcp.held_poll),
            gone,
            |job| {
                let now = call.app().now_ms();
                let mut n = tasks::progress_notification(&token, job, first, now);
                // Progress must increase: never report less than before.
                let p = n["params"]["progress"].as_f64().unwrap_or(0.0).max(last);
                last = p;
                n["params"]["progress"] = json!(p);
                first = false;
                tx.try_send(sse_event(&n)).is_ok() || !tx.is_closed()
            },
        )
        .await;
        if tx.is_closed() {
            return; // the client went away; the job runs on
        }
        let message = match sent.map(|job| tasks::job_result(&job)) {
            Ok(Some(r)) => result_message(&id, r, call.era),
            Ok(None) => return,
            Err(e) => e.to_jsonrpc(&id),
        };
        let _ = tx.send(sse_event(&message)).await;
    });
    sse_response(body)
}

/// One call held open waiting for its job, counted in `mcpq_mcp_held_calls` while it is.
pub(super) struct HeldCall(());

impl HeldCall {
    pub(super) fn new() -> HeldCall {
        metrics::gauge!(crate::telemetry::names::HELD_CALLS).increment(1.0);
        HeldCall(())
    }
}

impl Drop for HeldCall {
    fn drop(&mut self) {
        metrics::gauge!(crate::telemetry::names::HELD_CALLS).decrement(1.0);
    }
}
