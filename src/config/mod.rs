//! Settings: layered configuration and secrets.
//!
//! Owns how settings are found (the checked-in `config/default.toml`, compiled
//! in, then `--config FILE`, then `MCPQ__SECTION__KEY` environment variables),
//! how secrets are loaded (inline or from files), and the start-up safety
//! checks (no development keys off loopback, no short secrets).
//!
//! It must not open sockets or databases; it only describes them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

mod database;
pub mod prompts;
pub mod resources;
mod strict;
pub mod tools;

pub use tools::ToolDef;

pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

/// The development `/mcp` token published in `config/default.toml` (its SHA-256).
pub const DEV_TOKEN: &str = "dev-only-mcp-token-00000000000000000000000000000000";
const DEV_TOKEN_SHA256: [u8; 32] = [
    0x2f, 0xd2, 0x3f, 0x76, 0x35, 0x3a, 0xc5, 0xae, 0xca, 0xe2, 0xca, 0x04, 0x3a, 0x4b, 0x22, 0x97,
    0xde, 0x73, 0x0f, 0xc3, 0x89, 0x12, 0xe4, 0x8d, 0x83, 0x9d, 0x40, 0x68, 0x81, 0xf8, 0x65, 0x2e,
];

/// Shortest secret accepted (bytes). 32 random bytes, hex-encoded by `mcpq keys new`, is 64.
pub const MIN_SECRET_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("cannot read secret file {path}: {source}")]
    SecretFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

/// A secret key. Its `Debug` never shows the bytes, so it cannot leak through logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Secret(bytes.into())
    }
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

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
    metrics: RawMetrics,
    limits: LimitSettings,
    mcp: McpSettings,
}

/// `/mcp` (`crate::mcp`).
#[derive(Debug, Deserialize, Clone)]
pub struct McpSettings {
    pub allowed_hosts: Vec<String>,
    pub allowed_origins: Vec<String>,
    pub anonymous_client: String,
}

/// Per-client and per-address limits (`crate::limits`, `crate::server`).
#[derive(Debug, Deserialize, Clone)]
pub struct LimitSettings {
    pub rate_per_client: f64,
    pub rate_burst: f64,
    pub max_queued_per_client: u64,
    pub max_connections_per_ip: usize,
}

#[derive(Debug, Deserialize, Clone)]
struct RawMetrics {
    listen: String,
    worker_listen: String,
    client_labels: bool,
}

/// Prometheus endpoints (`crate::telemetry`); `None` is off.
#[derive(Debug, Clone)]
pub struct MetricsSettings {
    pub listen: Option<SocketAddr>,
    pub worker_listen: Option<SocketAddr>,
    pub client_labels: bool,
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

/// How log lines are written (see `crate::logging`).
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// JSON under journald (`JOURNAL_STREAM` names our stderr), text otherwise.
    Auto,
    Text,
    Json,
}

#[derive(Debug, Deserialize, Clone)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A `tracing` filter (`info`, `mcpq=debug,info`); `RUST_LOG` wins when set.
    pub level: String,
}

/// `synchronous` pragma choices, with what each guarantees (see docs/OPERATIONS.md).
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    Full,
    Normal,
    Extra,
}

#[derive(Debug, Deserialize, Clone)]
pub struct DatabaseSettings {
    /// Which store: empty (the SQLite file at `path`), `sqlite://PATH`, or
    /// `postgres://…` (then `[postgres]` applies and the SQLite keys do not).
    pub url: String,
    pub path: PathBuf,
    pub synchronous: Synchronous,
    pub busy_timeout_ms: u64,
    pub read_connections: u32,
    pub poll_readers: u32,
    pub checkpoint_pages: u32,
}

/// Which backend `database.url` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Sqlite(PathBuf),
    /// The URL as configured (it may hold a password; never log it, see [`redact_url`]).
    Postgres(String),
}

