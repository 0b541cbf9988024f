//! Existing MCP servers behind mcpq: `[upstreams.NAME]` tables (docs/UPSTREAMS.md).
//!
//! Owns reading each table strictly: how the server is reached (a stdio process under
//! the same rules as command tools, or a streamable-HTTP URL with static headers or a
//! bearer token from a file), which of its tools are published (allow and deny globs) under
//! what names (a prefix), the session pool's size, and the policy keys its tools take,
//! for all of them and per tool, checked here as a `[tools.NAME]` table's would be.
//!
//! It must not connect to anything: `tools::upstream` runs the sessions and turns each
//! discovered tool into a [`ToolDef`] with [`UpstreamDef::tool_def`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::Deserialize;

use super::tool_table::{self, ToolDef, DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_KILL_GRACE_SECS};
use super::{ConfigError, Secret};

/// Sessions per upstream in each process, when `pool` is not set.
pub const DEFAULT_POOL: usize = 1;
pub const MAX_POOL: usize = 64;

/// The protocol revision mcpq speaks with an upstream (`revision = ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Revision {
    /// The newest both speak: `server/discover` first (2026-07-28), else `initialize`.
    #[default]
    Newest,
    /// Only 2026-07-28 (`server/discover`); a server without it fails to connect.
    V2026,
    /// Only the 2025-11-25 handshake (`initialize`), even with a server that speaks 2026.
    V2025,
}

impl Revision {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "newest" => Some(Self::Newest),
            "2026-07-28" => Some(Self::V2026),
            "2025-11-25" => Some(Self::V2025),
            _ => None,
        }
    }
}

/// How an upstream server is reached.
#[derive(Debug, Clone)]
pub enum Transport {
    /// A process speaking MCP on stdin/stdout (cleared environment, own process group).
    Stdio {
        argv: Vec<String>,
        env: BTreeMap<String, String>,
        working_dir: PathBuf,
        /// How long a server that stopped answering gets after a cancel before it is killed.
        kill_grace: Duration,
    },
    /// A streamable-HTTP endpoint.
    Http {
        url: String,
        /// Static headers, values from `headers`, `header_files` and `bearer_token_file`.
        headers: Vec<(String, Secret)>,
        connect_timeout: Duration,
    },
}

/// One validated `[upstreams.NAME]`.
#[derive(Debug, Clone)]
pub struct UpstreamDef {
    pub name: String,
    pub transport: Transport,
    /// Published names are `prefix + the upstream's name`.
    pub prefix: String,
    allow: GlobSet,
    deny: GlobSet,
    /// Initialized sessions per process that runs its tools.
    pub pool: usize,
    /// The protocol revision its sessions speak.
    pub revision: Revision,
    /// Policy keys for all its tools (`mode`, `timeout_secs`, …), as written.
    policy: toml::Table,
    /// Per-tool policy keys, by the upstream's tool name.
    tools: BTreeMap<String, toml::Table>,
    /// The table as written (header files by path): part of every tool's definition id.
    pub fingerprint: serde_json::Value,
}

/// The keys a `[upstreams.NAME]` table takes besides the policy keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    command: Option<Vec<String>>,
    url: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    working_dir: Option<PathBuf>,
    kill_grace_secs: Option<u64>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    header_files: BTreeMap<String, PathBuf>,
    bearer_token_file: Option<PathBuf>,
    connect_timeout_ms: Option<u64>,
    prefix: Option<String>,
    allow: Option<Vec<String>>,
    #[serde(default)]
    deny: Vec<String>,
    pool: Option<usize>,
    revision: Option<String>,
    #[serde(default)]
    tools: BTreeMap<String, toml::Table>,
}

/// The policy keys an upstream's tools take (the same meaning as in `[tools.NAME]`).
const POLICY_KEYS: &[&str] = &[
    "mode",
    "timeout_secs",
    "max_attempts",
    "retry_base_ms",
    "retry_max_ms",
    "concurrency",
    "priority",
    "concurrency_key",
    "concurrency_per_key",
    "rate_per_sec",
    "dedupe_secs",
    "on_worker_crash",
    "max_output_bytes",
    "task_support",
];

