//! Opening the SQLite store: connection options and pragmas, the busy handler, migrations,
//! and starting the writer, syncer and group readers; a clean close.
//!
//! It must not run statements of the job lifecycle: those belong to the `Store` impl.

use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, SqliteConnection};
use tokio::sync::{mpsc, Mutex};

use super::reader::group_read;
use super::signals::Signals;
use super::writer::{
    group_commit, spawn_writer_thread, Durability, PendingAudit, PendingNonces, MAX_BATCH,
};
use super::{Inner, SqliteStore};
use crate::config::{DatabaseSettings, Synchronous};
use crate::store::status::StoreStatus;
use crate::store::{Store, StoreError};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// The migrations this binary applies, for tests that pin their versions and checksums (sqlx
/// refuses a database whose recorded checksum of an applied version differs).
pub fn migrator() -> &'static sqlx::migrate::Migrator {
    &MIGRATOR
}

pub(super) fn connect_options(db: &DatabaseSettings) -> SqliteConnectOptions {
    let sync = match db.synchronous {
        Synchronous::Full => SqliteSynchronous::Full,
        Synchronous::Normal => SqliteSynchronous::Normal,
        Synchronous::Extra => SqliteSynchronous::Extra,
    };
    SqliteConnectOptions::new()
        .filename(&db.path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(sync)
        .busy_timeout(Duration::from_millis(db.busy_timeout_ms))
        .foreign_keys(false)
        .pragma("temp_store", "memory")
        // The commit that crosses this many WAL pages checkpoints. SQLite's default of 1000
        // checkpointed every ~70 ms under load, copying the same hot pages again each time;
        // 10000 cut the p99 of durable enqueues (BENCHMARKS.md). Background PASSIVE
        // checkpoints were tried: under continuous commits they never caught up, the WAL
        // never restarted and grew to 280 MB in a 4 s benchmark (every commit then an
        // appending, slower fsync).
        .pragma("wal_autocheckpoint", db.checkpoint_pages.max(1).to_string())
        .pragma("journal_size_limit", "134217728")
        // sqlx streams a statement's rows to the caller through a channel of this size and
        // stops stepping the statement while it is full. An autocommit `UPDATE … RETURNING`
        // (claim, heartbeat, complete) holds SQLite's write lock until its last row is
        // handed over, so with sqlx's default of 50 a 256-job claim kept every other
        // writer (the daemon's group commit included) waiting ~2 ms while rows trickled
        // across threads. We always collect every row anyway, so a roomy channel bounds
        // nothing and lets the statement finish (and commit) at SQLite's own speed.
        .row_buffer_size(ROW_BUFFER)
}

/// See `connect_options`. Larger than any batch a default configuration produces; a bigger
/// batch (a `worker.claim_batch` above it) only meets sqlx's back-pressure again.
const ROW_BUFFER: usize = 16_384;

/// Replaces SQLite's default busy handler on a writer connection.
///
/// The default handler sleeps 1, 2, 5, 10, … up to 100 ms between retries; with the
/// daemon and several worker processes writing to one file, a waiting writer keeps
/// missing its turn and statements were measured waiting over a second. Short, fixed
/// sleeps let writers of different processes take turns within a fraction of a
/// millisecond. Gives up (SQLITE_BUSY) after about `timeout_ms`.
async fn install_busy_handler(
    conn: &mut SqliteConnection,
    timeout_ms: u64,
) -> Result<(), StoreError> {
    let mut handle = conn.lock_handle().await?;
    let db = handle.as_raw_handle().as_ptr();
    // SAFETY: `db` is the live handle of `conn`, locked by `handle` for this call. The
    // callback is a plain function and its argument is an integer smuggled in the pointer,
    // so nothing it refers to can be freed before the connection is.
    let rc = unsafe {
        libsqlite3_sys::sqlite3_busy_handler(
            db,
            Some(busy_wait),
            timeout_ms as usize as *mut std::ffi::c_void,
        )
    };
    if rc != libsqlite3_sys::SQLITE_OK {
        return Err(StoreError::Corrupt(format!(
            "sqlite3_busy_handler failed with code {rc}"
        )));
    }
    Ok(())
}

extern "C" fn busy_wait(arg: *mut std::ffi::c_void, count: std::ffi::c_int) -> std::ffi::c_int {
    const FAST_TRIES: u64 = 40;
    let timeout_us = (arg as usize as u64).saturating_mul(1000);
    let count = count.max(0) as u64;
    // 50 µs steps for the first 2 ms, then 250 µs steps.
    let (waited_us, step_us) = if count < FAST_TRIES {
        (count * 50, 50)
    } else {
        (FAST_TRIES * 50 + (count - FAST_TRIES) * 250, 250)
    };
    if waited_us >= timeout_us {
        return 0;
    }
    std::thread::sleep(Duration::from_micros(step_us));
    1
}

/// Applies the embedded migrations. Safe to race with other processes doing the same.
pub async fn migrate(conn: &mut SqliteConnection) -> Result<(), StoreError> {
    let mut last = None;
    for _ in 0..5 {
        match MIGRATOR.run(&mut *conn).await {
            Ok(()) => return Ok(()),
            // Another process may be applying the same migration right now; its
            // commit makes our retry a no-op.
            Err(e) => {
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    Err(last.map(StoreError::from).unwrap_or(StoreError::Closed))
}

impl SqliteStore {
    /// Opens (creating if needed) the database, applies migrations and starts the writer task.
    pub async fn open(db: &DatabaseSettings) -> Result<SqliteStore, StoreError> {
        let opts = connect_options(db);
        let writer_opts = match db.synchronous {
            // Durability comes from the syncer's fsync after each commit (see `Durability`).
            Synchronous::Full | Synchronous::Extra => {
                opts.clone().synchronous(SqliteSynchronous::Normal)
            }
            Synchronous::Normal => opts.clone(),
        };
        let mut writer = SqliteConnection::connect_with(&writer_opts).await?;
        install_busy_handler(&mut writer, db.busy_timeout_ms).await?;
        migrate(&mut writer).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(db.read_connections.max(1))
            .min_connections(1)
            // A ping per acquire doubles the cost of every read.
            .test_before_acquire(false)
            .connect_with(opts.clone())
            .await?;
        let writer = Arc::new(Mutex::new(writer));
        let (tx, rx) = mpsc::channel(MAX_BATCH * 4);
        let durability = Durability::new(db);
        let nonces = PendingNonces::default();
        let audit = PendingAudit::default();
        let status = StoreStatus::new();
        let signals = Arc::new(Signals::new(&db.path));
        spawn_writer_thread(group_commit(
            writer.clone(),
            rx,
            (nonces.clone(), audit.clone()),
            durability.clone(),
            status.clone(),
            signals.clone(),
        ))?;
        let (lookups, lookup_rx) = mpsc::channel(MAX_BATCH * 4);
        let lookup_rx = Arc::new(Mutex::new(lookup_rx));
        for _ in 0..db.poll_readers.clamp(1, db.read_connections.max(1)) {
            // Each reader keeps a connection of its own: a pool acquire per group cost
            // more than the statement.
            let conn = SqliteConnection::connect_with(&opts).await?;
            tokio::spawn(group_read(conn, opts.clone(), lookup_rx.clone()));
        }
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                read,
                writer,
                tx,
                nonces,
                audit,
                lookups,
                durability,
                status,
                signals,
            }),
        })
    }

    /// Closes connections after draining pending writes.
    pub async fn close(&self) {
        let _ = self.flush().await;
        // Leave a self-contained database file behind after a clean stop.
        let mut conn = self.inner.writer.lock().await;
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut *conn)
            .await
        {
            tracing::debug!(error = %e, "final checkpoint incomplete (another process holds the database)");
        }
        drop(conn);
        self.inner.signals.close();
        self.inner.read.close().await;
    }
}

/// Opens the database and applies migrations, for `mcpq migrate`.
pub async fn migrate_only(db: &DatabaseSettings) -> Result<(), StoreError> {
    let mut conn = SqliteConnection::connect_with(&connect_options(db)).await?;
    migrate(&mut conn).await?;
    conn.close().await?;
    Ok(())
}