impl DatabaseSettings {
    pub fn backend(&self) -> Result<Backend, ConfigError> {
        let url = self.url.trim();
        if url.is_empty() {
            return Ok(Backend::Sqlite(self.path.clone()));
        }
        if let Some(path) = url.strip_prefix("sqlite://") {
            return Ok(Backend::Sqlite(PathBuf::from(path)));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Backend::Postgres(url.to_string()));
        }
        Err(ConfigError::Invalid(format!(
            "database.url must start with sqlite:// or postgres:// (got {})",
            redact_url(url)
        )))
    }

    /// What to show of the database in logs and errors: the SQLite path, or the
    /// PostgreSQL URL with any password replaced.
    pub fn display(&self) -> String {
        match self.backend() {
            Ok(Backend::Sqlite(p)) => p.display().to_string(),
            Ok(Backend::Postgres(u)) => redact_url(&u),
            Err(_) => "<invalid database.url>".into(),
        }
    }
}

/// A database URL with its password (if any) replaced by `<redacted>`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_string();
    };
    let user = userinfo.split(':').next().unwrap_or_default();
    let redacted = if userinfo.contains(':') {
        format!("{user}:<redacted>")
    } else {
        user.to_string()
    };
    // A password may also come as a query parameter.
    let tail = redact_query_password(tail);
    format!("{scheme}://{redacted}@{host}{tail}")
}

fn redact_query_password(tail: &str) -> String {
    let Some((path, query)) = tail.split_once('?') else {
        return tail.to_string();
    };
    let parts: Vec<String> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=<redacted>"),
            _ => kv.to_string(),
        })
        .collect();
    format!("{path}?{}", parts.join("&"))
}

/// PostgreSQL connection settings (`[postgres]`), used when `database.url` is `postgres://…`.
#[derive(Debug, Deserialize, Clone)]
pub struct PostgresSettings {
    /// Connections of this process's pool (reads, claims, completions).
    pub max_connections: u32,
    /// Dedicated connections committing enqueues and nonces in groups.
    pub commit_connections: u32,
    pub connect_timeout_ms: u64,
    /// Longest a statement may run before PostgreSQL cancels it (0: no limit).
    pub statement_timeout_ms: u64,
    /// disable, prefer, require, verify-ca or verify-full (libpq's `sslmode`).
    pub ssl_mode: String,
    /// CA certificate for verify-ca / verify-full; empty: the system's roots.
    pub ssl_root_cert: String,
    /// File holding the password (`$CREDENTIALS_DIRECTORY/…` under systemd); wins over a
    /// password in the URL.
    pub password_file: String,
    /// PostgreSQL's `synchronous_commit` for commits that acknowledge something (enqueues,
    /// completions, cancels): `on` (default), `remote_apply`, `remote_write`, `local`, or
    /// `off` (docs/OPERATIONS.md says what each guarantees).
    pub synchronous_commit: String,
    /// Wake idle workers with LISTEN/NOTIFY (a hint; they also poll).
    pub listen: bool,
    /// Finished jobs (and expired nonces) deleted per statement when pruning.
    pub prune_batch: u32,
    /// Schema for mcpq's tables (created if missing); empty: the user's default
    /// `search_path`. Lets several deployments share one database.
    pub schema: String,
}

#[derive(Debug, Deserialize, Clone)]
pub struct JobSettings {
    pub max_attempts: u32,
    pub retention_secs: u64,
    pub lease_ms: i64,
    pub heartbeat_ms: u64,
    pub rescue_interval_ms: u64,
    pub prune_interval_ms: u64,
    pub retry_base_ms: i64,
    pub retry_max_ms: i64,
}

