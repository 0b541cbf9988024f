//! Tool definitions from the configuration file: `[tools.NAME]` tables (docs/TOOLS.md).
//!
//! Owns reading the tables (straight from the TOML file, so keys keep their case: JSON
//! Schema's `additionalProperties` and environment names like `PATH` are case-sensitive),
//! refusing unknown keys and contradictory settings with a message naming the tool and the
//! key, resolving schema files, loading header secrets from files, and the definition id
//! each job records.
//!
//! It must not compile schemas, spawn processes or open connections: `tools::config_tool`
//! turns a [`ToolDef`] into a callable tool.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{ConfigError, Secret};
use crate::jobs::CrashPolicy;

/// Where a job-mode tool's attempt may run at most, when `timeout_secs` is not set.
pub const DEFAULT_JOB_TIMEOUT_SECS: u64 = 600;
/// Sync tools answer within the request: short by default, never long.
pub const DEFAULT_SYNC_TIMEOUT_SECS: u64 = 10;
pub const MAX_SYNC_TIMEOUT_SECS: u64 = 30;
/// Concurrent runs of one sync tool in one daemon, when `concurrency` is not set.
pub const DEFAULT_SYNC_CONCURRENCY: u32 = 8;
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 1 << 20;
pub const MAX_MAX_OUTPUT_BYTES: usize = 16 << 20;
pub const DEFAULT_KILL_GRACE_SECS: u64 = 5;
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 5_000;

/// `mode`: who runs the tool and when the caller hears back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A durable job: accepted once stored, run by a worker, polled.
    #[default]
    Job,
    /// Run by the daemon within the request, answered at once.
    Sync,
}

/// `task_support` of a job tool: may a standard MCP client wait for it in the request
/// (`optional`), or must it ask for a task (`required`: for tools that run too long to
/// hold a request open)? Sync tools answer at once and never run as tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TaskSupport {
    #[default]
    Optional,
    Required,
}

/// One `[tools.NAME]` table as written. Every key is documented in docs/TOOLS.md.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTool {
    description: String,
    #[serde(default)]
    mode: Mode,
    command: Option<Vec<String>>,
    url: Option<String>,
    input_schema: Option<serde_json::Value>,
    input_schema_file: Option<PathBuf>,
    output_schema: Option<serde_json::Value>,
    output_schema_file: Option<PathBuf>,
    timeout_secs: Option<u64>,
    max_attempts: Option<u32>,
    retry_base_ms: Option<i64>,
    retry_max_ms: Option<i64>,
    concurrency: Option<u32>,
    priority: Option<u8>,
    concurrency_key: Option<String>,
    concurrency_per_key: Option<u32>,
    rate_per_sec: Option<f64>,
    dedupe_secs: Option<u64>,
    on_worker_crash: Option<CrashPolicy>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    working_dir: Option<PathBuf>,
    kill_grace_secs: Option<u64>,
    max_output_bytes: Option<usize>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    header_files: BTreeMap<String, PathBuf>,
    connect_timeout_ms: Option<u64>,
    task_support: Option<TaskSupport>,
    ask: Option<serde_json::Map<String, serde_json::Value>>,
}

/// How the tool is run.
#[derive(Debug, Clone)]
pub enum Target {
    /// Exec of an argv (never a shell).
    Command {
        argv: Vec<String>,
        env: BTreeMap<String, String>,
        working_dir: PathBuf,
        kill_grace: Duration,
    },
    /// POST to a URL from the configuration.
    Http {
        url: String,
        /// Static headers; values from `header_files` are secrets.
        headers: Vec<(String, Secret)>,
        connect_timeout: Duration,
    },
    /// A tool of an MCP server behind mcpq (`[upstreams.NAME]`), by its own name there.
    Upstream { upstream: String, tool: String },
}

