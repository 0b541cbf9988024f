//! What `/mcp` lists and reads from the registry: `tools/list`, `resources/list`,
//! `resources/read`, `resources/templates/list`, `prompts/list`, `prompts/get` and
//! `completion/complete`.
//!
//! It must not run tools or touch jobs: `tool_call` and `tasks` do.

use serde_json::{json, Value};

use super::call::*;
use super::error::McpError;
use super::Era;
use crate::tools::{TaskSupport, Tool};

pub fn list_tools(call: &Call) -> Value {
    let registry = call.app().registry();
    let mut tools: Vec<Value> = Vec::new();
    for t in registry.iter().filter(|t| call.may_call(t.name())) {
        let (name, description, input, output, job, task_support) = match t {
            Tool::Sync(s) => (
                s.name(),
                s.description(),
                s.input_schema(),
                s.output_schema(),
                false,
                "forbidden",
            ),
            Tool::Job(j) => (
                j.name(),
                j.description(),
                j.input_schema(),
                j.output_schema(),
                true,
                match j.task_support() {
                    // The seed's explicit-handle tool answers with its handle at once.
                    _ if j.name() == "start_long_task" => "forbidden",
                    TaskSupport::Optional => "optional",
                    TaskSupport::Required => "required",
                },
            ),
        };
        let mut tool = json!({
            "name": name,
            "description": description,
            "inputSchema": input,
            "annotations": {"readOnlyHint": !job && is_read_only(name), "openWorldHint": job},
        });
        if let Some(o) = output {
            tool["outputSchema"] = o;
        }
        if let Some(shown) = t.presentation() {
            for (k, v) in shown {
                tool[k.as_str()] = v.clone();
            }
        }
        if call.era == Era::Legacy {
            // 2025-11-25 only; the 2026 schema has no `execution`.
            tool["execution"] = json!({"taskSupport": task_support});
        }
        tools.push(tool);
    }
    tools.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    let mut r = json!({ "tools": tools });
    if call.era == Era::Modern {
        // Tools change only with a reload, or as an upstream's listing changes: a client
        // may keep the list a minute, or five seconds behind upstreams.
        let ttl = if call.app().upstreams().all().is_empty() {
            60_000
        } else {
            5_000
        };
        r["ttlMs"] = json!(ttl);
        // A list filtered by an access token's scopes is that token's alone.
        r["cacheScope"] = json!(if call.grant.is_some() {
            "private"
        } else {
            "public"
        });
    }
    r
}

/// `resources/list`: the configured static resources (`[resources.NAME]`), in name order.
pub fn list_resources(call: &Call) -> Value {
    let registry = call.app().registry();
    let resources: Vec<Value> = registry
        .resources()
        .iter()
        .filter(|r| !r.template)
        .map(|r| {
            let mut v = json!({"uri": r.uri, "name": r.name, "mimeType": r.mime_type});
            if let Some(d) = &r.description {
                v["description"] = json!(d);
            }
            v
        })
        .collect();
    let mut out = json!({ "resources": resources });
    if call.era == Era::Modern {
        // Resources change only with a reload, as tools do.
        out["ttlMs"] = json!(60_000);
        out["cacheScope"] = json!("public");
    }
    out
}

/// `prompts/list`: the configured prompt templates (`[prompts.NAME]`), in name order.
pub fn list_prompts(call: &Call) -> Value {
    let registry = call.app().registry();
    let prompts: Vec<Value> = registry
        .prompts()
        .iter()
        .map(|p| {
            let args: Vec<Value> = p
                .arguments
                .iter()
                .map(|a| {
                    let mut v = json!({"name": a.name, "required": a.required});
                    if let Some(d) = &a.description {
                        v["description"] = json!(d);
                    }
                    v
                })
                .collect();
            json!({"name": p.name, "description": p.description, "arguments": args})
        })
        .collect();
    let mut out = json!({ "prompts": prompts });
    if call.era == Era::Modern {
        out["ttlMs"] = json!(60_000);
        out["cacheScope"] = json!("public");
    }
    out
}

/// `prompts/get`: a configured prompt's messages with its arguments filled in.
pub fn get_prompt(call: &Call, params: &Value) -> Result<Value, McpError> {
    let name = params.get("name").cloned().unwrap_or(Value::Null);
    let registry = call.app().registry();
    let Some(p) = name
        .as_str()
        .and_then(|n| registry.prompts().iter().find(|p| p.name == n))
    else {
        return Err(McpError::NotFound("prompt", name));
    };
    let args = match params.get("arguments") {
        None | Some(Value::Null) => serde_json::Map::new(),
        Some(Value::Object(o)) => o.clone(),
        Some(_) => {
            return Err(McpError::InvalidParams(
                "arguments must be an object".into(),
            ))
        }
    };
    let messages = p.render(&args).map_err(McpError::InvalidParams)?;
    Ok(json!({"description": p.description, "messages": messages}))
}