#[derive(Debug, Deserialize, Clone)]
pub struct WorkerSettings {
    pub concurrency: usize,
    /// Command-tool processes one worker (or daemon) runs at once.
    pub max_processes: usize,
    pub claim_batch: usize,
    pub idle_backoff_max_ms: u64,
    pub claim_interval_ms: u64,
    pub grace_period_ms: u64,
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub id: String,
    pub listen: SocketAddr,
    pub secret: Secret,
    pub max_body_bytes: usize,
    pub header_timeout_ms: u64,
    pub body_timeout_ms: u64,
    pub max_connections: usize,
    pub timestamp_window_ms: i64,
    pub embedded_workers: usize,
    pub bench_tools: bool,
    /// The seed's demo tools (`batch_sum`, `start_long_task`).
    pub demo_tools: bool,
}

/// A client's live secrets: the current one and, during rotation, the previous one; and
/// the SHA-256 of its live `/mcp` bearer tokens (two during a rotation).
#[derive(Debug, Clone, Default)]
pub struct ClientKeys {
    pub secrets: Vec<Secret>,
    pub token_hashes: Vec<[u8; 32]>,
}

/// What `mcpq call` / `mcpq bench` need to act as a client.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub url: String,
    pub client_id: String,
    pub server_id: String,
    pub secret: Secret,
    pub server_secret: Secret,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub postgres: PostgresSettings,
    pub jobs: JobSettings,
    pub worker: WorkerSettings,
    pub clients: BTreeMap<String, ClientKeys>,
    pub client: ClientSettings,
    /// Tools declared in the configuration file (`[tools.NAME]`).
    pub tools: Vec<ToolDef>,
    /// Static resources served at `/mcp` (`[resources.NAME]`).
    pub resources: Vec<resources::ResourceDef>,
    /// Prompt templates served at `/mcp` (`[prompts.NAME]`).
    pub prompts: Vec<prompts::PromptDef>,
    pub log: LogSettings,
    pub metrics: MetricsSettings,
    pub limits: LimitSettings,
    pub mcp: McpSettings,
}

/// Replaces every secret value (keys ending in `secret`, and HTTP tools' inline `headers`).
fn redact(t: &mut toml::Table) {
    for (k, v) in t.iter_mut() {
        match v {
            toml::Value::Table(inner) if k == "headers" => {
                for (_, hv) in inner.iter_mut() {
                    *hv = toml::Value::String("<redacted>".into());
                }
            }
            toml::Value::Table(inner) => redact(inner),
            _ if k.ends_with("secret") => *v = toml::Value::String("<redacted>".into()),
            // A database URL may carry a password.
            toml::Value::String(u) if k == "url" => *v = toml::Value::String(redact_url(u)),
            _ => {}
        }
    }
}

fn load_secret(
    inline: &Option<String>,
    file: &Option<PathBuf>,
    what: &str,
) -> Result<Option<Secret>, ConfigError> {
    // A secret file wins over an inline secret: layers merge, so an inline development
    // key from the defaults must not block a file configured on top of it.
    match (inline, file) {
        (Some(s), None) => Ok(Some(Secret::new(s.as_bytes().to_vec()))),
        (_, Some(p)) => {
            let p = &credentials_path(p, what)?;
            let text = std::fs::read_to_string(p).map_err(|source| ConfigError::SecretFile {
                path: p.clone(),
                source,
            })?;
            // A trailing newline from `echo > file` is not part of the key.
            Ok(Some(Secret::new(
                text.trim_end_matches(['\n', '\r']).as_bytes().to_vec(),
            )))
        }
        (None, None) => Ok(None),
    }
}

/// Expands a leading `$CREDENTIALS_DIRECTORY` (or `${CREDENTIALS_DIRECTORY}`): where
/// systemd's `LoadCredential=` puts a service's secrets.
pub fn credentials_path(p: &Path, what: &str) -> Result<PathBuf, ConfigError> {
    let Some(text) = p.to_str() else {
        return Ok(p.to_path_buf());
    };
    for var in ["$CREDENTIALS_DIRECTORY", "${CREDENTIALS_DIRECTORY}"] {
        if let Some(rest) = text.strip_prefix(var) {
            let dir = std::env::var_os("CREDENTIALS_DIRECTORY").ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "{what}: the secret file {text} names $CREDENTIALS_DIRECTORY, which is not set (run under systemd with LoadCredential=, or give a plain path)"
                ))
            })?;
            return Ok(PathBuf::from(dir).join(rest.trim_start_matches('/')));
        }
    }
    Ok(p.to_path_buf())
}