/// A validated tool definition.
#[derive(Debug, Clone)]
pub struct ToolDef {
    pub name: String,
    /// 16 hex of a digest of the whole definition (schemas included): the version of the
    /// tool a job was accepted under, recorded on the job (shown as `NAME:VERSION`).
    pub definition: String,
    pub description: String,
    pub mode: Mode,
    pub target: Target,
    pub input_schema: serde_json::Value,
    pub output_schema: Option<serde_json::Value>,
    pub timeout: Duration,
    pub max_attempts: Option<u32>,
    pub retry_base_ms: Option<i64>,
    pub retry_max_ms: Option<i64>,
    /// Job mode: running jobs across all workers. Sync mode: runs at once in one daemon.
    pub concurrency: Option<u32>,
    /// Job mode: the priority of its jobs when the call does not ask for one (docs/FLOW.md).
    pub priority: u8,
    /// Job mode: running jobs per key across all workers (key from the client or an
    /// argument), from `concurrency_key` and `concurrency_per_key`.
    pub per_key: Option<(crate::jobs::ConcurrencyKey, u32)>,
    /// Job mode: starts per second across all workers.
    pub rate_per_sec: Option<f64>,
    /// Job mode: a repeated call (same client, same canonical arguments) within this many
    /// seconds gets the first call's job.
    pub dedupe_secs: Option<u64>,
    pub on_worker_crash: CrashPolicy,
    pub max_output_bytes: usize,
    pub task_support: TaskSupport,
    /// Job tools: questions a `/mcp` client answers before the job is accepted (MCP input
    /// requests keyed by id); the answers reach the first attempt.
    pub ask: Option<serde_json::Map<String, serde_json::Value>>,
    /// An upstream's tool: its `title` and `annotations` as the upstream lists them.
    pub presentation: Option<serde_json::Map<String, serde_json::Value>>,
}

fn invalid(tool: &str, msg: impl std::fmt::Display) -> ConfigError {
    ConfigError::Invalid(format!("tools.{tool}: {msg}"))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Reads every `[tools.*]` table of `file` (none without a file).
pub fn load(file: Option<&Path>) -> Result<Vec<ToolDef>, ConfigError> {
    let Some(file) = file else {
        return Ok(Vec::new());
    };
    let text = std::fs::read_to_string(file)
        .map_err(|e| ConfigError::Invalid(format!("cannot read {}: {e}", file.display())))?;
    parse(&text, file.parent().unwrap_or(Path::new(".")))
}

/// Parses the `[tools]` tables of a TOML document; schema files are relative to `base`.
pub fn parse(text: &str, base: &Path) -> Result<Vec<ToolDef>, ConfigError> {
    #[derive(Deserialize)]
    struct Doc {
        #[serde(default)]
        tools: BTreeMap<String, toml::Value>,
    }
    let doc: Doc = toml::from_str(text).map_err(|e| ConfigError::Invalid(e.to_string()))?;
    let mut out = Vec::new();
    for (name, table) in doc.tools {
        if !valid_name(&name) {
            return Err(invalid(
                &name,
                "a tool name is 1 to 64 of A-Z a-z 0-9 _ - .",
            ));
        }
        let raw: RawTool = table
            .clone()
            .try_into()
            .map_err(|e: toml::de::Error| invalid(&name, e.message()))?;
        let fingerprint = serde_json::to_value(&table).map_err(|e| invalid(&name, e))?;
        out.push(resolve(&name, raw, fingerprint, base)?);
    }
    Ok(out)
}

fn read_schema(
    tool: &str,
    key: &str,
    inline: Option<serde_json::Value>,
    file: Option<PathBuf>,
    base: &Path,
) -> Result<Option<serde_json::Value>, ConfigError> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(invalid(tool, format!("set {key} or {key}_file, not both"))),
        (Some(v), None) => Ok(Some(v)),
        (None, Some(p)) => {
            let path = base.join(p);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| invalid(tool, format!("{key}_file {}: {e}", path.display())))?;
            serde_json::from_str(&text).map(Some).map_err(|e| {
                invalid(
                    tool,
                    format!("{key}_file {} is not JSON: {e}", path.display()),
                )
            })
        }
        (None, None) => Ok(None),
    }
}

/// Refuses a key the tool's kind or mode does not take.
fn only_for(name: &str, set: bool, key: &str, what: &str) -> Result<(), ConfigError> {
    if set {
        Err(invalid(name, format!("{key} applies only to {what}")))
    } else {
        Ok(())
    }
}

fn resolve(
    name: &str,
    mut raw: RawTool,
    fingerprint: serde_json::Value,
    base: &Path,
) -> Result<ToolDef, ConfigError> {
    check_applicable(name, &raw)?;
    let target = target(name, &mut raw, base)?;
    resolve_with(name, raw, fingerprint, base, target)
}

