//! Multi-round tool calls (MRTR, 2026-07-28): a sync tool that needs something from the
//! client (an elicitation, a sampling, its roots) answers with an `InputRequiredResult`;
//! the client calls again with `inputResponses` and the `requestState` it was given.
//!
//! The daemon keeps nothing between rounds. It seals the round into the `requestState` it
//! hands out: which tool, which client, which arguments, which requests are outstanding,
//! until when, and the tool's own state, under an HMAC keyed from the server secret (any
//! daemon of the deployment opens what another sealed). A state that was altered, is for
//! another tool, client or arguments, or is older than [`STATE_TTL_MS`] is refused
//! (-32602) before the tool runs again. It also refuses to ask a client for what it did
//! not declare it can give (-32021).
//!
//! It must not run tools: `mcp::methods` calls them and hands their output here.

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::error::McpError;
use crate::tools::runner::InputRound;

/// How long a client has to answer one round.
pub const STATE_TTL_MS: i64 = 10 * 60 * 1000;
/// The requests a tool may make, each with the client capability it needs.
const METHODS: [(&str, &str); 3] = [
    ("elicitation/create", "elicitation"),
    ("sampling/createMessage", "sampling"),
    ("roots/list", "roots"),
];
/// Requests per round, and the sealed state's size: a tool's output, bounded.
const MAX_REQUESTS: usize = 16;
const MAX_STATE_BYTES: usize = 16 * 1024;

/// What a sealed state binds a round to.
pub struct Binding<'a> {
    pub tool: &'a str,
    pub client: &'a str,
    pub args: &'a crate::json::Object,
}

impl Binding<'_> {
    /// Of the arguments' canonical JSON; taken only when a state is sealed or opened, so
    /// a call that asks nothing pays nothing.
    fn args_digest(&self) -> String {
        let canonical = crate::json::Json::Object(self.args.clone()).to_canonical();
        crate::hex::lower(&Sha256::digest(canonical.as_bytes()))
    }
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

fn mac(key: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(payload);
    m.finalize().into_bytes().to_vec()
}

fn bad_state(why: &str) -> McpError {
    McpError::RequestState(why.to_string())
}

/// Reads a retry's `inputResponses` and `requestState` into the round the tool sees.
/// Responses to requests the sealed state does not name are dropped (a client may send
/// more than was asked); without a state every response is passed on.
pub fn read_round(
    params: &Value,
    capabilities: &Value,
    key: &[u8],
    binding: &Binding<'_>,
    now_ms: i64,
) -> Result<InputRound, McpError> {
    let responses = match params.get("inputResponses") {
        None => None,
        Some(Value::Object(o)) => {
            if let Some((k, _)) = o.iter().find(|(_, v)| !v.is_object()) {
                return Err(McpError::InvalidParams(format!(
                    "inputResponses[{k:?}] must be the client's result object"
                )));
            }
            Some(o.clone())
        }
        Some(_) => {
            return Err(McpError::InvalidParams(
                "inputResponses must be an object of results keyed by request".into(),
            ))
        }
    };
    let (outstanding, tool_state) = match params.get("requestState") {
        None => (None, None),
        Some(Value::String(s)) => {
            let (keys, state) = open(s, key, binding, now_ms)?;
            (Some(keys), state)
        }
        Some(_) => return Err(bad_state("requestState must be the string it was given")),
    };
    // Only answers to questions of this call's sealed round reach the tool: without a
    // `requestState` nothing was asked, so every answer is unasked and dropped.
    let responses = match (outstanding, responses) {
        (Some(keys), Some(mut r)) => {
            r.retain(|k, _| keys.contains(k));
            Some(Value::Object(r).to_string())
        }
        (None, Some(r)) => {
            tracing::debug!(
                answers = r.len(),
                "dropped answers sent without a requestState"
            );
            None
        }
        (_, None) => None,
    };
    Ok(InputRound {
        client_capabilities: Some(capabilities.to_string()),
        input_responses: responses,
        request_state: tool_state,
    })
}

