//! Loading: the layers merged (defaults, file, environment), the strict key checks, the
//! raw tables turned into [`Settings`] with their secrets, and the checks across keys.
//!
//! It must not know what a setting is for: it only reads and checks it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::secrets::{load_secret, redact, require_secret, token_hash};
use super::{
    prompts, resources, schedules, strict, tool_table, ClientKeys, ClientSettings, ConfigError,
    ConsoleSettings, DatabaseSettings, JobSettings, LimitSettings, LogSettings, McpSettings,
    MetricsSettings, Operator, OtelSettings, PostgresSettings, Role, Secret, ServerSettings,
    Settings, ToolDef, WorkerSettings, DEFAULT_TOML,
};

#[derive(Debug, Deserialize, Clone)]
struct RawSettings {
    server: RawServer,
    database: DatabaseSettings,
    postgres: PostgresSettings,
    jobs: JobSettings,
    worker: WorkerSettings,
    #[serde(default)]
    clients: BTreeMap<String, RawClient>,
    client: RawClientSide,
    log: LogSettings,
    otel: OtelSettings,
    metrics: RawMetrics,
    limits: LimitSettings,
    mcp: McpSettings,
    oauth: super::oauth::RawOAuth,
    console: RawConsole,
    audit: super::AuditSettings,
    #[serde(default)]
    operators: BTreeMap<String, RawOperator>,
    webhooks: super::webhooks::RawDelivery,
}

#[derive(Debug, Deserialize, Clone)]
struct RawConsole {
    enabled: bool,
    proxy_header: String,
    session_ttl_secs: u64,
    refresh_ms: u64,
    search_chunk: u64,
    search_budget_ms: u64,
}

#[derive(Debug, Deserialize, Clone, Default)]
struct RawOperator {
    token_sha256: Option<String>,
    token_file: Option<PathBuf>,
    role: Option<String>,
}

#[derive(Debug, Deserialize, Clone)]
struct RawMetrics {
    listen: String,
    worker_listen: String,
    client_labels: bool,
    max_connections: usize,
}

#[derive(Debug, Deserialize, Clone)]
struct RawServer {
    id: String,
    listen: String,
    secret: Option<String>,
    secret_file: Option<PathBuf>,
    max_body_bytes: usize,
    header_timeout_ms: u64,
    body_timeout_ms: u64,
    max_connections: usize,
    timestamp_window_ms: i64,
    embedded_workers: usize,
    bench_tools: bool,
    demo_tools: bool,
}

#[derive(Debug, Deserialize, Clone, Default)]
struct RawClient {
    secret: Option<String>,
    secret_file: Option<PathBuf>,
    /// Bearer tokens for `/mcp`, as the hex SHA-256 of the token (the token itself is
    /// never configured inline), or a file holding the token.
    token_sha256: Option<String>,
    token_file: Option<PathBuf>,
    previous_token_sha256: Option<String>,
    previous_token_file: Option<PathBuf>,
    previous_secret: Option<String>,
    previous_secret_file: Option<PathBuf>,
    max_priority: Option<u8>,
    /// Globs of the tools this client sees and may call; absent: every tool.
    tools: Option<Vec<String>>,
    /// `[clients.ID.webhooks]` (docs/WEBHOOKS.md).
    webhooks: Option<super::webhooks::RawClientHooks>,
}

#[derive(Debug, Deserialize, Clone)]
struct RawClientSide {
    url: String,
    client_id: String,
    server_id: String,
    secret: Option<String>,
    secret_file: Option<PathBuf>,
    server_secret: Option<String>,
    server_secret_file: Option<PathBuf>,
}

/// `[otel]`'s values checked (the variables they defer to are read when tracing starts).
fn check_otel(o: OtelSettings) -> Result<OtelSettings, ConfigError> {
    if !(0.0..=1.0).contains(&o.sampling_ratio) {
        return Err(ConfigError::Invalid(format!(
            "otel.sampling_ratio {} is not between 0.0 and 1.0",
            o.sampling_ratio
        )));
    }
    if !matches!(o.protocol.as_str(), "" | "http/protobuf" | "grpc") {
        return Err(ConfigError::Invalid(format!(
            "otel.protocol {:?}: want \"http/protobuf\" or \"grpc\" (or \"\" for \
             OTEL_EXPORTER_OTLP_PROTOCOL)",
            o.protocol
        )));
    }
    Ok(o)
}

/// An address, or `None` for "" (off).
fn optional_addr(text: &str, what: &str) -> Result<Option<SocketAddr>, ConfigError> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|e| {
        ConfigError::Invalid(format!(
            "{what} {text:?}: {e} (want IP:port, or \"\" for off)"
        ))
    })
}