/// A tool an upstream MCP server lists (`config::upstreams`): its policy keys in `table`
/// (already limited to the keys an upstream tool takes), its schemas as the upstream
/// gives them.
pub fn upstream_tool(
    name: &str,
    table: toml::Table,
    fingerprint: serde_json::Value,
    input_schema: serde_json::Value,
    output_schema: Option<serde_json::Value>,
    target: Target,
) -> Result<ToolDef, ConfigError> {
    if !valid_name(name) {
        return Err(invalid(name, "a tool name is 1 to 64 of A-Z a-z 0-9 _ - ."));
    }
    let mut raw: RawTool = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| invalid(name, e.message()))?;
    raw.input_schema = Some(input_schema);
    raw.output_schema = output_schema;
    check_applicable(name, &raw)?;
    resolve_with(name, raw, fingerprint, Path::new("/"), target)
}

fn resolve_with(
    name: &str,
    raw: RawTool,
    fingerprint: serde_json::Value,
    base: &Path,
    target: Target,
) -> Result<ToolDef, ConfigError> {
    let timeout_secs = timeout_secs(name, raw.mode, raw.timeout_secs)?;
    let max_output_bytes = check_bounds(name, &raw)?;
    let per_key = per_key(name, &raw)?;
    let input_schema = read_schema(
        name,
        "input_schema",
        raw.input_schema,
        raw.input_schema_file,
        base,
    )?
    .unwrap_or_else(|| serde_json::json!({"type": "object"}));
    let output_schema = read_schema(
        name,
        "output_schema",
        raw.output_schema,
        raw.output_schema_file,
        base,
    )?;
    // The definition id covers everything that changes how a job runs, schema files'
    // contents included; header files count by path, so rotating a token does not strand
    // the jobs already queued.
    let digest =
        Sha256::digest(serde_json::json!([fingerprint, input_schema, output_schema]).to_string());
    let definition = hex::encode(digest)[..16].to_string();
    let ask = match raw.ask {
        None => None,
        Some(requests) => {
            let asked = crate::asks::parse(&serde_json::json!({ "inputRequests": requests }))
                .map_err(|e| invalid(name, format!("ask: {e}")))?;
            Some(asked.requests)
        }
    };
    // An upstream's tool resumes the upstream's task after a lost worker by default (a
    // server without tasks gets `retry`'s behaviour); other tools have no task to resume.
    let on_worker_crash = match (raw.on_worker_crash, &target) {
        (Some(CrashPolicy::Resume), Target::Command { .. } | Target::Http { .. }) => {
            return Err(invalid(
                name,
                "on_worker_crash = \"resume\" is for tools of an upstream MCP server ([upstreams])",
            ))
        }
        (Some(p), _) => p,
        (None, Target::Upstream { .. }) => CrashPolicy::Resume,
        (None, _) => CrashPolicy::Retry,
    };
    let concurrency = match raw.mode {
        Mode::Sync => Some(raw.concurrency.unwrap_or(DEFAULT_SYNC_CONCURRENCY)),
        Mode::Job => raw.concurrency,
    };
    Ok(ToolDef {
        name: name.to_string(),
        definition,
        description: raw.description,
        mode: raw.mode,
        target,
        input_schema,
        output_schema,
        timeout: Duration::from_secs(timeout_secs),
        max_attempts: raw.max_attempts,
        retry_base_ms: raw.retry_base_ms,
        retry_max_ms: raw.retry_max_ms,
        concurrency,
        priority: raw.priority.unwrap_or(0),
        per_key,
        rate_per_sec: raw.rate_per_sec,
        dedupe_secs: raw.dedupe_secs,
        on_worker_crash,
        max_output_bytes,
        task_support: raw.task_support.unwrap_or_default(),
        ask,
        presentation: None,
    })
}

