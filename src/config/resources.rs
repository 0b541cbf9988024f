//! Static resources from the configuration file: `[resources.NAME]` tables, served to MCP
//! clients at `/mcp` (`resources/list`, `resources/read`; docs/MCP.md): documents an agent
//! may read (a runbook, a schema, a logo), inline text or a file read at load and reload.
//!
//! Owns reading and checking the tables (unknown keys, exactly one source, a URI with a
//! scheme, unique URIs, a size cap) and loading the files. It must not serve anything:
//! `mcp::methods` does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigError;

/// Largest resource served (a file is read whole at load).
pub const MAX_RESOURCE_BYTES: usize = 4 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceContent {
    Text(String),
    /// Served base64-encoded as `blob`.
    Blob(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceDef {
    /// The table's name, also the resource's `name`.
    pub name: String,
    /// The URI, or for a template (`uri_template`) an RFC 6570 level-1 template whose
    /// `{var}`s each match one path segment and fill `{{var}}` in its text.
    pub uri: String,
    pub template: bool,
    pub description: Option<String>,
    pub mime_type: String,
    pub content: ResourceContent,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResource {
    uri: Option<String>,
    uri_template: Option<String>,
    mime_type: Option<String>,
    description: Option<String>,
    /// Inline text.
    text: Option<String>,
    /// A file, relative to the configuration file's directory.
    file: Option<PathBuf>,
    /// Serve the file as binary (`blob`) even if it is valid UTF-8.
    #[serde(default)]
    binary: bool,
}

fn invalid(name: &str, msg: impl std::fmt::Display) -> ConfigError {
    ConfigError::Invalid(format!("resources.{name}: {msg}"))
}

/// The `[resources]` tables of the configuration file (none without a file).
pub fn load(file: Option<&Path>) -> Result<Vec<ResourceDef>, ConfigError> {
    let Some(file) = file else {
        return Ok(Vec::new());
    };
    let text = std::fs::read_to_string(file)
        .map_err(|e| ConfigError::Invalid(format!("cannot read {}: {e}", file.display())))?;
    parse(&text, file.parent().unwrap_or(Path::new(".")))
}

/// Parses the `[resources]` tables of a TOML document; files are relative to `base`.
pub fn parse(text: &str, base: &Path) -> Result<Vec<ResourceDef>, ConfigError> {
    #[derive(Deserialize)]
    struct Doc {
        #[serde(default)]
        resources: BTreeMap<String, toml::Value>,
    }
    let doc: Doc = toml::from_str(text).map_err(|e| ConfigError::Invalid(e.to_string()))?;
    let mut out: Vec<ResourceDef> = Vec::new();
    for (name, table) in doc.resources {
        let raw: RawResource = table
            .try_into()
            .map_err(|e: toml::de::Error| invalid(&name, e.message()))?;
        let (uri, template) = match (raw.uri, raw.uri_template) {
            (Some(u), None) => (u, false),
            (None, Some(t)) => (t, true),
            _ => return Err(invalid(&name, "give exactly one of uri or uri_template")),
        };
        let scheme_ok = uri.split_once(':').is_some_and(|(s, rest)| {
            !s.is_empty()
                && !rest.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        });
        if !scheme_ok {
            return Err(invalid(
                &name,
                format!("uri {uri:?} must be an absolute URI (scheme:rest)"),
            ));
        }
        if out.iter().any(|r| r.uri == uri) {
            return Err(invalid(&name, format!("uri {uri:?} is used twice")));
        }
        let vars = template_vars(&uri);
        if template {
            if vars.is_none() || vars.as_ref().is_some_and(Vec::is_empty) {
                return Err(invalid(
                    &name,
                    "uri_template needs at least one {name} (letters, digits, _), nothing else in braces",
                ));
            }
            if raw.text.is_none() || raw.binary {
                return Err(invalid(&name, "a uri_template resource takes text only"));
            }
            let vars = vars.clone().unwrap_or_default();
            for p in crate::config::prompts::placeholders(raw.text.as_deref().unwrap_or("")) {
                if !vars.iter().any(|v| v == p) {
                    return Err(invalid(
                        &name,
                        format!("{{{{{p}}}}} is not a variable of the uri_template"),
                    ));
                }
            }
        } else if uri.contains('{') {
            return Err(invalid(&name, "a uri with {…} is a uri_template"));
        }
        let content = content(&name, raw.text, raw.file, raw.binary, base)?;
        if let ResourceContent::Text(t) = &content {
            if t.len() > MAX_RESOURCE_BYTES {
                return Err(invalid(&name, "text is too large"));
            }
        }
        let mime_type = match (raw.mime_type, &content) {
            (Some(m), _) => m,
            (None, ResourceContent::Text(_)) => "text/plain".to_string(),
            (None, ResourceContent::Blob(_)) => {
                return Err(invalid(&name, "a binary resource needs mime_type"))
            }
        };
        out.push(ResourceDef {
            name,
            uri,
            template,
            description: raw.description,
            mime_type,
            content,
        });
    }
    Ok(out)
}

/// A resource's content: its `text`, or a file's (text unless `binary`), within
/// [`MAX_RESOURCE_BYTES`].
fn content(
    name: &str,
    text: Option<String>,
    file: Option<PathBuf>,
    binary: bool,
    base: &Path,
) -> Result<ResourceContent, ConfigError> {
    Ok(match (text, file) {
        (Some(t), None) if !binary => ResourceContent::Text(t),
        (Some(_), None) => return Err(invalid(name, "binary applies to a file only")),
        (None, Some(f)) => {
            let path = if f.is_absolute() { f } else { base.join(f) };
            let bytes = std::fs::read(&path)
                .map_err(|e| invalid(name, format!("cannot read {}: {e}", path.display())))?;
            if bytes.len() > MAX_RESOURCE_BYTES {
                return Err(invalid(
                    name,
                    format!(
                        "{} is larger than {MAX_RESOURCE_BYTES} bytes",
                        path.display()
                    ),
                ));
            }
            match (binary, String::from_utf8(bytes)) {
                (false, Ok(t)) => ResourceContent::Text(t),
                (_, Ok(t)) => ResourceContent::Blob(t.into_bytes()),
                (_, Err(e)) => ResourceContent::Blob(e.into_bytes()),
            }
        }
        _ => return Err(invalid(name, "give exactly one of text or file")),
    })
}

/// The `{var}` names of a template in order; `None` if a brace group is not a plain name.
fn template_vars(t: &str) -> Option<Vec<String>> {
    let mut vars = Vec::new();
    let mut rest = t;
    while let Some(i) = rest.find('{') {
        let after = &rest[i + 1..];
        let j = after.find('}')?;
        let v = &after[..j];
        if v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return None;
        }
        vars.push(v.to_string());
        rest = &after[j + 1..];
    }
    (!rest.contains('}')).then_some(vars)
}

impl ResourceDef {
    /// For a template, the variables `uri` fills (each one path segment, not empty), in a
    /// JSON object; `None` if it does not match.
    pub fn matches(&self, uri: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
        if !self.template {
            return None;
        }
        let mut vars = serde_json::Map::new();
        let mut pattern = self.uri.as_str();
        let mut rest = uri;
        while let Some(i) = pattern.find('{') {
            let literal = &pattern[..i];
            rest = rest.strip_prefix(literal)?;
            let after = &pattern[i + 1..];
            let j = after.find('}')?;
            let name = &after[..j];
            pattern = &after[j + 1..];
            // A variable runs to the next literal character (or the end), never across '/'.
            let stop = pattern.chars().next();
            let end = rest
                .find(|c| c == '/' || Some(c) == stop)
                .unwrap_or(rest.len());
            if end == 0 {
                return None;
            }
            vars.insert(
                name.to_string(),
                serde_json::Value::String(rest[..end].to_string()),
            );
            rest = &rest[end..];
        }
        (rest == pattern).then_some(vars)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_are_checked_and_loaded() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("logo.png"), [0x89, b'P', b'N', b'G', 0xff]).unwrap();
        std::fs::write(dir.path().join("notes.md"), "# notes").unwrap();
        let ok = r#"
[resources.guide]
uri = "docs://guide"
text = "hello"
[resources.logo]
uri = "docs://logo"
file = "logo.png"
mime_type = "image/png"
[resources.notes]
uri = "docs://notes"
file = "notes.md"
mime_type = "text/markdown"
"#;
        let r = parse(ok, dir.path()).unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].content, ResourceContent::Text("hello".into()));
        assert_eq!(r[0].mime_type, "text/plain");
        assert!(matches!(&r[1].content, ResourceContent::Blob(b) if b.len() == 5));
        assert_eq!(r[2].content, ResourceContent::Text("# notes".into()));
        for (bad, why) in [
            ("[resources.a]\nuri = \"nouri\"\ntext = \"x\"", "absolute URI"),
            ("[resources.a]\nuri = \"d://a\"", "exactly one"),
            ("[resources.a]\nuri = \"d://a\"\ntext = \"x\"\nfile = \"notes.md\"", "exactly one"),
            ("[resources.a]\nuri = \"d://a\"\ntext = \"x\"\nmimetype = \"y\"", "unknown field"),
            ("[resources.a]\nuri = \"d://a\"\nfile = \"logo.png\"", "needs mime_type"),
            ("[resources.a]\nuri = \"d://a\"\nfile = \"missing\"", "cannot read"),
            ("[resources.a]\nuri = \"d://a\"\ntext = \"x\"\n[resources.b]\nuri = \"d://a\"\ntext = \"y\"", "used twice"),
        ] {
            let e = parse(bad, dir.path()).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn templates_match_one_segment_per_variable() {
        let ok = "[resources.item]\nuri_template = \"items://{kind}/{id}.json\"\ntext = \"{{kind}} {{id}}\"";
        let r = &parse(ok, Path::new("/")).unwrap()[0];
        assert!(r.template);
        let v = r.matches("items://book/42.json").unwrap();
        assert_eq!(
            (v["kind"].as_str(), v["id"].as_str()),
            (Some("book"), Some("42"))
        );
        for no in [
            "items://book/42",
            "items://book/a/42.json",
            "items:///42.json",
            "other://book/42.json",
        ] {
            assert!(r.matches(no).is_none(), "{no}");
        }
        for (bad, why) in [
            (
                "[resources.a]\nuri_template = \"a://{x}\"\ntext = \"{{y}}\"",
                "not a variable",
            ),
            (
                "[resources.a]\nuri_template = \"a://{x y}\"\ntext = \"t\"",
                "needs at least one",
            ),
            (
                "[resources.a]\nuri = \"a://{x}\"\ntext = \"t\"",
                "is a uri_template",
            ),
            (
                "[resources.a]\nuri = \"a://x\"\nuri_template = \"a://{x}\"\ntext = \"t\"",
                "exactly one of uri",
            ),
        ] {
            let e = parse(bad, Path::new("/")).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