impl Settings {
    /// Loads defaults, then `file` if given, then the environment. An unknown section or
    /// key, in the file or in an `MCPQ__…` variable, is an error naming it.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        let raw: RawSettings = Settings::merged(file)?.try_deserialize()?;
        let mut s = Settings::from_raw(raw, tool_table::load(file)?)?;
        s.resources = resources::load(file)?;
        s.prompts = prompts::load(file)?;
        s.schedules = schedules::load(file)?;
        s.upstreams = super::upstreams::load(file)?;
        schedules::check_clients(&s.schedules, &s.clients)?;
        Ok(s)
    }

    /// [`Settings::load`] for commands that never sign or verify (`worker`, `migrate`, the
    /// admin commands): no secret is read, so a worker unit needs no credentials and an
    /// operator's shell no access to them. Every secret in the result is empty and
    /// `clients` holds no keys.
    pub fn load_without_secrets(file: Option<&Path>) -> Result<Settings, ConfigError> {
        Settings::load_lean(file, false)
    }

    /// [`Settings::load_without_secrets`], but with the webhook signing secrets
    /// (`[clients.ID.webhooks]`): what `mcpq worker` needs, as it delivers webhooks.
    pub fn load_for_worker(file: Option<&Path>) -> Result<Settings, ConfigError> {
        Settings::load_lean(file, true)
    }

    fn load_lean(file: Option<&Path>, webhook_secrets: bool) -> Result<Settings, ConfigError> {
        let mut raw: RawSettings = Settings::merged(file)?.try_deserialize()?;
        raw.server.secret = Some(String::new());
        raw.server.secret_file = None;
        // Only the clients' webhooks stay (their allowlists, and their secrets if asked).
        for c in raw.clients.values_mut() {
            let hooks = c.webhooks.take();
            *c = RawClient {
                webhooks: hooks,
                ..RawClient::default()
            };
        }
        let c = &mut raw.client;
        (
            c.secret,
            c.secret_file,
            c.server_secret,
            c.server_secret_file,
        ) = (None, None, None, None);
        let hooks: BTreeMap<_, _> = raw
            .clients
            .iter()
            .map(|(id, c)| (id.clone(), c.webhooks.clone()))
            .collect();
        let mut s = Settings::from_raw_checked(raw, tool_table::load(file)?, false)?;
        if webhook_secrets {
            s.webhooks.clients = super::webhooks::client_hooks(&hooks, true)?;
        }
        s.resources = resources::load(file)?;
        s.prompts = prompts::load(file)?;
        s.schedules = schedules::load(file)?;
        s.upstreams = super::upstreams::load(file)?;
        Ok(s)
    }

    /// The layers merged, after the strict checks.
    fn merged(file: Option<&Path>) -> Result<config::Config, ConfigError> {
        let mut b = config::Config::builder().add_source(config::File::from_str(
            DEFAULT_TOML,
            config::FileFormat::Toml,
        ));
        if let Some(f) = file {
            let text = std::fs::read_to_string(f)
                .map_err(|e| ConfigError::Invalid(format!("cannot read {}: {e}", f.display())))?;
            strict::check_file(&text, f)?;
            b = b.add_source(config::File::from(f).required(true));
        }
        // Names only: a value that is not UTF-8 is the config crate's to refuse.
        strict::check_env(
            std::env::vars_os().filter_map(|(k, _)| Some((k.into_string().ok()?, String::new()))),
        )?;
        b = b.add_source(
            config::Environment::with_prefix("MCPQ")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true),
        );
        Ok(b.build()?)
    }

    /// The effective configuration as TOML, every secret value redacted (`mcpq config
    /// check`). Fails exactly when [`Settings::load`] would.
    pub fn effective_toml(file: Option<&Path>) -> Result<String, ConfigError> {
        Settings::load(file)?;
        let mut merged: toml::Table = Settings::merged(file)?.try_deserialize()?;
        // Tools as written (the layered view lowercases keys, and JSON Schema's are not).
        merged.remove("tools");
        merged.remove("resources");
        merged.remove("prompts");
        merged.remove("schedules");
        merged.remove("upstreams");
        if let Some(f) = file {
            let text = std::fs::read_to_string(f)
                .map_err(|e| ConfigError::Invalid(format!("cannot read {}: {e}", f.display())))?;
            let doc: toml::Table = toml::from_str(&text)
                .map_err(|e| ConfigError::Invalid(format!("{}: {e}", f.display())))?;
            for section in ["tools", "resources", "prompts", "schedules", "upstreams"] {
                if let Some(t) = doc.get(section) {
                    merged.insert(section.into(), t.clone());
                }
            }
        }
        redact(&mut merged);
        toml::to_string(&merged).map_err(|e| ConfigError::Invalid(e.to_string()))
    }

    fn from_raw(raw: RawSettings, tools: Vec<ToolDef>) -> Result<Settings, ConfigError> {
        Settings::from_raw_checked(raw, tools, true)
    }

    fn from_raw_checked(
        raw: RawSettings,
        tools: Vec<ToolDef>,
        secrets: bool,
    ) -> Result<Settings, ConfigError> {
        let listen: SocketAddr = raw.server.listen.parse().map_err(|e| {
            ConfigError::Invalid(format!("server.listen {:?}: {e}", raw.server.listen))
        })?;
        let server_secret = load_secret(&raw.server.secret, &raw.server.secret_file, "server")?;
        let server_secret = if secrets {
            require_secret(server_secret, "server")?
        } else {
            Secret::new(Vec::new())
        };
        let clients = if secrets {
            client_keys(&raw.clients)?
        } else {
            BTreeMap::new()
        };
        let hooks: BTreeMap<String, Option<super::webhooks::RawClientHooks>> = raw
            .clients
            .iter()
            .map(|(id, c)| (id.clone(), c.webhooks.clone()))
            .collect();
        let webhooks = super::webhooks::WebhookSettings {
            delivery: super::webhooks::delivery(&raw.webhooks)?,
            clients: super::webhooks::client_hooks(&hooks, secrets)?,
        };
        let client = client_side(&raw.client)?;
        let console = console(&raw.console, &raw.operators)?;
        let s = Settings {
            server: ServerSettings {
                id: raw.server.id,
                listen,
                secret: server_secret,
                max_body_bytes: raw.server.max_body_bytes,
                header_timeout_ms: raw.server.header_timeout_ms,
                body_timeout_ms: raw.server.body_timeout_ms,
                max_connections: raw.server.max_connections.max(1),
                timestamp_window_ms: raw.server.timestamp_window_ms,
                embedded_workers: raw.server.embedded_workers,
                bench_tools: raw.server.bench_tools,
                demo_tools: raw.server.demo_tools,
            },
            database: raw.database,
            postgres: raw.postgres,
            jobs: raw.jobs,
            worker: raw.worker,
            clients,
            client,
            tools,
            resources: Vec::new(),
            prompts: Vec::new(),
            schedules: Vec::new(),
            upstreams: Vec::new(),
            log: raw.log,
            otel: check_otel(raw.otel)?,
            limits: raw.limits,
            mcp: raw.mcp,
            oauth: super::oauth::check(raw.oauth, secrets)?,
            console,
            webhooks,
            audit: raw.audit,
            metrics: MetricsSettings {
                listen: optional_addr(&raw.metrics.listen, "metrics.listen")?,
                worker_listen: optional_addr(&raw.metrics.worker_listen, "metrics.worker_listen")?,
                client_labels: raw.metrics.client_labels,
                max_connections: raw.metrics.max_connections,
            },
        };
        s.database.backend()?;
        if s.jobs.max_attempts == 0 {
            return Err(ConfigError::Invalid(
                "jobs.max_attempts must be at least 1".into(),
            ));
        }
        if s.jobs.heartbeat_ms as i64 * 2 > s.jobs.lease_ms {
            return Err(ConfigError::Invalid(
                "jobs.heartbeat_ms must be at most half of jobs.lease_ms".into(),
            ));
        }
        check_flow(&s)?;
        Ok(s)
    }
}

