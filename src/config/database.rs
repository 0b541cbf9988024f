//! Where the jobs are stored: `[database]` (which backend, and SQLite's settings) and
//! `[postgres]`, and how a database is named in logs (its URL without a password).
//!
//! Also reads what needs more than deserializing: `synchronous` from text, the
//! PostgreSQL password from its file (kept with the settings, not in the store drivers).
//!
//! It must not open a connection: `crate::store::open` does.

use std::path::PathBuf;
use std::str::FromStr;

use serde::Deserialize;

use super::{credentials_path, ConfigError};

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

impl FromStr for Synchronous {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "full" => Ok(Synchronous::Full),
            "normal" => Ok(Synchronous::Normal),
            "extra" => Ok(Synchronous::Extra),
            _ => Err(format!("unknown synchronous mode {s:?}")),
        }
    }
}

impl PostgresSettings {
    /// The password from `password_file` (trailing newline removed), or `None` when no file
    /// is configured. Read when the store connects, so a rotated file is picked up at the
    /// next start.
    pub fn password(&self) -> Result<Option<String>, String> {
        if self.password_file.is_empty() {
            return Ok(None);
        }
        let path = credentials_path(
            std::path::Path::new(&self.password_file),
            "postgres.password_file",
        )
        .map_err(|e| e.to_string())?;
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read postgres.password_file {}: {e}", path.display()))?;
        Ok(Some(text.trim_end_matches(['\n', '\r']).to_string()))
    }
}
