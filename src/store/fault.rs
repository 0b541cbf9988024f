//! Which store errors mean "the database cannot take this now" (connection refused or lost,
//! the server shutting down, the disk full, the filesystem read-only) rather than a bug in a
//! statement. Callers answer the first kind with the retryable `store_unavailable` and count
//! it in the store's [`StoreStatus`](super::status::StoreStatus); the second stays `internal`.
//!
//! It must not decide whether something committed (the drivers resolve that before they
//! answer): it names the kind of fault and turns it into the caller's error.

use sqlx::error::DatabaseError;

use super::status::StoreStatus;
use super::StoreError;
use crate::envelope::CallError;

/// A store failure as a caller sees it: `store_unavailable` (retryable, nothing committed)
/// for an availability fault, noted in `status` and logged through the repeat collapser;
/// otherwise `internal`, logged in full with the reference the caller gets.
pub fn call_error(status: &StoreStatus, site: &'static str, e: StoreError) -> CallError {
    match (status.unavailable(site, &e), &e) {
        (Some(why), StoreError::OutcomeUnknown(_)) => CallError::StoreUnavailable(why),
        (Some(why), _) => CallError::StoreUnavailable(format!(
            "{why}; nothing was committed, send the call again"
        )),
        (None, _) => CallError::internal(site, &e),
    }
}

impl StoreError {
    /// Why the store cannot take this now, if that is what this error says; `None` for an
    /// error that is a bug (a constraint, a corrupt row, a statement the server refused).
    pub fn unavailable(&self) -> Option<String> {
        match self {
            StoreError::Database(e) => sqlx_unavailable(e).map(str::to_string),
            StoreError::Unavailable(why) | StoreError::OutcomeUnknown(why) => Some(why.clone()),
            StoreError::Closed => Some("the store is shutting down".into()),
            StoreError::NotDurable => Some(
                "a WAL fsync failed, so this process acknowledges no further writes until it is \
                 restarted"
                    .into(),
            ),
            _ => None,
        }
    }
}

/// The availability fault behind a driver error, if it is one.
pub fn sqlx_unavailable(e: &sqlx::Error) -> Option<&'static str> {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => {
            Some("the database connection was lost")
        }
        sqlx::Error::PoolTimedOut => Some("no database connection could be had in time"),
        sqlx::Error::PoolClosed => Some("the store is shutting down"),
        sqlx::Error::WorkerCrashed => Some("the database connection's worker stopped"),
        sqlx::Error::Database(db) => database_unavailable(db.as_ref()),
        _ => None,
    }
}

fn database_unavailable(db: &dyn DatabaseError) -> Option<&'static str> {
    let code = db.code()?;
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        // SQLite reports extended result codes; the primary code is the low byte.
        let primary = code.parse::<i64>().ok()? & 0xff;
        return match primary {
            13 => Some("the disk is full"),
            8 => Some("the database file is read-only"),
            10 => Some("the database file could not be read or written (I/O error)"),
            14 => Some("the database file could not be opened"),
            5 | 6 => Some("the database is locked by another process"),
            _ => None,
        };
    }
    // PostgreSQL SQLSTATE classes and codes of a server that cannot serve now.
    match (&code[..code.len().min(2)], &code[..]) {
        ("08", _) => Some("the database connection failed"),
        ("57", _) => Some("the database is shutting down or restarting"),
        ("53", "53100") => Some("the database server's disk is full"),
        ("53", _) => Some("the database server is out of resources"),
        ("58", _) => Some("the database server had an I/O error"),
        (_, "40001") | (_, "40P01") => Some("the transaction conflicted with another"),
        (_, "25006") => Some("the database is read-only (a standby?)"),
        _ => None,
    }
}