/// Priorities within 0..=`MAX_PRIORITY`, a positive aging step (docs/FLOW.md).
fn check_flow(s: &Settings) -> Result<(), ConfigError> {
    let max = crate::jobs::MAX_PRIORITY;
    if s.jobs.aging_secs == 0 {
        return Err(ConfigError::Invalid(
            "jobs.aging_secs must be at least 1".into(),
        ));
    }
    if s.jobs.client_max_priority > max {
        return Err(ConfigError::Invalid(format!(
            "jobs.client_max_priority must be at most {max}"
        )));
    }
    for (id, c) in &s.clients {
        if c.max_priority.is_some_and(|p| p > max) {
            return Err(ConfigError::Invalid(format!(
                "clients.{id}.max_priority must be at most {max}"
            )));
        }
    }
    Ok(())
}

/// Each `[clients.ID]`'s live secrets and token hashes.
fn client_keys(
    raw: &BTreeMap<String, RawClient>,
) -> Result<BTreeMap<String, ClientKeys>, ConfigError> {
    let mut clients = BTreeMap::new();
    for (id, c) in raw {
        let what = format!("clients.{id}");
        let mut token_hashes = Vec::new();
        for (hash, file, key) in [
            (&c.token_sha256, &c.token_file, "token"),
            (
                &c.previous_token_sha256,
                &c.previous_token_file,
                "previous_token",
            ),
        ] {
            if let Some(h) = token_hash(hash, file, &format!("{what}.{key}"))? {
                token_hashes.push(h);
            }
        }
        // A client may speak only MCP (a token and no signing secret), but not nothing.
        let secret = load_secret(&c.secret, &c.secret_file, &what)?;
        let mut secrets = Vec::new();
        if secret.is_some() || token_hashes.is_empty() {
            secrets.push(require_secret(secret, &what)?);
        }
        if let Some(prev) = load_secret(&c.previous_secret, &c.previous_secret_file, &what)? {
            secrets.push(require_secret(Some(prev), &what)?);
        }
        clients.insert(
            id.clone(),
            ClientKeys {
                secrets,
                token_hashes,
                max_priority: c.max_priority,
                tools: tool_globs(c.tools.as_deref(), &what)?,
            },
        );
    }
    Ok(clients)
}

