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