/// `resources/templates/list`: the configured `uri_template` resources.
pub fn list_resource_templates(call: &Call) -> Value {
    let registry = call.app().registry();
    let templates: Vec<Value> = registry
        .resources()
        .iter()
        .filter(|r| r.template)
        .map(|r| {
            let mut v = json!({"uriTemplate": r.uri, "name": r.name, "mimeType": r.mime_type});
            if let Some(d) = &r.description {
                v["description"] = json!(d);
            }
            v
        })
        .collect();
    let mut out = json!({ "resourceTemplates": templates });
    if call.era == Era::Modern {
        out["ttlMs"] = json!(60_000);
        out["cacheScope"] = json!("public");
    }
    out
}

/// `completion/complete`: the values a prompt argument declares (`completions`) that start
/// with what the user typed (case-insensitive), at most 100. Resource templates declare none.
pub fn complete(call: &Call, params: &Value) -> Result<Value, McpError> {
    let kind = params["ref"]["type"].as_str().unwrap_or("");
    let arg = params["argument"]["name"]
        .as_str()
        .ok_or_else(|| McpError::InvalidParams("argument.name must be a string".into()))?;
    let typed = params["argument"]["value"]
        .as_str()
        .unwrap_or("")
        .to_lowercase();
    let registry = call.app().registry();
    let values: Vec<&String> = match kind {
        "ref/prompt" => {
            let name = params["ref"]["name"].clone();
            let p = registry
                .prompts()
                .iter()
                .find(|p| Some(p.name.as_str()) == name.as_str())
                .ok_or(McpError::NotFound("prompt", name))?;
            let a = p.arguments.iter().find(|a| a.name == arg).ok_or_else(|| {
                McpError::InvalidParams(format!("prompt {:?} has no argument {arg:?}", p.name))
            })?;
            a.completions
                .iter()
                .filter(|v| v.to_lowercase().starts_with(&typed))
                .collect()
        }
        "ref/resource" => {
            let uri = params["ref"]["uri"].clone();
            if !registry
                .resources()
                .iter()
                .any(|r| r.template && Some(r.uri.as_str()) == uri.as_str())
            {
                return Err(McpError::NotFound("resource", uri));
            }
            Vec::new()
        }
        other => {
            return Err(McpError::InvalidParams(format!(
                "ref.type {other:?} is not ref/prompt or ref/resource"
            )))
        }
    };
    let total = values.len();
    let shown: Vec<&String> = values.into_iter().take(100).collect();
    Ok(json!({"completion": {"values": shown, "total": total, "hasMore": total > 100}}))
}

/// `resources/read` of a configured resource: its text, or its bytes base64-encoded; a
/// `uri_template` resource's text with the URI's variables filled in.
pub fn read_resource(call: &Call, params: &Value) -> Result<Value, McpError> {
    use crate::config::resources::ResourceContent;
    use base64::Engine;
    let uri = params.get("uri").cloned().unwrap_or(Value::Null);
    let registry = call.app().registry();
    let found = uri.as_str().and_then(|u| {
        let resources = registry.resources();
        resources
            .iter()
            .find(|r| !r.template && r.uri == u)
            .map(|r| (r, None))
            .or_else(|| {
                resources
                    .iter()
                    .find_map(|r| r.matches(u).map(|v| (r, Some(v))))
            })
    });
    let Some((r, vars)) = found else {
        return Err(McpError::NotFound("resource", uri));
    };
    let mut content = json!({"uri": uri, "mimeType": r.mime_type});
    match &r.content {
        ResourceContent::Text(t) => {
            content["text"] = match &vars {
                Some(v) => json!(crate::config::prompts::substitute(
                    t,
                    &escaped_for(&r.mime_type, v)
                )),
                None => json!(t),
            }
        }
        ResourceContent::Blob(b) => {
            content["blob"] = json!(base64::engine::general_purpose::STANDARD.encode(b))
        }
    }
    let mut out = json!({ "contents": [content] });
    if call.era == Era::Modern {
        // The same for every client, and changed only by a reload.
        out["ttlMs"] = json!(60_000);
        out["cacheScope"] = json!("public");
    }
    Ok(out)
}

/// A template's variables as its text may hold them: inside a JSON document (the author
/// writes the quotes) a value is escaped as JSON string contents, so a URI segment can
/// never end the string and add keys of its own; other types take the value as it is.
fn escaped_for(
    mime_type: &str,
    vars: &serde_json::Map<String, Value>,
) -> serde_json::Map<String, Value> {
    let essence = mime_type.split(';').next().unwrap_or("").trim();
    let json = essence.eq_ignore_ascii_case("application/json") || essence.ends_with("+json");
    if !json {
        return vars.clone();
    }
    vars.iter()
        .map(|(k, v)| {
            let text = v.as_str().map_or_else(|| v.to_string(), str::to_string);
            let quoted = Value::String(text).to_string();
            (k.clone(), json!(quoted[1..quoted.len() - 1]))
        })
        .collect()
}

fn is_read_only(name: &str) -> bool {
    matches!(name, "poll_job" | "server_identity" | "batch_sum")
}