/// `[clients.ID] tools`: the globs compiled (`*`, `?`, `[...]`; no separator is special in
/// a tool name), each refused with its client's name if it does not parse.
fn tool_globs(
    globs: Option<&[String]>,
    what: &str,
) -> Result<Option<globset::GlobSet>, ConfigError> {
    let Some(globs) = globs else {
        return Ok(None);
    };
    let mut set = globset::GlobSetBuilder::new();
    for g in globs {
        let glob = globset::GlobBuilder::new(g)
            .literal_separator(false)
            .build()
            .map_err(|e| ConfigError::Invalid(format!("{what}.tools: {g:?}: {e}")))?;
        set.add(glob);
    }
    set.build()
        .map(Some)
        .map_err(|e| ConfigError::Invalid(format!("{what}.tools: {e}")))
}

/// `[console]` and its `[operators.NAME]`.
fn console(
    raw: &RawConsole,
    operators: &BTreeMap<String, RawOperator>,
) -> Result<ConsoleSettings, ConfigError> {
    let mut out = ConsoleSettings {
        enabled: raw.enabled,
        proxy_header: Some(raw.proxy_header.trim().to_string()).filter(|h| !h.is_empty()),
        session_ttl_secs: raw.session_ttl_secs.max(60),
        refresh_ms: raw.refresh_ms.max(500),
        search_chunk: raw.search_chunk.clamp(1, 10_000_000) as i64,
        search_budget_ms: raw.search_budget_ms.min(10_000),
        operators: BTreeMap::new(),
    };
    if let Some(h) = &out.proxy_header {
        if hyper::header::HeaderName::from_bytes(h.as_bytes()).is_err() {
            return Err(ConfigError::Invalid(format!(
                "console.proxy_header {h:?} is not a valid header name"
            )));
        }
    }
    for (name, o) in operators {
        let what = format!("operators.{name}");
        let role = o.role.as_deref().unwrap_or("");
        let role = Role::parse(role).ok_or_else(|| {
            ConfigError::Invalid(format!(
                "{what}.role must be \"read-only\" or \"read-write\", not {role:?}"
            ))
        })?;
        let token = token_hash(&o.token_sha256, &o.token_file, &format!("{what}.token"))?;
        if token.is_none() && out.proxy_header.is_none() {
            return Err(ConfigError::Invalid(format!(
                "{what}: no token_sha256 or token_file (and no console.proxy_header to vouch for it)"
            )));
        }
        let token_hashes = token.into_iter().collect();
        out.operators
            .insert(name.clone(), Operator { token_hashes, role });
    }
    if out.enabled && out.operators.is_empty() {
        return Err(ConfigError::Invalid(
            "console.enabled needs at least one [operators.NAME] (see docs/CONSOLE.md)".into(),
        ));
    }
    Ok(out)
}

/// `[client]`: how `mcpq call` and `mcpq bench` reach a daemon.
fn client_side(cs: &RawClientSide) -> Result<ClientSettings, ConfigError> {
    Ok(ClientSettings {
        url: cs.url.clone(),
        client_id: cs.client_id.clone(),
        server_id: cs.server_id.clone(),
        secret: load_secret(&cs.secret, &cs.secret_file, "client")?
            .unwrap_or_else(|| Secret::new(Vec::new())),
        server_secret: load_secret(&cs.server_secret, &cs.server_secret_file, "client")?
            .unwrap_or_else(|| Secret::new(Vec::new())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_loads_no_secret_files() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("mcpq.toml");
        std::fs::write(
            &f,
            "[server]\nsecret_file = \"/nonexistent/server_secret\"\n[clients.c]\nsecret_file = \"/nonexistent/c\"\n",
        )
        .unwrap();
        assert!(Settings::load(Some(&f)).is_err());
        let s = Settings::load_without_secrets(Some(&f)).unwrap();
        assert!(s.server.secret.expose().is_empty());
        assert!(s.clients.is_empty());
    }
}
