//! Log messages of a sync tool, streamed to the client that called it as
//! `notifications/message` on the call's SSE stream while the tool runs, then the result.
//!
//! Who listens: a 2025-11-25 client that takes a stream (that revision sets the level per
//! session with `logging/setLevel`, which a server without sessions cannot keep: every
//! level is sent), and a 2026-07-28 client that named a level in the request's
//! `_meta["io.modelcontextprotocol/logLevel"]` (only messages at or above it are sent; no
//! level, no messages). A tool logs by writing `{"log": {"level": …, "message": …}}` lines
//! to fd 3 (docs/TOOLS.md).
//!
//! It must not run tools itself: `tool_call::call_tool` does, with the sink this hands it.

use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::call::Call;
use super::tool_call::{self, CallPlan};
use super::{bridge, Era};
use crate::json::{Json, Object};
use crate::tools::Tool;

const LEVEL_KEY: &str = "io.modelcontextprotocol/logLevel";
/// RFC 5424 severities, as MCP names them, least severe first.
const LEVELS: [&str; 8] = [
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
];

fn rank(level: &str) -> Option<usize> {
    LEVELS.iter().position(|l| *l == level)
}

/// The least severe level to send, if this call's client listens for a sync tool's logs.
pub fn wanted(call: &Call, params: &Value, sse: bool) -> Option<usize> {
    let name = params.get("name").and_then(Value::as_str)?;
    let logs = matches!(call.app().registry().get(name), Some(Tool::Sync(t)) if t.may_log());
    if !sse || !logs {
        return None;
    }
    match call.era {
        Era::Legacy => Some(0),
        Era::Modern => params
            .get("_meta")
            .and_then(|m| m.get(LEVEL_KEY))
            .and_then(Value::as_str)
            .and_then(rank),
    }
}

/// A tool's log object as a `notifications/message` (`None`: below the floor).
fn notification(tool: &str, message: Object, floor: usize) -> Option<Value> {
    let m = Json::Object(message).to_serde();
    let level = m
        .get("level")
        .and_then(Value::as_str)
        .filter(|l| rank(l).is_some())
        .unwrap_or("info");
    if rank(level)? < floor {
        return None;
    }
    let data = m.get("message").cloned().unwrap_or_else(|| m.clone());
    let logger = m.get("logger").and_then(Value::as_str).unwrap_or(tool);
    Some(json!({"jsonrpc": "2.0", "method": "notifications/message",
        "params": {"level": level, "logger": logger, "data": data}}))
}

/// Runs the call behind a stream: log messages as they come, then the result (or the
/// questions of a 2025-11-25 tool, bridged, then the result).
pub fn stream_sync_call(
    mut call: Call,
    id: Value,
    params: Value,
    floor: usize,
) -> crate::http::HttpResponse {
    let (tx, body) = crate::http::SseBody::channel();
    let (log_tx, mut log_rx) = mpsc::channel::<Object>(64);
    call.logs = Some(log_tx);
    let tool = params["name"].as_str().unwrap_or("").to_string();
    // A spawned task leaves the task-local trace context behind: it goes along by hand.
    let trace = crate::otel::current();
    tokio::spawn(crate::otel::scope(trace, async move {
        // Never wait for the client here: a reader slower than the tool loses log lines
        // (counted), while the tool's timeout, kill and concurrency slot, polled in the
        // same `select!`, never depend on the client reading.
        let forward = |m: Object| {
            if let Some(ev) = notification(&tool, m, floor).map(|n| crate::http::sse::sse_event(&n))
            {
                if tx.try_send(ev).is_err() {
                    metrics::counter!(crate::telemetry::names::LOG_LINES_DROPPED).increment(1);
                }
            }
        };
        let plan = {
            let run = tool_call::call_tool(&call, &params);
            tokio::pin!(run);
            loop {
                tokio::select! {
                    plan = &mut run => break plan,
                    Some(m) = log_rx.recv() => forward(m),
                }
            }
        };
        let result = match plan {
            Ok(CallPlan::Done(r)) => Ok(r),
            Ok(CallPlan::Ask { tool, args, asked }) => {
                let run = bridge::rounds(&call, &tx, tool.as_ref(), &args, asked);
                tokio::pin!(run);
                Ok(loop {
                    tokio::select! {
                        r = &mut run => break r,
                        Some(m) = log_rx.recv() => forward(m),
                    }
                })
            }
            // `wanted` admits sync tools only.
            Ok(CallPlan::Job { .. }) => Err(super::error::McpError::Internal(
                "a job tool ran as a sync call".into(),
            )),
            Err(e) => Err(e),
        };
        while let Ok(m) = log_rx.try_recv() {
            forward(m);
        }
        let message = match result {
            Ok(r) => super::reply::result_message(&id, r, call.era),
            Err(e) => e.to_jsonrpc(&id),
        };
        let _ = tx.send(crate::http::sse::sse_event(&message)).await;
    }));
    super::reply::sse_response(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(level: &str) -> Object {
        match crate::json::parse(format!(r#"{{"level":"{level}","message":"m"}}"#).as_bytes()) {
            Ok(Json::Object(o)) => o,
            _ => unreachable!(),
        }
    }

    #[test]
    fn messages_below_the_clients_level_are_not_sent() {
        let warning = rank("warning").unwrap();
        assert!(notification("t", msg("info"), warning).is_none());
        let n = notification("t", msg("error"), warning).unwrap();
        assert_eq!(n["params"]["level"], "error");
        assert_eq!(n["params"]["logger"], "t");
        assert_eq!(n["params"]["data"], "m");
        // An unknown level counts as info.
        assert_eq!(
            notification("t", msg("loud"), 0).unwrap()["params"]["level"],
            "info"
        );
    }
}