/// A description, and no key that only another kind of tool (command, HTTP) or the other
/// mode takes.
fn check_applicable(name: &str, raw: &RawTool) -> Result<(), ConfigError> {
    if raw.description.trim().is_empty() {
        return Err(invalid(name, "description must not be empty"));
    }
    let is_command = raw.command.is_some();
    for (set, key) in [
        (!raw.env.is_empty(), "env"),
        (raw.working_dir.is_some(), "working_dir"),
        (raw.kill_grace_secs.is_some(), "kill_grace_secs"),
    ] {
        only_for(
            name,
            set && !is_command,
            key,
            "command tools (`command = [...]`)",
        )?;
    }
    let sync = raw.mode == Mode::Sync;
    for (set, key) in [
        (raw.max_attempts.is_some(), "max_attempts"),
        (raw.retry_base_ms.is_some(), "retry_base_ms"),
        (raw.retry_max_ms.is_some(), "retry_max_ms"),
        (raw.on_worker_crash.is_some(), "on_worker_crash"),
        (raw.priority.is_some(), "priority"),
        (raw.concurrency_key.is_some(), "concurrency_key"),
        (raw.concurrency_per_key.is_some(), "concurrency_per_key"),
        (raw.rate_per_sec.is_some(), "rate_per_sec"),
        (raw.dedupe_secs.is_some(), "dedupe_secs"),
        (raw.task_support.is_some(), "task_support"),
        (raw.ask.is_some(), "ask"),
    ] {
        only_for(name, set && sync, key, "mode = \"job\" tools")?;
    }
    Ok(())
}

/// How the tool runs: `command` or `url`, with the keys of that kind (taken from `raw`).
fn target(name: &str, raw: &mut RawTool, base: &Path) -> Result<Target, ConfigError> {
    match (raw.command.take(), raw.url.take()) {
        (Some(_), Some(_)) => Err(invalid(name, "set command or url, not both")),
        (None, None) => Err(invalid(name, "set command = [...] or url = \"...\"")),
        (Some(argv), None) => command_target(name, argv, raw),
        (None, Some(url)) => http_target(name, url, raw, base),
    }
}

fn command_target(name: &str, argv: Vec<String>, raw: &mut RawTool) -> Result<Target, ConfigError> {
    only_for(
        name,
        !raw.headers.is_empty() || !raw.header_files.is_empty(),
        "headers",
        "HTTP tools (`url = ...`)",
    )?;
    only_for(
        name,
        raw.connect_timeout_ms.is_some(),
        "connect_timeout_ms",
        "HTTP tools (`url = ...`)",
    )?;
    if argv.is_empty() || argv[0].is_empty() {
        return Err(invalid(name, "command must name a program"));
    }
    if argv.iter().any(|a| a.contains('\0')) {
        return Err(invalid(name, "command must not contain NUL bytes"));
    }
    let working_dir = raw.working_dir.take().unwrap_or_else(|| PathBuf::from("/"));
    if !working_dir.is_absolute() {
        return Err(invalid(name, "working_dir must be an absolute path"));
    }
    Ok(Target::Command {
        argv,
        env: std::mem::take(&mut raw.env),
        working_dir,
        kill_grace: Duration::from_secs(raw.kill_grace_secs.unwrap_or(DEFAULT_KILL_GRACE_SECS)),
    })
}

