//! Which MCP revision a request speaks, and the request checks of the stateless
//! 2026-07-28 revision (`_meta`, version and `Mcp-Method`/`Mcp-Name` headers).
//!
//! It must not dispatch methods: `dispatch` does.

use serde_json::Value;

use super::error::McpError;
use super::{supported_versions, Era, CAPABILITIES_KEY, LEGACY, MODERN, VERSION_KEY};

fn header<'a>(headers: &'a hyper::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A 2025-or-earlier version header, or neither header nor a version in `_meta`: the
/// handshake era. Anything else is 2026-07-28 (an unknown version is then refused with
/// -32022). `_meta` alone does not make a request modern: 2025 clients send
/// `_meta.progressToken`.
pub fn era_of(version_header: Option<&str>, body: &Value) -> Era {
    match version_header.map(str::trim) {
        Some(v) if LEGACY.contains(&v) => Era::Legacy,
        Some(_) => Era::Modern,
        None => {
            let meta_version = body
                .get("params")
                .and_then(|p| p.get("_meta"))
                .and_then(|m| m.get(VERSION_KEY));
            if meta_version.is_some() {
                Era::Modern
            } else {
                Era::Legacy
            }
        }
    }
}

/// `=?base64?…?=` header values decode to their UTF-8 text; others are taken as sent.
fn header_value(v: &str) -> Option<String> {
    let v = v.trim();
    match v
        .strip_prefix("=?base64?")
        .and_then(|r| r.strip_suffix("?="))
    {
        Some(b64) => {
            use base64::Engine;
            let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
            String::from_utf8(bytes).ok()
        }
        None => Some(v.to_string()),
    }
}

/// The 2026-07-28 request checks, in the order the specification's probes need: `_meta`
/// fields, version header against `_meta`, version supported, `Mcp-Method`/`Mcp-Name`.
/// Returns the client capabilities the request declared.
pub(super) fn check_modern(
    req: &hyper::HeaderMap,
    method: &str,
    params: &Value,
) -> Result<Value, McpError> {
    let meta = params
        .get("_meta")
        .and_then(Value::as_object)
        .ok_or_else(|| {
            McpError::BadMeta(
                "params._meta is required (protocol version, client capabilities)".into(),
            )
        })?;
    let version = meta
        .get(VERSION_KEY)
        .and_then(Value::as_str)
        .ok_or_else(|| McpError::BadMeta(format!("params._meta[{VERSION_KEY:?}] is required")))?;
    let caps = meta
        .get(CAPABILITIES_KEY)
        .and_then(Value::as_object)
        .ok_or_else(|| {
            McpError::BadMeta(format!("params._meta[{CAPABILITIES_KEY:?}] is required"))
        })?;
    match header(req, "mcp-protocol-version").map(str::trim) {
        Some(h) if h == version => {}
        Some(h) => {
            return Err(McpError::HeaderMismatch(format!(
                "MCP-Protocol-Version header {h:?} does not match the body's {version:?}"
            )))
        }
        None => {
            return Err(McpError::HeaderMismatch(
                "the MCP-Protocol-Version header is required".into(),
            ))
        }
    }
    if version != MODERN {
        return Err(McpError::UnsupportedVersion {
            requested: version.to_string(),
            supported: supported_versions(),
        });
    }
    match header(req, "mcp-method").map(str::trim) {
        Some(h) if h == method => {}
        Some(h) => {
            return Err(McpError::HeaderMismatch(format!(
                "Mcp-Method header {h:?} does not match the body's {method:?}"
            )))
        }
        None => {
            return Err(McpError::HeaderMismatch(
                "the Mcp-Method header is required".into(),
            ))
        }
    }
    let named = match method {
        "tools/call" | "prompts/get" => params.get("name"),
        "resources/read" => params.get("uri"),
        "tasks/get" | "tasks/update" | "tasks/cancel" => params.get("taskId"),
        _ => None,
    };
    if let Some(body_name) = named.and_then(Value::as_str) {
        match header(req, "mcp-name").and_then(header_value) {
            Some(h) if h == body_name => {}
            Some(h) => {
                return Err(McpError::HeaderMismatch(format!(
                    "Mcp-Name header {h:?} does not match the body's {body_name:?}"
                )))
            }
            None => {
                return Err(McpError::HeaderMismatch(
                    "the Mcp-Name header is required".into(),
                ))
            }
        }
    }
    Ok(Value::Object(caps.clone()))
}
