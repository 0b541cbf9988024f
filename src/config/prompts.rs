//! Prompt templates from the configuration file: `[prompts.NAME]` tables, served to MCP
//! clients at `/mcp` (`prompts/list`, `prompts/get`; docs/MCP.md): a team's vetted
//! instructions an agent fills in (review this diff, summarize this incident), with
//! declared arguments substituted for `{{name}}` in every text of its messages.
//!
//! Owns reading and checking the tables (unknown keys, one content per message, roles,
//! placeholders that name declared arguments, image files loaded at load and reload) and
//! the substitution. It must not serve anything: `mcp::methods` does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{json, Value};

use super::ConfigError;

/// Largest image a prompt embeds (read whole at load).
pub const MAX_IMAGE_BYTES: usize = 4 << 20;

#[derive(Debug, Clone, PartialEq)]
pub struct PromptArgument {
    pub name: String,
    pub description: Option<String>,
    pub required: bool,
    /// Values `completion/complete` suggests for it.
    pub completions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PromptDef {
    pub name: String,
    pub description: String,
    pub arguments: Vec<PromptArgument>,
    /// `{role, content}` messages; strings in `content` may hold `{{argument}}`.
    pub messages: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArgument {
    name: String,
    description: Option<String>,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    completions: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMessage {
    role: String,
    /// Shorthand for a text block.
    text: Option<String>,
    /// An MCP content block as it goes on the wire (`resource`, `resource_link`, …).
    content: Option<serde_json::Map<String, Value>>,
    /// An image file (relative to the configuration file), sent base64 with `mime_type`.
    image_file: Option<PathBuf>,
    mime_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrompt {
    description: String,
    #[serde(default)]
    arguments: Vec<RawArgument>,
    messages: Vec<RawMessage>,
}

fn invalid(name: &str, msg: impl std::fmt::Display) -> ConfigError {
    ConfigError::Invalid(format!("prompts.{name}: {msg}"))
}

/// The `[prompts]` tables of the configuration file (none without a file).
pub fn load(file: Option<&Path>) -> Result<Vec<PromptDef>, ConfigError> {
    let Some(file) = file else {
        return Ok(Vec::new());
    };
    let text = std::fs::read_to_string(file)
        .map_err(|e| ConfigError::Invalid(format!("cannot read {}: {e}", file.display())))?;
    parse(&text, file.parent().unwrap_or(Path::new(".")))
}

/// Every `{{name}}` in `s`.
pub(crate) fn placeholders(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find("{{") {
        let after = &rest[i + 2..];
        let Some(j) = after.find("}}") else { break };
        out.push(after[..j].trim());
        rest = &after[j + 2..];
    }
    out
}

fn strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

/// Parses the `[prompts]` tables of a TOML document; image files are relative to `base`.
pub fn parse(text: &str, base: &Path) -> Result<Vec<PromptDef>, ConfigError> {
    use base64::Engine;
    #[derive(Deserialize)]
    struct Doc {
        #[serde(default)]
        prompts: BTreeMap<String, toml::Value>,
    }
    let doc: Doc = toml::from_str(text).map_err(|e| ConfigError::Invalid(e.to_string()))?;
    let mut out = Vec::new();
    for (name, table) in doc.prompts {
        let raw: RawPrompt = table
            .try_into()
            .map_err(|e: toml::de::Error| invalid(&name, e.message()))?;
        if raw.description.trim().is_empty() {
            return Err(invalid(&name, "description must not be empty"));
        }
        if raw.messages.is_empty() {
            return Err(invalid(
                &name,
                "give at least one [[prompts.NAME.messages]]",
            ));
        }
        let mut arguments: Vec<PromptArgument> = Vec::new();
        for a in raw.arguments {
            if a.name.is_empty() || arguments.iter().any(|x| x.name == a.name) {
                return Err(invalid(
                    &name,
                    format!("argument {:?} is empty or twice", a.name),
                ));
            }
            arguments.push(PromptArgument {
                name: a.name,
                description: a.description,
                required: a.required,
                completions: a.completions,
            });
        }
        let mut messages = Vec::new();
        for (i, m) in raw.messages.into_iter().enumerate() {
            if m.role != "user" && m.role != "assistant" {
                return Err(invalid(
                    &name,
                    format!("messages[{i}].role must be user or assistant"),
                ));
            }
            let content = match (m.text, m.content, m.image_file) {
                (Some(t), None, None) => json!({"type": "text", "text": t}),
                (None, Some(c), None) if c.get("type").is_some_and(Value::is_string) => {
                    Value::Object(c)
                }
                (None, None, Some(f)) => {
                    let mime = m.mime_type.clone().ok_or_else(|| {
                        invalid(&name, format!("messages[{i}]: an image_file needs mime_type"))
                    })?;
                    let path = if f.is_absolute() { f } else { base.join(f) };
                    let bytes = std::fs::read(&path).map_err(|e| {
                        invalid(&name, format!("cannot read {}: {e}", path.display()))
                    })?;
                    if bytes.len() > MAX_IMAGE_BYTES {
                        return Err(invalid(&name, format!("{} is too large", path.display())));
                    }
                    let data = base64::engine::general_purpose::STANDARD.encode(bytes);
                    json!({"type": "image", "data": data, "mimeType": mime})
                }
                _ => {
                    return Err(invalid(
                        &name,
                        format!("messages[{i}]: give exactly one of text, content (with a type) or image_file"),
                    ))
                }
            };
            if m.mime_type.is_some() && content["type"] != "image" {
                return Err(invalid(
                    &name,
                    format!("messages[{i}]: mime_type goes with image_file"),
                ));
            }
            let mut texts = Vec::new();
            strings(&content, &mut texts);
            for p in texts.iter().flat_map(|t| placeholders(t)) {
                if !arguments.iter().any(|a| a.name == p) {
                    return Err(invalid(
                        &name,
                        format!("{{{{{p}}}}} names no declared argument"),
                    ));
                }
            }
            messages.push(json!({"role": m.role, "content": content}));
        }
        out.push(PromptDef {
            name,
            description: raw.description,
            arguments,
            messages,
        });
    }
    Ok(out)
}

/// `s` with each `{{name}}` replaced by that argument (empty if an optional one is not
/// given), in one pass: a value holding `{{…}}` is not expanded again.
pub(crate) fn substitute(s: &str, args: &serde_json::Map<String, Value>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("{{") {
        let after = &rest[i + 2..];
        let Some(j) = after.find("}}") else { break };
        out.push_str(&rest[..i]);
        if let Some(v) = args.get(after[..j].trim()) {
            out.push_str(v.as_str().unwrap_or_default());
        }
        rest = &after[j + 2..];
    }
    out.push_str(rest);
    out
}

fn fill(v: &Value, args: &serde_json::Map<String, Value>) -> Value {
    match v {
        Value::String(s) => Value::String(substitute(s, args)),
        Value::Array(a) => Value::Array(a.iter().map(|x| fill(x, args)).collect()),
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, x)| (k.clone(), fill(x, args))).collect())
        }
        other => other.clone(),
    }
}