/// The policy keys a sync tool takes too.
const SYNC_KEYS: &[&str] = &["mode", "timeout_secs", "concurrency", "max_output_bytes"];

fn invalid(name: &str, msg: impl std::fmt::Display) -> ConfigError {
    ConfigError::Invalid(format!("upstreams.{name}: {msg}"))
}

/// Reads every `[upstreams.*]` table of `file` (none without a file).
pub fn load(file: Option<&Path>) -> Result<Vec<UpstreamDef>, ConfigError> {
    let Some(file) = file else {
        return Ok(Vec::new());
    };
    let text = std::fs::read_to_string(file)
        .map_err(|e| ConfigError::Invalid(format!("cannot read {}: {e}", file.display())))?;
    parse(&text, file.parent().unwrap_or(Path::new(".")))
}

/// Parses the `[upstreams]` tables of a TOML document; files are relative to `base`.
pub fn parse(text: &str, base: &Path) -> Result<Vec<UpstreamDef>, ConfigError> {
    #[derive(Deserialize)]
    struct Doc {
        #[serde(default)]
        upstreams: BTreeMap<String, toml::Value>,
    }
    let doc: Doc = toml::from_str(text).map_err(|e| ConfigError::Invalid(e.to_string()))?;
    let mut out = Vec::new();
    for (name, value) in doc.upstreams {
        out.push(resolve(&name, value, base)?);
    }
    Ok(out)
}

fn resolve(name: &str, value: toml::Value, base: &Path) -> Result<UpstreamDef, ConfigError> {
    if name.is_empty()
        || name.len() > 32
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
    {
        return Err(invalid(
            name,
            "an upstream name is 1 to 32 of A-Z a-z 0-9 _ -",
        ));
    }
    let fingerprint = serde_json::to_value(&value).map_err(|e| invalid(name, e))?;
    let toml::Value::Table(mut table) = value else {
        return Err(invalid(name, "must be a table ([upstreams.NAME])"));
    };
    let mut policy = toml::Table::new();
    for key in POLICY_KEYS {
        if let Some(v) = table.remove(*key) {
            policy.insert(key.to_string(), v);
        }
    }
    let raw: RawUpstream = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| invalid(name, e.message()))?;
    let transport = transport(name, &raw, base)?;
    let prefix = raw.prefix.clone().unwrap_or_else(|| format!("{name}_"));
    let globs = |key: &str, list: &[String]| -> Result<GlobSet, ConfigError> {
        let mut b = GlobSetBuilder::new();
        for g in list {
            b.add(Glob::new(g).map_err(|e| invalid(name, format!("{key}: {g:?}: {e}")))?);
        }
        b.build().map_err(|e| invalid(name, format!("{key}: {e}")))
    };
    let allow = globs("allow", raw.allow.as_deref().unwrap_or(&["*".to_string()]))?;
    let deny = globs("deny", &raw.deny)?;
    let pool = raw.pool.unwrap_or(DEFAULT_POOL);
    if !(1..=MAX_POOL).contains(&pool) {
        return Err(invalid(name, format!("pool is 1 to {MAX_POOL}")));
    }
    let revision = match raw.revision.as_deref() {
        None => Revision::Newest,
        Some(text) => Revision::parse(text).ok_or_else(|| {
            invalid(
                name,
                format!("revision {text:?}: \"newest\", \"2026-07-28\" or \"2025-11-25\""),
            )
        })?,
    };
    let def = UpstreamDef {
        name: name.to_string(),
        transport,
        prefix,
        allow,
        deny,
        pool,
        revision,
        policy,
        tools: raw.tools,
        fingerprint,
    };
    // Every policy table must make a valid tool now, not when the upstream first answers.
    let probe = serde_json::json!({"type": "object"});
    def.tool_def("probe", "", &probe, None, None)
        .map_err(|e| invalid(name, e))?;
    for tool in def.tools.keys() {
        def.tool_def(tool, "", &probe, None, None)
            .map_err(|e| invalid(name, format!("tools.{tool}: {e}")))?;
    }
    Ok(def)
}