/// Turns a tool's `InputRequiredResult` into the one the client gets: its requests
/// checked (known methods, capabilities the client declared) and the round sealed.
pub fn input_required(
    output: &Value,
    capabilities: &Value,
    key: &[u8],
    binding: &Binding<'_>,
    now_ms: i64,
) -> Result<Value, McpError> {
    let invalid = |m: String| McpError::ToolOutput(format!("invalid InputRequiredResult: {m}"));
    let requests = output
        .get("inputRequests")
        .and_then(Value::as_object)
        .filter(|r| !r.is_empty() && r.len() <= MAX_REQUESTS)
        .ok_or_else(|| {
            invalid(format!(
                "inputRequests must be an object of 1 to {MAX_REQUESTS} requests"
            ))
        })?;
    let mut missing = Map::new();
    for (k, r) in requests {
        let method = r.get("method").and_then(Value::as_str).unwrap_or("");
        let Some((_, cap)) = METHODS.iter().find(|(m, _)| *m == method) else {
            return Err(invalid(format!(
                "inputRequests[{k:?}].method must be one of elicitation/create, sampling/createMessage, roots/list"
            )));
        };
        if r.get("params").is_some_and(|p| !p.is_object()) {
            return Err(invalid(format!(
                "inputRequests[{k:?}].params must be an object"
            )));
        }
        if capabilities.get(cap).is_none() {
            missing.insert(cap.to_string(), json!({}));
        }
    }
    if !missing.is_empty() {
        let names: Vec<&str> = missing.keys().map(String::as_str).collect();
        return Err(McpError::MissingCapability(
            format!(
                "the tool asks the client for {} (declare it in clientCapabilities)",
                names.join(", ")
            ),
            Value::Object(missing),
        ));
    }
    let tool_state = match output.get("requestState") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(invalid("requestState must be a string".into())),
    };
    let keys: Vec<&String> = requests.keys().collect();
    let state = seal(key, binding, &keys, tool_state.as_deref(), now_ms)?;
    Ok(json!({
        "resultType": "input_required",
        "inputRequests": requests,
        "requestState": state,
    }))
}

fn seal(
    key: &[u8],
    binding: &Binding<'_>,
    keys: &[&String],
    tool_state: Option<&str>,
    now_ms: i64,
) -> Result<String, McpError> {
    let payload = json!({
        "v": 1,
        "tool": binding.tool,
        "client": binding.client,
        "args": binding.args_digest(),
        "exp": now_ms + STATE_TTL_MS,
        "keys": keys,
        "state": tool_state,
    })
    .to_string();
    if payload.len() > MAX_STATE_BYTES {
        return Err(McpError::ToolOutput(format!(
            "invalid InputRequiredResult: requestState is over {MAX_STATE_BYTES} bytes"
        )));
    }
    let tag = mac(key, payload.as_bytes());
    Ok(format!(
        "{}.{}",
        b64().encode(payload.as_bytes()),
        b64().encode(tag)
    ))
}

