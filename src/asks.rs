//! A tool asking its client for input instead of answering: its output is an MCP
//! `InputRequiredResult` (`"resultType": "input_required"`, `inputRequests`, optionally
//! `requestState`). This module recognizes and checks that shape, for sync tools (answered
//! in further rounds of the same call, `mcp::input`), job tools (the job waits in
//! `input_required` until a client answers, `worker`) and the questions a tool declares
//! in its configuration (`ask`, checked by `config::tool_table`).
//!
//! It is foundation: it must not import anything above `json`, and must not know about
//! clients or capabilities: what a client may be asked is decided by `mcp::input`.

use serde_json::{Map, Value};

use crate::json::{Json, Object};

/// The requests a tool may make, each with the client capability it needs.
pub const METHODS: [(&str, &str); 3] = [
    ("elicitation/create", "elicitation"),
    ("sampling/createMessage", "sampling"),
    ("roots/list", "roots"),
];
/// Requests per round: a tool's output, bounded.
pub const MAX_REQUESTS: usize = 16;

/// What a tool asked.
#[derive(Debug, Clone, PartialEq)]
pub struct Asked {
    /// The requests, keyed by the tool's own ids.
    pub requests: Map<String, Value>,
    /// The tool's state for the next round.
    pub state: Option<String>,
}

/// Whether a tool's result is not an answer but a request for input.
pub fn asks_for_input(result: &Object) -> bool {
    matches!(result.get("resultType"), Some(Json::Str(t)) if t == "input_required")
}

/// The capability a request needs from the client (`None`: not a request a tool may make).
pub fn capability_of(method: &str) -> Option<&'static str> {
    METHODS.iter().find(|(m, _)| *m == method).map(|(_, c)| *c)
}

/// Checks an `InputRequiredResult`; the error says what is wrong with it.
pub fn parse(output: &Value) -> Result<Asked, String> {
    let requests = output
        .get("inputRequests")
        .and_then(Value::as_object)
        .filter(|r| !r.is_empty() && r.len() <= MAX_REQUESTS)
        .ok_or_else(|| {
            format!("inputRequests must be an object of 1 to {MAX_REQUESTS} requests")
        })?;
    for (k, r) in requests {
        let method = r.get("method").and_then(Value::as_str).unwrap_or("");
        if capability_of(method).is_none() {
            return Err(format!(
                "inputRequests[{k:?}].method must be one of elicitation/create, sampling/createMessage, roots/list"
            ));
        }
        if r.get("params").is_some_and(|p| !p.is_object()) {
            return Err(format!("inputRequests[{k:?}].params must be an object"));
        }
    }
    let state = match output.get("requestState") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err("requestState must be a string".into()),
    };
    Ok(Asked {
        requests: requests.clone(),
        state,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_well_formed_requests_of_known_methods_are_accepted() {
        let ok = json!({"resultType": "input_required", "requestState": "s",
            "inputRequests": {"a": {"method": "roots/list", "params": {}}}});
        let asked = parse(&ok).unwrap();
        assert_eq!(asked.state.as_deref(), Some("s"));
        assert_eq!(asked.requests.len(), 1);
        for bad in [
            json!({"resultType": "input_required"}),
            json!({"inputRequests": {}}),
            json!({"inputRequests": {"a": {"method": "tools/call"}}}),
            json!({"inputRequests": {"a": {"method": "roots/list", "params": 1}}}),
            json!({"inputRequests": {"a": {"method": "roots/list"}}, "requestState": 5}),
        ] {
            assert!(parse(&bad).is_err(), "{bad}");
        }
        assert_eq!(capability_of("sampling/createMessage"), Some("sampling"));
    }
}