/// SHA-256 of a bearer token: from a file holding the token (wins, as for secrets), or
/// given as 64 hex digits.
fn token_hash(
    hex_hash: &Option<String>,
    file: &Option<PathBuf>,
    what: &str,
) -> Result<Option<[u8; 32]>, ConfigError> {
    use sha2::Digest;
    if let Some(token) = load_secret(&None, file, what)? {
        if token.expose().len() < MIN_SECRET_LEN {
            return Err(ConfigError::Invalid(format!(
                "{what}: the token is shorter than {MIN_SECRET_LEN} bytes; generate one with `mcpq keys token`"
            )));
        }
        return Ok(Some(sha2::Sha256::digest(token.expose()).into()));
    }
    let Some(h) = hex_hash else { return Ok(None) };
    let bytes = hex::decode(h.trim()).ok().filter(|b| b.len() == 32).ok_or_else(|| {
        ConfigError::Invalid(format!(
            "{what}_sha256 must be 64 hex digits (the SHA-256 of the token, as `mcpq keys token` prints)"
        ))
    })?;
    let mut out = [0u8; 32];
    out.copy_from_slice(&bytes);
    Ok(Some(out))
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

fn require_secret(s: Option<Secret>, what: &str) -> Result<Secret, ConfigError> {
    let s = s.ok_or_else(|| ConfigError::Invalid(format!("{what}: no secret configured")))?;
    if s.expose().len() < MIN_SECRET_LEN {
        return Err(ConfigError::Invalid(format!(
            "{what}: secret is shorter than {MIN_SECRET_LEN} bytes; generate one with `mcpq keys new`"
        )));
    }
    Ok(s)
}

impl Settings {
    /// Loads defaults, then `file` if given, then the environment. An unknown section or
    /// key, in the file or in an `MCPQ__…` variable, is an error naming it.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        let raw: RawSettings = Settings::merged(file)?.try_deserialize()?;
        let mut s = Settings::from_raw(raw, tools::load(file)?)?;
        s.resources = resources::load(file)?;
        s.prompts = prompts::load(file)?;
        Ok(s)
    }

    /// [`Settings::load`] for commands that never sign or verify (`worker`, `migrate`, the
    /// admin commands): no secret is read, so a worker unit needs no credentials and an
    /// operator's shell no access to them. Every secret in the result is empty and
    /// `clients` holds no keys.
    pub fn load_without_secrets(file: Option<&Path>) -> Result<Settings, ConfigError> {
        let mut raw: RawSettings = Settings::merged(file)?.try_deserialize()?;
        raw.server.secret = Some(String::new());
        raw.server.secret_file = None;
        raw.clients.clear();
        let c = &mut raw.client;
        (
            c.secret,
            c.secret_file,
            c.server_secret,
            c.server_secret_file,
        ) = (None, None, None, None);
        let mut s = Settings::from_raw_checked(raw, tools::load(file)?, false)?;
        s.resources = resources::load(file)?;
        s.prompts = prompts::load(file)?;
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
        if let Some(f) = file {
            let text = std::fs::read_to_string(f)
                .map_err(|e| ConfigError::Invalid(format!("cannot read {}: {e}", f.display())))?;
            let doc: toml::Table = toml::from_str(&text)
                .map_err(|e| ConfigError::Invalid(format!("{}: {e}", f.display())))?;
            for section in ["tools", "resources", "prompts"] {
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
        let mut clients = BTreeMap::new();
        for (id, c) in &raw.clients {
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
                },
            );
        }
        let cs = &raw.client;
        let client = ClientSettings {
            url: cs.url.clone(),
            client_id: cs.client_id.clone(),
            server_id: cs.server_id.clone(),
            secret: load_secret(&cs.secret, &cs.secret_file, "client")?
                .unwrap_or_else(|| Secret::new(Vec::new())),
            server_secret: load_secret(&cs.server_secret, &cs.server_secret_file, "client")?
                .unwrap_or_else(|| Secret::new(Vec::new())),
        };
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
            log: raw.log,
            limits: raw.limits,
            mcp: raw.mcp,
            metrics: MetricsSettings {
                listen: optional_addr(&raw.metrics.listen, "metrics.listen")?,
                worker_listen: optional_addr(&raw.metrics.worker_listen, "metrics.worker_listen")?,
                client_labels: raw.metrics.client_labels,
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
        Ok(s)
    }

    /// The secrets published in `config/default.toml`.
    pub fn development_secrets() -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for line in DEFAULT_TOML.lines() {
            let line = line.trim();
            if line.starts_with('#') {
                continue;
            }
            if let Some((k, v)) = line.split_once('=') {
                if k.trim().ends_with("secret") {
                    out.push(v.trim().trim_matches('"').as_bytes().to_vec());
                }
            }
        }
        out
    }

    /// Refuses configurations that would expose development keys to a network.
    pub fn check_safe_to_serve(&self) -> Result<(), ConfigError> {
        self.check_safe_to_serve_on(self.server.listen)
    }

    /// [`check_safe_to_serve`](Self::check_safe_to_serve) for the address actually served
    /// (a socket passed by socket activation may differ from `server.listen`).
    pub fn check_safe_to_serve_on(&self, addr: SocketAddr) -> Result<(), ConfigError> {
        if addr.ip().is_loopback() {
            return Ok(());
        }
        if !self.mcp.anonymous_client.is_empty() {
            return Err(ConfigError::Invalid(format!(
                "refusing to listen on non-loopback {addr} with mcp.anonymous_client set: \
                 unauthenticated /mcp requests are for loopback only"
            )));
        }
        let dev = Settings::development_secrets();
        let mut offenders = Vec::new();
        if dev.iter().any(|d| d == self.server.secret.expose()) {
            offenders.push("server".to_string());
        }
        for (id, keys) in &self.clients {
            if keys
                .secrets
                .iter()
                .any(|s| dev.iter().any(|d| d == s.expose()))
                || keys.token_hashes.contains(&DEV_TOKEN_SHA256)
            {
                offenders.push(format!("clients.{id}"));
            }
        }
        if offenders.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(format!(
                "refusing to listen on non-loopback {} with the development keys of config/default.toml ({}); generate keys with `mcpq keys new`",
                addr,
                offenders.join(", ")
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_development_token_hash_is_the_one_in_the_defaults() {
        use sha2::Digest;
        let h: [u8; 32] = sha2::Sha256::digest(DEV_TOKEN.as_bytes()).into();
        assert_eq!(h, DEV_TOKEN_SHA256);
        let s = Settings::load(None).unwrap();
        assert!(s.clients["client-001"]
            .token_hashes
            .contains(&DEV_TOKEN_SHA256));
        // Off loopback it is refused like the development keys.
        assert!(s
            .check_safe_to_serve_on("0.0.0.0:8787".parse().unwrap())
            .is_err());
    }

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

    #[test]
    fn defaults_load_and_are_loopback() {
        let s = Settings::load(None).unwrap();
        assert!(s.server.listen.ip().is_loopback());
        assert!(s.check_safe_to_serve().is_ok());
        assert_eq!(Settings::development_secrets().len(), 4);
    }

    #[test]
    fn development_keys_refused_off_loopback() {
        let mut s = Settings::load(None).unwrap();
        s.server.listen = "0.0.0.0:8787".parse().unwrap();
        assert!(s.check_safe_to_serve().is_err());
    }

    #[test]
    fn secret_debug_is_redacted() {
        let s = Secret::new(b"hunter2hunter2".to_vec());
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