/// Checks a sealed state; returns the outstanding request keys and the tool's own state.
fn open(
    token: &str,
    key: &[u8],
    binding: &Binding<'_>,
    now_ms: i64,
) -> Result<(Vec<String>, Option<String>), McpError> {
    let tampered = || bad_state("requestState failed its integrity check");
    let (payload_b64, tag_b64) = token.split_once('.').ok_or_else(tampered)?;
    let payload = b64().decode(payload_b64).map_err(|_| tampered())?;
    let tag = b64().decode(tag_b64).map_err(|_| tampered())?;
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(&payload);
    // Constant time: `verify_slice` compares the whole tag.
    m.verify_slice(&tag).map_err(|_| tampered())?;
    let p: Value = serde_json::from_slice(&payload).map_err(|_| tampered())?;
    if p["v"] != 1 || p["tool"] != binding.tool || p["client"] != binding.client {
        return Err(bad_state("requestState belongs to another tool or client"));
    }
    if p["args"] != binding.args_digest().as_str() {
        return Err(bad_state(
            "requestState was given for other arguments: call again without it",
        ));
    }
    if p["exp"].as_i64().is_none_or(|exp| exp < now_ms) {
        return Err(bad_state("requestState has expired: call again without it"));
    }
    let keys = p["keys"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    Ok((keys, p["state"].as_str().map(str::to_string)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"k";

    fn binding(args: &crate::json::Object) -> Binding<'_> {
        Binding {
            tool: "ask",
            client: "client-001",
            args,
        }
    }

    fn empty() -> crate::json::Object {
        crate::json::Object::new()
    }

    fn one() -> crate::json::Object {
        match crate::json::parse(br#"{"a":1}"#) {
            Ok(crate::json::Json::Object(o)) => o,
            _ => unreachable!(),
        }
    }

    fn ask() -> Value {
        json!({"resultType": "input_required", "requestState": "s1", "inputRequests": {
            "name": {"method": "elicitation/create", "params": {"message": "Name?"}}}})
    }

    fn caps() -> Value {
        json!({"elicitation": {}})
    }

    #[test]
    fn a_sealed_round_opens_with_the_tool_state_and_drops_unasked_answers() {
        let out = input_required(&ask(), &caps(), KEY, &binding(&empty()), 0).unwrap();
        let params = json!({"requestState": out["requestState"],
            "inputResponses": {"name": {"action": "accept"}, "extra": {}}});
        let round = read_round(&params, &caps(), KEY, &binding(&empty()), 1).unwrap();
        assert_eq!(round.request_state.as_deref(), Some("s1"));
        assert_eq!(
            round.input_responses.as_deref(),
            Some(r#"{"name":{"action":"accept"}}"#)
        );
    }

    #[test]
    fn an_altered_expired_or_rebound_state_is_refused() {
        let out = input_required(&ask(), &caps(), KEY, &binding(&empty()), 0).unwrap();
        let state = out["requestState"].as_str().unwrap().to_string();
        let mut flipped = state.clone().into_bytes();
        flipped[3] ^= 1;
        let try_state = |s: &str, b: &Binding<'_>, now: i64, key: &[u8]| {
            read_round(&json!({ "requestState": s }), &caps(), key, b, now)
        };
        let flipped = String::from_utf8(flipped).unwrap();
        for (s, b, now, key) in [
            (flipped.as_str(), binding(&empty()), 1, KEY),
            (state.as_str(), binding(&one()), 1, KEY),
            (state.as_str(), binding(&empty()), STATE_TTL_MS + 1, KEY),
            (
                state.as_str(),
                binding(&empty()),
                1,
                b"other key".as_slice(),
            ),
            ("garbage", binding(&empty()), 1, KEY),
        ] {
            assert!(
                matches!(try_state(s, &b, now, key), Err(McpError::RequestState(_))),
                "{s}"
            );
        }
        assert!(try_state(&state, &binding(&empty()), 1, KEY).is_ok());
    }

    #[test]
    fn asking_for_an_undeclared_capability_is_minus_32021_naming_it() {
        let mut out = ask();
        out["inputRequests"]["q"] = json!({"method": "sampling/createMessage", "params": {}});
        match input_required(&out, &caps(), KEY, &binding(&empty()), 0) {
            Err(e @ McpError::MissingCapability(..)) => {
                assert_eq!(e.code(), -32021);
                assert_eq!(
                    e.data().unwrap()["requiredCapabilities"],
                    json!({"sampling": {}})
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn malformed_requests_and_responses_are_refused() {
        for bad in [
            json!({"resultType": "input_required"}),
            json!({"resultType": "input_required", "inputRequests": {}}),
            json!({"resultType": "input_required", "inputRequests": {"a": {"method": "tools/call"}}}),
            json!({"resultType": "input_required", "inputRequests": {"a": {"method": "roots/list", "params": 1}}}),
        ] {
            let caps = json!({"roots": {}});
            assert!(matches!(
                input_required(&bad, &caps, KEY, &binding(&empty()), 0),
                Err(McpError::ToolOutput(_))
            ));
        }
        for bad in [
            json!({"inputResponses": 5}),
            json!({"inputResponses": {"a": 1}}),
        ] {
            assert!(matches!(
                read_round(&bad, &caps(), KEY, &binding(&empty()), 0),
                Err(McpError::InvalidParams(_))
            ));
        }
    }
}
