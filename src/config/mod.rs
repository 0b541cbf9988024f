//! Settings: layered configuration and secrets.
//!
//! Owns how settings are found (the checked-in `config/default.toml`, compiled
//! in, then `--config FILE`, then `MCPQ__SECTION__KEY` environment variables),
//! how secrets are loaded (inline or from files), and the start-up safety
//! checks (no development keys off loopback, no short secrets). The settings of each
//! section are in `sections` (the database's in `database`), loading and validation in
//! `load`, secrets in `secrets`, the safety checks in `safety`; `[tools]`, `[resources]`,
//! `[prompts]`, `[schedules]` and `[oauth]` each have a file of their own.
//!
//! It must not open sockets or databases; it only describes them. It imports only
//! foundation modules (`json`, `jobs`, `asks`), never what it configures.

use std::collections::BTreeMap;
use std::path::PathBuf;

mod database;
mod load;
pub mod oauth;
pub mod prompts;
pub mod resources;
mod safety;
pub mod schedules;
mod secrets;
mod sections;
mod strict;
pub mod tool_table;
pub mod upstreams;
pub mod webhooks;

pub use database::{redact_url, Backend, DatabaseSettings, PostgresSettings, Synchronous};
pub use secrets::{credentials_path, Secret};
pub use sections::{
    AuditSettings, ClientKeys, ClientSettings, ConsoleSettings, JobSettings, LimitSettings,
    LogFormat, LogSettings, McpSettings, MetricsSettings, Operator, OtelSettings, Role,
    ServerSettings, WorkerSettings,
};
pub use tool_table::ToolDef;

pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

/// The development `/mcp` token published in `config/default.toml` (its SHA-256).
pub const DEV_TOKEN: &str = "dev-only-mcp-token-00000000000000000000000000000000";

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
    /// Recurring jobs (`[schedules.NAME]`, docs/FLOW.md).
    pub schedules: Vec<schedules::ScheduleDef>,
    /// MCP servers whose tools mcpq publishes (`[upstreams.NAME]`, docs/UPSTREAMS.md).
    pub upstreams: Vec<upstreams::UpstreamDef>,
    pub log: LogSettings,
    /// `[otel]`: traces (docs/TRACING.md).
    pub otel: OtelSettings,
    pub metrics: MetricsSettings,
    pub limits: LimitSettings,
    pub mcp: McpSettings,
    /// `[webhooks]` and the clients' `[clients.ID.webhooks]` (docs/WEBHOOKS.md).
    pub webhooks: webhooks::WebhookSettings,
    /// `[oauth]`: OAuth access tokens at `/mcp`.
    pub oauth: oauth::OAuthSettings,
    pub console: ConsoleSettings,
    /// `[audit]` (docs/AUDIT.md).
    pub audit: AuditSettings,
}
