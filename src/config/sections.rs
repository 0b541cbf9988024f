//! The settings of each section of the configuration (`[server]`, `[jobs]`, `[worker]`,
//! `[client]`, `[clients.ID]`, `[log]`, `[otel]`, `[metrics]`, `[limits]`, `[mcp]`), as the rest
//! of the daemon reads them.
//!
//! It must not load or check anything: `load` builds these from the layered
//! configuration.

use std::net::SocketAddr;

use serde::Deserialize;

use super::Secret;

/// `/mcp` (`crate::mcp`).
#[derive(Debug, Deserialize, Clone)]
pub struct McpSettings {
    pub allowed_hosts: Vec<String>,
    pub allowed_origins: Vec<String>,
    pub anonymous_client: String,
    /// Questions a tool may have pending at once with one 2025-11-25 client (0: no cap).
    pub max_pending_questions_per_client: usize,
    /// A held call re-reads its job at most this far apart when no signal wakes it.
    pub held_poll_ms: u64,
}

/// Per-client and per-address limits (`crate::limits`, `crate::server`).
#[derive(Debug, Deserialize, Clone)]
pub struct LimitSettings {
    pub rate_per_client: f64,
    pub rate_burst: f64,
    pub max_queued_per_client: u64,
    pub max_connections_per_ip: usize,
}

/// Prometheus endpoints (`crate::telemetry`); `None` is off.
#[derive(Debug, Clone)]
pub struct MetricsSettings {
    pub listen: Option<SocketAddr>,
    pub worker_listen: Option<SocketAddr>,
    pub client_labels: bool,
    /// Connections the metrics listener serves at once; more are closed unanswered.
    pub max_connections: usize,
}

/// `[otel]`: OpenTelemetry traces (docs/TRACING.md). Off unless `enabled`; an empty
/// `endpoint`, `protocol` or `service_name` defers to the standard `OTEL_*` variables.
#[derive(Debug, Deserialize, Clone)]
pub struct OtelSettings {
    pub enabled: bool,
    /// The collector's URL (`http://host:4318` for OTLP/HTTP, `http://host:4317` for gRPC).
    pub endpoint: String,
    /// `http/protobuf` or `grpc`.
    pub protocol: String,
    /// The share of new traces kept, 0.0 to 1.0; a caller's sampled flag wins.
    pub sampling_ratio: f64,
    pub service_name: String,
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
    /// How long a job may wait for its client's input before it fails (0: forever).
    pub input_wait_secs: u64,
    /// Priority levels are worth this many seconds of waiting each (docs/FLOW.md).
    pub aging_secs: u64,
    /// The highest priority a client may ask for unless `[clients.ID] max_priority` says.
    pub client_max_priority: u8,
    /// How far ahead a call may schedule its job.
    pub max_delay_secs: u64,
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
    /// The highest priority this client may ask for; `None`: `jobs.client_max_priority`.
    pub max_priority: Option<u8>,
    /// The tools this client sees and may call (`[clients.ID] tools`); `None`: all.
    pub tools: Option<globset::GlobSet>,
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

/// What a console operator may do (`[operators.NAME] role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    ReadOnly,
    ReadWrite,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "read-only" => Some(Role::ReadOnly),
            "read-write" => Some(Role::ReadWrite),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::ReadOnly => "read-only",
            Role::ReadWrite => "read-write",
        }
    }
}

/// One `[operators.NAME]`: the SHA-256 of its live console tokens and its role.
#[derive(Debug, Clone)]
pub struct Operator {
    pub token_hashes: Vec<[u8; 32]>,
    pub role: Role,
}

/// The operator's web console (`crate::console`); `enabled = false` is off.
#[derive(Debug, Clone, Default)]
pub struct ConsoleSettings {
    pub enabled: bool,
    /// A trusted proxy's header naming the operator; `None` is no proxy.
    pub proxy_header: Option<String>,
    pub session_ttl_secs: u64,
    pub refresh_ms: u64,
    /// A text search scans this many job sequences per statement (`console::search`).
    pub search_chunk: i64,
    /// and keeps scanning for at most this long per request.
    pub search_budget_ms: u64,
    pub operators: std::collections::BTreeMap<String, Operator>,
}

/// `[audit]`: the audit trail (`crate::audit`, docs/AUDIT.md).
#[derive(Debug, Deserialize, Clone)]
pub struct AuditSettings {
    pub enabled: bool,
    /// Records older than this many seconds are pruned (0: kept forever).
    pub retention_secs: u64,
    /// Distinct refusal records per second per daemon (identical ones are coalesced).
    pub refusals_per_sec: u32,
    /// Tools whose calls are recorded with their full arguments.
    pub full_arguments: Vec<String>,
}
