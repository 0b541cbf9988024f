//! Opening the PostgreSQL store: connection options and per-session settings, the schema and
//! migrations, starting the group committers, group readers, notifier and listener.
//!
//! It must not run statements of the job lifecycle: those belong to the `Store` impl.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions, PgSslMode};
use sqlx::{ConnectOptions, Connection, PgConnection};
use tokio::sync::{mpsc, Mutex, Notify};

use super::reader::{group_read, POLL_READERS};
use super::signals::{listen, notify_loop, Changes, CHANNEL};
use super::writer::{group_commit, MAX_BATCH};
use super::{Inner, PgStore};
use crate::config::PostgresSettings;
use crate::store::status::StoreStatus;
use crate::store::StoreError;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The migrations this binary applies, for tests that pin their versions and checksums (sqlx
/// refuses a database whose recorded checksum of an applied version differs).
pub fn migrator() -> &'static sqlx::migrate::Migrator {
    &MIGRATOR
}

/// Connection options from `database.url` and `[postgres]`: TLS, the password file, and the
/// per-session settings every connection of ours runs with.
pub fn connect_options(url: &str, pg: &PostgresSettings) -> Result<PgConnectOptions, StoreError> {
    let mut opts = PgConnectOptions::from_str(url)?.application_name("mcpq");
    if let Some(password) = pg.password().map_err(StoreError::Config)? {
        opts = opts.password(&password);
    }
    // Empty: as the URL says (`?sslmode=`), else libpq's default, prefer.
    if !pg.ssl_mode.is_empty() {
        let mode = PgSslMode::from_str(&pg.ssl_mode)
            .map_err(|_| StoreError::Config(format!("postgres.ssl_mode {:?} is not one of disable, allow, prefer, require, verify-ca, verify-full", pg.ssl_mode)))?;
        opts = opts.ssl_mode(mode);
    }
    if !pg.ssl_root_cert.is_empty() {
        opts = opts.ssl_root_cert(&pg.ssl_root_cert);
    }
    let sync = pg.synchronous_commit.as_str();
    if !["on", "off", "local", "remote_write", "remote_apply"].contains(&sync) {
        return Err(StoreError::Config(format!(
            "postgres.synchronous_commit {sync:?} is not one of on, off, local, remote_write, remote_apply"
        )));
    }
    let mut settings = vec![
        ("synchronous_commit", sync.to_string()),
        ("statement_timeout", pg.statement_timeout_ms.to_string()),
    ];
    if !pg.schema.is_empty() {
        settings.push(("search_path", pg.schema.clone()));
    }
    Ok(opts
        .options(settings)
        // Statements are a fixed set; keep them all prepared.
        .statement_cache_capacity(128)
        .log_statements(tracing::log::LevelFilter::Trace))
}

/// Creates the schema if one is configured and applies the migrations. Concurrent starts are
/// safe: sqlx's migrator holds a PostgreSQL advisory lock while it runs.
async fn migrate(pool: &PgPool, pg: &PostgresSettings) -> Result<(), StoreError> {
    if !pg.schema.is_empty() {
        let q = format!(
            "CREATE SCHEMA IF NOT EXISTS \"{}\"",
            pg.schema.replace('"', "\"\"")
        );
        // Two processes racing here may both try; the loser's duplicate error is harmless.
        if let Err(e) = sqlx::query(&q).execute(pool).await {
            let exists = sqlx::query_scalar::<_, bool>(
                "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
            )
            .bind(&pg.schema)
            .fetch_one(pool)
            .await?;
            if !exists {
                return Err(e.into());
            }
        }
    }
    MIGRATOR.run(pool).await?;
    Ok(())
}

impl PgStore {
    /// Connects, applies migrations, and starts the group committers (and the listener).
    pub async fn open(url: &str, pg: &PostgresSettings) -> Result<PgStore, StoreError> {
        let opts = connect_options(url, pg)?;
        let timeout = Duration::from_millis(pg.connect_timeout_ms.max(1));
        let pool = PgPoolOptions::new()
            .max_connections(pg.max_connections.max(2))
            .min_connections(1)
            .acquire_timeout(timeout)
            // A ping per acquire doubles the cost of every statement.
            .test_before_acquire(false)
            .connect_with(opts.clone())
            .await?;
        migrate(&pool, pg).await?;
        let (tx, rx) = mpsc::channel(MAX_BATCH * 4);
        let rx = Arc::new(Mutex::new(rx));
        let stop = tokio_util::sync::CancellationToken::new();
        let jobs_added = Arc::new(Notify::new());
        let status = StoreStatus::new();
        for _ in 0..pg.commit_connections.max(1) {
            let conn = tokio::time::timeout(timeout, PgConnection::connect_with(&opts))
                .await
                .map_err(|_| StoreError::Config("timed out connecting to PostgreSQL".into()))??;
            tokio::spawn(group_commit(
                conn,
                opts.clone(),
                rx.clone(),
                jobs_added.clone(),
                status.clone(),
            ));
        }
        tokio::spawn(notify_loop(pool.clone(), jobs_added.clone(), stop.clone()));
        let (lookups, lookup_rx) = mpsc::channel(MAX_BATCH * 4);
        let lookup_rx = Arc::new(Mutex::new(lookup_rx));
        for _ in 0..POLL_READERS {
            tokio::spawn(group_read(pool.clone(), lookup_rx.clone()));
        }
        let wake = if pg.listen {
            let notify = Arc::new(Notify::new());
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(CHANNEL).await?;
            tokio::spawn(listen(listener, notify.clone(), stop.clone()));
            Some(notify)
        } else {
            None
        };
        let changes = Changes::start(pool.clone(), stop.clone());
        Ok(PgStore {
            inner: Arc::new(Inner {
                changes,
                lookups,
                pool,
                writes: Mutex::new(()),
                tx,
                wake,
                jobs_added,
                prune_batch: i64::from(pg.prune_batch.max(1)),
                audit_inflight: Default::default(),
                stop,
                status,
            }),
        })
    }

    /// The pool, for the operator's commands and the benchmarks.
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }
}

/// Applies migrations only (`mcpq migrate`).
pub async fn migrate_only(url: &str, pg: &PostgresSettings) -> Result<(), StoreError> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_millis(pg.connect_timeout_ms.max(1)))
        .connect_with(connect_options(url, pg)?)
        .await?;
    migrate(&pool, pg).await?;
    pool.close().await;
    Ok(())
}