fn http_target(
    name: &str,
    url: String,
    raw: &mut RawTool,
    base: &Path,
) -> Result<Target, ConfigError> {
    let parsed = reqwest::Url::parse(&url).map_err(|e| invalid(name, format!("url: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(invalid(name, "url must be http:// or https:// with a host"));
    }
    let mut headers = Vec::new();
    for (k, v) in std::mem::take(&mut raw.headers) {
        headers.push((k, Secret::new(v.into_bytes())));
    }
    for (k, p) in std::mem::take(&mut raw.header_files) {
        let path = base.join(&p);
        let v = std::fs::read_to_string(&path)
            .map_err(|e| invalid(name, format!("header_files.{k}: {}: {e}", path.display())))?;
        headers.push((k, Secret::new(v.trim_end_matches(['\n', '\r']).as_bytes())));
    }
    for (k, v) in &headers {
        let bad_name = reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err();
        let bad_value = reqwest::header::HeaderValue::from_bytes(v.expose()).is_err();
        if bad_name || bad_value {
            return Err(invalid(
                name,
                format!("header {k:?} is not a valid HTTP header"),
            ));
        }
    }
    Ok(Target::Http {
        url,
        headers,
        connect_timeout: Duration::from_millis(
            raw.connect_timeout_ms.unwrap_or(DEFAULT_CONNECT_TIMEOUT_MS),
        ),
    })
}

/// The attempt's time limit in seconds: bounded for sync tools, defaulted by mode.
fn timeout_secs(name: &str, mode: Mode, set: Option<u64>) -> Result<u64, ConfigError> {
    Ok(match (mode, set) {
        (Mode::Sync, Some(t)) if t > MAX_SYNC_TIMEOUT_SECS => {
            return Err(invalid(
                name,
                format!("timeout_secs of a sync tool is at most {MAX_SYNC_TIMEOUT_SECS}; make it a job tool"),
            ))
        }
        (_, Some(0)) => return Err(invalid(name, "timeout_secs must be at least 1")),
        (Mode::Sync, t) => t.unwrap_or(DEFAULT_SYNC_TIMEOUT_SECS),
        (Mode::Job, t) => t.unwrap_or(DEFAULT_JOB_TIMEOUT_SECS),
    })
}

/// Attempts and concurrency of at least one, and the output cap in range (returned).
/// `concurrency_key` and `concurrency_per_key`, both or neither.
fn per_key(
    name: &str,
    raw: &RawTool,
) -> Result<Option<(crate::jobs::ConcurrencyKey, u32)>, ConfigError> {
    match (&raw.concurrency_key, raw.concurrency_per_key) {
        (None, None) => Ok(None),
        (Some(k), Some(n)) if n >= 1 => match crate::jobs::ConcurrencyKey::parse(k) {
            Some(key) => Ok(Some((key, n))),
            None => Err(invalid(
                name,
                format!(
                    "concurrency_key {k:?}: want \"client\" or a JSON pointer (\"/customer_id\")"
                ),
            )),
        },
        (Some(_), Some(_)) => Err(invalid(name, "concurrency_per_key must be at least 1")),
        _ => Err(invalid(
            name,
            "set concurrency_key and concurrency_per_key together",
        )),
    }
}

/// The longest dedupe window.
const MAX_DEDUPE_SECS: u64 = 30 * 86_400;

fn check_bounds(name: &str, raw: &RawTool) -> Result<usize, ConfigError> {
    if raw.max_attempts == Some(0) {
        return Err(invalid(name, "max_attempts must be at least 1"));
    }
    if raw.concurrency == Some(0) {
        return Err(invalid(name, "concurrency must be at least 1"));
    }
    if raw
        .rate_per_sec
        .is_some_and(|r| !(r.is_finite() && r > 0.0))
    {
        return Err(invalid(name, "rate_per_sec must be a number above 0"));
    }
    if raw
        .dedupe_secs
        .is_some_and(|s| s == 0 || s > MAX_DEDUPE_SECS)
    {
        return Err(invalid(
            name,
            format!("dedupe_secs must be 1 to {MAX_DEDUPE_SECS} (30 days)"),
        ));
    }
    if raw.priority.is_some_and(|p| p > crate::jobs::MAX_PRIORITY) {
        return Err(invalid(
            name,
            format!("priority must be at most {}", crate::jobs::MAX_PRIORITY),
        ));
    }
    let max_output_bytes = raw.max_output_bytes.unwrap_or(DEFAULT_MAX_OUTPUT_BYTES);
    if max_output_bytes == 0 || max_output_bytes > MAX_MAX_OUTPUT_BYTES {
        return Err(invalid(
            name,
            format!("max_output_bytes must be between 1 and {MAX_MAX_OUTPUT_BYTES}"),
        ));
    }
    Ok(max_output_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(toml: &str) -> Result<ToolDef, String> {
        parse(toml, Path::new("/nonexistent"))
            .map(|mut v| v.remove(0))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_full_command_tool_parses_with_its_keys_case_intact() {
        let t = one(r#"
[tools.transcode]
description = "Transcode"
command = ["/bin/cat", "--fast"]
input_schema = { type = "object", required = ["url"], additionalProperties = false, properties = { url = { type = "string" } } }
timeout_secs = 60
max_attempts = 5
concurrency = 4
on_worker_crash = "hold"
env = { PATH = "/usr/bin:/bin" }
"#)
        .unwrap();
        assert_eq!(t.mode, Mode::Job);
        assert_eq!(t.on_worker_crash, CrashPolicy::Hold);
        assert_eq!(t.concurrency, Some(4));
        assert_eq!(t.input_schema["additionalProperties"], false);
        assert_eq!(t.definition.len(), 16);
        match t.target {
            Target::Command { env, argv, .. } => {
                assert_eq!(env["PATH"], "/usr/bin:/bin");
                assert_eq!(argv, ["/bin/cat", "--fast"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn declared_questions_are_checked_and_only_for_job_tools() {
        let base = "[tools.t]\ndescription = \"T\"\ncommand = [\"/bin/cat\"]\n";
        let t = one(&format!(
            "{base}task_support = \"required\"\n[tools.t.ask.name]\nmethod = \"elicitation/create\"\nparams = {{ message = \"Name?\" }}\n"
        ))
        .unwrap();
        assert_eq!(t.task_support, TaskSupport::Required);
        assert_eq!(t.ask.unwrap()["name"]["params"]["message"], "Name?");
        let e = one(&format!(
            "{base}[tools.t.ask.name]\nmethod = \"tools/call\"\n"
        ))
        .unwrap_err();
        assert!(
            e.contains("tools.t: ask: inputRequests[\"name\"].method"),
            "{e}"
        );
        let e = one(&format!(
            "{base}mode = \"sync\"\n[tools.t.ask.name]\nmethod = \"roots/list\"\n"
        ))
        .unwrap_err();
        assert!(e.contains("ask applies only to"), "{e}");
        let e = one(&format!(
            "{base}mode = \"sync\"\ntask_support = \"required\"\n"
        ))
        .unwrap_err();
        assert!(e.contains("task_support applies only to"), "{e}");
    }

    #[test]
    fn unknown_keys_name_the_tool_and_the_key() {
        let e = one("[tools.t]\ndescription = \"d\"\ncommand = [\"/bin/true\"]\ncomand = 1\n")
            .unwrap_err();
        assert!(e.contains("tools.t") && e.contains("comand"), "{e}");
    }

    #[test]
    fn contradictions_are_refused() {
        for (toml, want) in [
            ("description = \"d\"", "set command"),
            (
                "description = \"d\"\ncommand = [\"/a\"]\nurl = \"http://x\"",
                "not both",
            ),
            ("description = \"d\"\nurl = \"ftp://x\"", "http://"),
            (
                "description = \"d\"\nurl = \"http://x\"\nenv = { A = \"b\" }",
                "env",
            ),
            (
                "description = \"d\"\ncommand = [\"/a\"]\nheaders = { A = \"b\" }",
                "headers",
            ),
            (
                "description = \"d\"\ncommand = [\"/a\"]\nmode = \"sync\"\ntimeout_secs = 31",
                "at most 30",
            ),
            (
                "description = \"d\"\ncommand = [\"/a\"]\nmode = \"sync\"\nmax_attempts = 2",
                "max_attempts",
            ),
            ("description = \"d\"\ncommand = []", "program"),
            (
                "description = \"d\"\ncommand = [\"/a\"]\nconcurrency = 0",
                "concurrency",
            ),
            (
                "description = \"d\"\ncommand = [\"/a\"]\non_worker_crash = \"maybe\"",
                "maybe",
            ),
            (
                "description = \"d\"\ncommand = [\"/a\"]\non_worker_crash = \"resume\"",
                "for tools of an upstream",
            ),
        ] {
            let e = one(&format!("[tools.t]\n{toml}\n")).unwrap_err();
            assert!(e.contains(want), "{toml}: {e}");
        }
    }

    #[test]
    fn the_definition_changes_with_the_tool_and_only_then() {
        let a = one("[tools.t]\ndescription = \"d\"\ncommand = [\"/a\"]\n").unwrap();
        let b = one("[tools.t]\ncommand = [\"/a\"]\ndescription = \"d\"\n").unwrap();
        let c = one("[tools.t]\ndescription = \"d\"\ncommand = [\"/b\"]\n").unwrap();
        assert_eq!(a.definition, b.definition);
        assert_ne!(a.definition, c.definition);
    }

    #[test]
    fn schemas_come_from_files_relative_to_the_config() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("in.json"),
            r#"{"type":"object","required":["x"]}"#,
        )
        .unwrap();
        let t = parse(
            "[tools.t]\ndescription = \"d\"\nurl = \"http://127.0.0.1:1/\"\ninput_schema_file = \"in.json\"\n",
            dir.path(),
        )
        .unwrap()
        .remove(0);
        assert_eq!(t.input_schema["required"][0], "x");
    }
}