fn transport(name: &str, raw: &RawUpstream, base: &Path) -> Result<Transport, ConfigError> {
    let http_only = !raw.headers.is_empty()
        || !raw.header_files.is_empty()
        || raw.bearer_token_file.is_some()
        || raw.connect_timeout_ms.is_some();
    let stdio_only =
        !raw.env.is_empty() || raw.working_dir.is_some() || raw.kill_grace_secs.is_some();
    match (&raw.command, &raw.url) {
        (Some(_), Some(_)) => Err(invalid(name, "set command or url, not both")),
        (None, None) => Err(invalid(
            name,
            "set command = [...] (stdio) or url = \"...\" (HTTP)",
        )),
        (Some(argv), None) => {
            if http_only {
                return Err(invalid(
                    name,
                    "headers, header_files, bearer_token_file and connect_timeout_ms apply only to HTTP upstreams (`url = ...`)",
                ));
            }
            if argv.is_empty() || argv[0].is_empty() || argv.iter().any(|a| a.contains('\0')) {
                return Err(invalid(name, "command must name a program (no NUL bytes)"));
            }
            let working_dir = raw
                .working_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("/"));
            if !working_dir.is_absolute() {
                return Err(invalid(name, "working_dir must be an absolute path"));
            }
            Ok(Transport::Stdio {
                argv: argv.clone(),
                env: raw.env.clone(),
                working_dir,
                kill_grace: Duration::from_secs(
                    raw.kill_grace_secs.unwrap_or(DEFAULT_KILL_GRACE_SECS),
                ),
            })
        }
        (None, Some(url)) => {
            if stdio_only {
                return Err(invalid(
                    name,
                    "env, working_dir and kill_grace_secs apply only to stdio upstreams (`command = [...]`)",
                ));
            }
            let parsed =
                reqwest::Url::parse(url).map_err(|e| invalid(name, format!("url: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                return Err(invalid(name, "url must be http:// or https:// with a host"));
            }
            let mut headers = Vec::new();
            for (k, v) in &raw.headers {
                headers.push((k.clone(), Secret::new(v.clone().into_bytes())));
            }
            let read = |key: &str, p: &PathBuf| -> Result<Secret, ConfigError> {
                let path = base.join(p);
                let v = std::fs::read_to_string(&path)
                    .map_err(|e| invalid(name, format!("{key}: {}: {e}", path.display())))?;
                Ok(Secret::new(v.trim_end_matches(['\n', '\r']).as_bytes()))
            };
            for (k, p) in &raw.header_files {
                headers.push((k.clone(), read(&format!("header_files.{k}"), p)?));
            }
            if let Some(p) = &raw.bearer_token_file {
                let token = read("bearer_token_file", p)?;
                let mut v = b"Bearer ".to_vec();
                v.extend_from_slice(token.expose());
                headers.push(("authorization".into(), Secret::new(v)));
            }
            for (k, v) in &headers {
                if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err()
                    || reqwest::header::HeaderValue::from_bytes(v.expose()).is_err()
                {
                    return Err(invalid(
                        name,
                        format!("header {k:?} is not a valid HTTP header"),
                    ));
                }
            }
            Ok(Transport::Http {
                url: url.clone(),
                headers,
                connect_timeout: Duration::from_millis(
                    raw.connect_timeout_ms.unwrap_or(DEFAULT_CONNECT_TIMEOUT_MS),
                ),
            })
        }
    }
}

impl UpstreamDef {
    /// Whether the upstream's tool `name` is published (allowed and not denied).
    pub fn publishes(&self, name: &str) -> bool {
        self.allow.is_match(name) && !self.deny.is_match(name)
    }

    /// The tool the upstream lists as `tool` (its description and schemas), published
    /// as `prefix + tool` with this upstream's policy keys and the tool's own. The
    /// definition id covers the upstream's table and the tool's definition, so a job
    /// queued under one listing is never run against another.
    pub fn tool_def(
        &self,
        tool: &str,
        description: &str,
        input_schema: &serde_json::Value,
        output_schema: Option<&serde_json::Value>,
        presentation: Option<serde_json::Map<String, serde_json::Value>>,
    ) -> Result<ToolDef, ConfigError> {
        let mut table = self.policy.clone();
        let own_mode = self.tools.get(tool).and_then(|t| t.get("mode"));
        if own_mode.and_then(toml::Value::as_str) == Some("sync") {
            // The upstream's job-only defaults do not apply to a tool made sync.
            table.retain(|k: &str, _| SYNC_KEYS.contains(&k));
        }
        if let Some(own) = self.tools.get(tool) {
            for (k, v) in own {
                if !POLICY_KEYS.contains(&k.as_str()) {
                    return Err(ConfigError::Invalid(format!(
                        "unknown key {k:?}: a tool of an upstream takes {}",
                        POLICY_KEYS.join(", ")
                    )));
                }
                table.insert(k.clone(), v.clone());
            }
        }
        let description = if description.trim().is_empty() {
            format!("{tool} (upstream {})", self.name)
        } else {
            description.to_string()
        };
        table.insert("description".into(), toml::Value::String(description));
        let name = format!("{}{tool}", self.prefix);
        let fingerprint = serde_json::json!([self.fingerprint, tool, table_json(&table)]);
        let mut def = tool_table::upstream_tool(
            &name,
            table,
            fingerprint,
            input_schema.clone(),
            output_schema.cloned(),
            tool_table::Target::Upstream {
                upstream: self.name.clone(),
                tool: tool.to_string(),
            },
        )?;
        def.presentation = presentation;
        Ok(def)
    }
}

fn table_json(t: &toml::Table) -> serde_json::Value {
    serde_json::to_value(t).unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(toml: &str) -> String {
        match parse(toml, Path::new("/")) {
            Ok(_) => panic!("accepted: {toml}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_stdio_upstream_publishes_allowed_tools_under_its_prefix() {
        let ups = parse(
            "[upstreams.fs]\ncommand = [\"/bin/srv\"]\ndeny = [\"write_*\"]\nmax_attempts = 2\n[upstreams.fs.tools.read]\nmode = \"sync\"\n",
            Path::new("/"),
        )
        .unwrap();
        let u = &ups[0];
        assert!(u.publishes("read") && !u.publishes("write_file"));
        let schema = serde_json::json!({"type": "object"});
        let read = u.tool_def("read", "Reads", &schema, None, None).unwrap();
        assert_eq!(read.name, "fs_read");
        assert_eq!(read.mode, tool_table::Mode::Sync, "its own mode wins");
        let list = u.tool_def("list", "", &schema, None, None).unwrap();
        assert_eq!(list.max_attempts, Some(2), "the upstream's policy applies");
        assert_eq!(list.description, "list (upstream fs)");
        let other = serde_json::json!({"type": "object", "required": ["x"]});
        assert_ne!(
            list.definition,
            u.tool_def("list", "", &other, None, None)
                .unwrap()
                .definition,
            "a changed schema is another definition"
        );
    }

    #[test]
    fn strict_keys_name_the_upstream_and_the_key() {
        assert!(refused("[upstreams.a]\ncommand = [\"/x\"]\nbogus = 1\n").contains("upstreams.a"));
        assert!(
            refused("[upstreams.a]\ncommand = [\"/x\"]\nurl = \"http://h/\"\n")
                .contains("not both")
        );
        assert!(
            refused("[upstreams.a]\ncommand = [\"/x\"]\nbearer_token_file = \"t\"\n")
                .contains("only to HTTP")
        );
        assert!(
            refused("[upstreams.a]\nurl = \"http://h/mcp\"\nenv = { A = \"b\" }\n")
                .contains("only to stdio")
        );
        assert!(refused("[upstreams.a]\ncommand = [\"/x\"]\npool = 0\n").contains("pool"));
        assert!(
            refused("[upstreams.a]\ncommand = [\"/x\"]\nrevision = \"2024-11-05\"\n")
                .contains("revision \"2024-11-05\"")
        );
        let e = refused(
            "[upstreams.a]\ncommand = [\"/x\"]\n[upstreams.a.tools.t]\nmode = \"sync\"\nmax_attempts = 2\n",
        );
        assert!(e.contains("tools.t") && e.contains("max_attempts"), "{e}");
        let e = refused("[upstreams.a]\ncommand = [\"/x\"]\n[upstreams.a.tools.t]\nurl = \"x\"\n");
        assert!(e.contains("tools.t") && e.contains("url"), "{e}");
    }
}
