//! Opens the store `database.url` names: the SQLite file (the default) or PostgreSQL.
//!
//! Every command that touches the database goes through here, so the choice of backend is
//! made in one place. It must not know either backend's internals beyond their `open`.

use std::sync::Arc;

use super::admin::AdminStore;
use super::postgres::PgStore;
use super::sqlite::SqliteStore;
use super::{Store, StoreError};
use crate::config::{Backend, Settings};

/// A store of either kind, for callers that need more than the [`Store`] trait.
#[derive(Clone)]
pub enum AnyStore {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl AnyStore {
    pub fn store(&self) -> Arc<dyn Store> {
        match self {
            AnyStore::Sqlite(s) => Arc::new(s.clone()),
            AnyStore::Postgres(s) => Arc::new(s.clone()),
        }
    }

    pub fn admin(&self) -> Arc<dyn AdminStore> {
        match self {
            AnyStore::Sqlite(s) => Arc::new(s.clone()),
            AnyStore::Postgres(s) => Arc::new(s.clone()),
        }
    }
}

fn backend(settings: &Settings) -> Result<Backend, StoreError> {
    settings
        .database
        .backend()
        .map_err(|e| StoreError::Config(e.to_string()))
}

/// Opens (creating and migrating if needed) the configured store.
pub async fn open(settings: &Settings) -> Result<AnyStore, StoreError> {
    Ok(match backend(settings)? {
        Backend::Sqlite(path) => {
            let mut db = settings.database.clone();
            db.path = path;
            AnyStore::Sqlite(SqliteStore::open(&db).await?)
        }
        Backend::Postgres(url) => {
            AnyStore::Postgres(PgStore::open(&url, &settings.postgres).await?)
        }
    })
}

/// Applies migrations only (`mcpq migrate`).
pub async fn migrate(settings: &Settings) -> Result<(), StoreError> {
    match backend(settings)? {
        Backend::Sqlite(path) => {
            let mut db = settings.database.clone();
            db.path = path;
            super::sqlite::migrate_only(&db).await
        }
        Backend::Postgres(url) => super::postgres::migrate_only(&url, &settings.postgres).await,
    }
}

/// What `mcpq bench drain` needs beyond the [`Store`] trait (benchmark set-up and progress).
impl AnyStore {
    /// Inserts `n` no-op jobs directly (bypassing the wire and nonces), then leaves the
    /// database as quiet as it can (SQLite: WAL checkpointed; PostgreSQL: analyzed and
    /// checkpointed), so the measured run does not pay for the fill.
    pub async fn bench_fill_noop(&self, n: usize) -> Result<(), StoreError> {
        match self {
            AnyStore::Sqlite(s) => {
                super::sqlite::bench::bench_fill_noop(s, n).await?;
                s.checkpoint_truncate().await
            }
            AnyStore::Postgres(s) => super::postgres::bench::fill_noop(s, n).await,
        }
    }

    /// The smallest job sequence number (to follow the first jobs).
    pub async fn first_seq(&self) -> Result<i64, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.first_seq().await,
            AnyStore::Postgres(s) => super::postgres::bench::first_seq(s).await,
        }
    }

    /// How many jobs with `seq` in `first..=last` have succeeded.
    pub async fn succeeded_in_range(&self, first: i64, last: i64) -> Result<i64, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.succeeded_in_range(first, last).await,
            AnyStore::Postgres(s) => {
                super::postgres::bench::succeeded_in_range(s, first, last).await
            }
        }
    }

    /// The sequence number of the queue's head (the next job a claim takes), if any.
    pub async fn queue_head_seq(&self) -> Result<Option<i64>, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.queue_head_seq().await,
            AnyStore::Postgres(s) => super::postgres::bench::queue_head_seq(s).await,
        }
    }

    /// Jobs not yet finished (queued or running).
    pub async fn any_unfinished(&self) -> Result<bool, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.any_unfinished().await,
            AnyStore::Postgres(s) => super::postgres::bench::any_unfinished(s).await,
        }
    }
}