impl PromptDef {
    /// The messages with `args` substituted; the error names a missing required argument
    /// or one that is not declared.
    pub fn render(&self, args: &serde_json::Map<String, Value>) -> Result<Vec<Value>, String> {
        if let Some(a) = self
            .arguments
            .iter()
            .find(|a| a.required && !args.contains_key(&a.name))
        {
            return Err(format!("argument {:?} is required", a.name));
        }
        if let Some(k) = args
            .keys()
            .find(|k| !self.arguments.iter().any(|a| &a.name == *k))
        {
            return Err(format!("argument {k:?} is not one of this prompt's"));
        }
        if let Some((k, _)) = args.iter().find(|(_, v)| !v.is_string()) {
            return Err(format!("argument {k:?} must be a string"));
        }
        Ok(self.messages.iter().map(|m| fill(m, args)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_are_checked_and_rendered() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.png"), [0x89, b'P', b'N', b'G']).unwrap();
        let ok = r#"
[prompts.review]
description = "Review a diff"
arguments = [{ name = "diff", required = true }, { name = "focus" }]
[[prompts.review.messages]]
role = "user"
text = "Review {{diff}} (focus: {{ focus }})"
[[prompts.review.messages]]
role = "user"
content = { type = "resource", resource = { uri = "diff://{{diff}}", mimeType = "text/plain", text = "x" } }
[[prompts.review.messages]]
role = "assistant"
image_file = "p.png"
mime_type = "image/png"
"#;
        let p = &parse(ok, dir.path()).unwrap()[0];
        let args = |v: Value| v.as_object().unwrap().clone();
        let m = p.render(&args(json!({"diff": "a.rs"}))).unwrap();
        let again = p
            .render(&args(json!({"diff": "{{focus}}", "focus": "x"})))
            .unwrap();
        assert_eq!(again[0]["content"]["text"], "Review {{focus}} (focus: x)");
        assert_eq!(m[0]["content"]["text"], "Review a.rs (focus: )");
        assert_eq!(m[1]["content"]["resource"]["uri"], "diff://a.rs");
        assert_eq!(m[2]["content"]["data"], "iVBORw==");
        assert!(p
            .render(&args(json!({})))
            .unwrap_err()
            .contains("\"diff\" is required"));
        assert!(p.render(&args(json!({"diff": "a", "x": "y"}))).is_err());
        assert!(p.render(&args(json!({"diff": 5}))).is_err());
        for (bad, why) in [
            ("[prompts.a]\ndescription = \"A\"\nmessages = []", "at least one"),
            ("[prompts.a]\ndescription = \"A\"\n[[prompts.a.messages]]\nrole = \"system\"\ntext = \"x\"", "role"),
            ("[prompts.a]\ndescription = \"A\"\n[[prompts.a.messages]]\nrole = \"user\"\ntext = \"{{x}}\"", "names no declared argument"),
            ("[prompts.a]\ndescription = \"A\"\n[[prompts.a.messages]]\nrole = \"user\"\ntext = \"x\"\nimage_file = \"p.png\"", "exactly one"),
            ("[prompts.a]\ndescription = \"A\"\n[[prompts.a.messages]]\nrole = \"user\"\nimage_file = \"p.png\"", "needs mime_type"),
            ("[prompts.a]\ndescription = \"A\"\nextra = 1\n[[prompts.a.messages]]\nrole = \"user\"\ntext = \"x\"", "unknown field"),
        ] {
            let e = parse(bad, dir.path()).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
