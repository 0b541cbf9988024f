//! The embedded SQLite store (sqlx), one file shared by the daemon and any
//! number of worker processes.
//!
//! Design, from measurements on this hardware (docs/ARCHITECTURE.md):
//! - each process has exactly one writer connection; every write of the
//!   process goes through it, so the process never contends with itself;
//! - enqueues and nonces are group-committed: a single writer task, on a thread
//!   of its own, drains every waiting enqueue and the pending-nonce buffer into
//!   one statement (an insert into the `enqueue_batch` view, whose trigger stores
//!   nonces and jobs atomically), and answers each enqueue only after that commit
//!   is fsynced (under `synchronous=FULL`, by the syncer thread);
//! - batch operations (enqueue, heartbeat, complete, release) pass their rows as
//!   one JSON array of positional rows (`Rows`) to a single statement
//!   (`json_each`), so a batch costs one round trip to SQLite's thread;
//! - polls are group reads: waiting lookups are answered by one statement whose
//!   result is a single JSON value;
//! - a claim returns one JSON value per job (sqlx copies every returned value), and
//!   every connection's row channel is roomy, so an `UPDATE … RETURNING` holds the
//!   write lock only as long as SQLite needs;
//! - other reads use a small pool of separate connections (WAL readers never
//!   block the writer).
//!
//! It must not decide job transitions (see `jobs`) or know about HTTP.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, Row, SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot, Mutex};

use super::*;
use crate::auth::NonceKey;
use crate::config::{DatabaseSettings, Synchronous};
use crate::jobs::CrashPolicy;
use crate::json::Json;

const MAX_BATCH: usize = 4096;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

mod admin;
mod copy;

mod sql {
    pub const INSERT_NONCE_BATCH: &str = include_str!("../sql/insert_nonce_batch.sql");
    pub const ENQUEUE_BATCH: &str = include_str!("../sql/enqueue_batch.sql");
    pub const INSERT_JOBS: &str = include_str!("../sql/insert_jobs.sql");
    pub const FIND_IDEMPOTENT: &str = include_str!("../sql/find_idempotent.sql");
    pub const GET_JOBS: &str = include_str!("../sql/get_jobs.sql");
    pub const CANCEL_QUEUED: &str = include_str!("../sql/cancel_queued.sql");
    pub const CANCEL_RUNNING: &str = include_str!("../sql/cancel_running.sql");
    pub const JOB_STATE: &str = include_str!("../sql/job_state.sql");
    pub const ANSWER_READ: &str = include_str!("../sql/answer_read.sql");
    pub const ANSWER_WRITE: &str = include_str!("../sql/answer_write.sql");
    pub const CLAIM: &str = include_str!("../sql/claim.sql");
    pub const CLAIM_TOOL: &str = include_str!("../sql/claim_tool.sql");
    pub const UNKNOWN_DEFINITIONS: &str = include_str!("../sql/unknown_definitions.sql");
    pub const RESOLVE_IN_DOUBT: &str = include_str!("../sql/resolve_in_doubt.sql");
    pub const HAS_DUE: &str = include_str!("../sql/has_due.sql");
    pub const STATS: &str = include_str!("../sql/stats.sql");
    pub const LEASE_HOLDERS: &str = include_str!("../sql/lease_holders.sql");
    pub const COUNT_QUEUED: &str = include_str!("../sql/count_queued.sql");
    pub const ADMIN_LIST: &str = include_str!("../sql/admin_list.sql");
    pub const ADMIN_CANCEL: &str = include_str!("../sql/admin_cancel.sql");
    pub const ADMIN_RETRY: &str = include_str!("../sql/admin_retry.sql");
    pub const ADMIN_ACTIVITY: &str = include_str!("../sql/admin_activity.sql");
    pub const HEARTBEAT: &str = include_str!("../sql/heartbeat.sql");
    pub const COMPLETE: &str = include_str!("../sql/complete.sql");
    pub const COMPLETE_ASK: &str = include_str!("../sql/complete_ask.sql");
    pub const RELEASE: &str = include_str!("../sql/release.sql");
    pub const EXPIRED_LEASES: &str = include_str!("../sql/expired_leases.sql");
    pub const PRUNE_JOBS: &str = include_str!("../sql/prune_jobs.sql");
    pub const PRUNE_NONCES: &str = include_str!("../sql/prune_nonces.sql");
    pub const LIVE_NONCES: &str = include_str!("../sql/live_nonces.sql");
}

enum WriteOp {
    /// Nonces were added to an empty [`PendingNonces`]: commit them within the linger time.
    NoncesPending,
    Job(Box<NewJob>, oneshot::Sender<Result<Enqueued, String>>),
    Flush(oneshot::Sender<()>),
}

struct Inner {
    read: SqlitePool,
    writer: Arc<Mutex<SqliteConnection>>,
    tx: mpsc::Sender<WriteOp>,
    nonces: PendingNonces,
    lookups: mpsc::Sender<Lookup>,
    durability: Durability,
}

/// Admitted nonces of calls that create no job, waiting for the next group commit.
///
/// A plain buffer rather than a message each: sending every nonce to the writer woke its
/// thread once per call (a futex wake and a context switch, the largest cost left on the
/// sync path); now only the nonce that finds the buffer empty wakes it, at most once per
/// commit.
type PendingNonces = Arc<std::sync::Mutex<Vec<NonceRecord>>>;

fn take_nonces(pending: &PendingNonces) -> Vec<NonceRecord> {
    std::mem::take(&mut *pending.lock().unwrap_or_else(|p| p.into_inner()))
}

/// One `get_job` waiting for the next group read.
struct Lookup {
    id: JobId,
    client: ClientId,
    reply: oneshot::Sender<Result<Option<JobRecord>, String>>,
}

/// Callers waiting for a commit to become durable; run with `true` once it is.
type Waiter = Box<dyn FnOnce(bool) + Send>;

/// How commits of this process become durable before anyone is told "done".
///
/// Under `synchronous = full` (or `extra`) the writer connection itself runs with
/// `synchronous = normal` (a commit writes the WAL but does not fsync it) and this
/// syncer fsyncs the WAL file *after* the commit, outside SQLite's write lock, before
/// waking the callers. So the next batch (or another process) can write while the
/// previous one is being fsynced, and one fsync covers every batch committed before it.
/// The guarantee is unchanged: nobody hears "accepted" before its row is in the WAL and
/// the WAL is on disk. (SQLite syncs the WAL itself before any checkpoint copies frames
/// out of it, so a checkpoint can never lose frames this fsync has not covered yet.)
#[derive(Clone)]
struct Durability {
    tx: Option<std::sync::mpsc::Sender<Waiter>>,
    failed: Arc<std::sync::atomic::AtomicBool>,
}

impl Durability {
    fn new(db: &DatabaseSettings) -> Durability {
        let failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let tx = match db.synchronous {
            Synchronous::Normal => None,
            Synchronous::Full | Synchronous::Extra => {
                let (tx, rx) = std::sync::mpsc::channel();
                let mut wal = db.path.as_os_str().to_owned();
                wal.push("-wal");
                let wal = std::path::PathBuf::from(wal);
                let failed = failed.clone();
                // A plain thread, not a task: each hop between threads costs tens of µs on
                // a busy box, and a blocking fsync needs a thread anyway.
                let spawned = std::thread::Builder::new()
                    .name("mcpq-wal-sync".into())
                    .spawn(move || syncer(wal, rx, failed));
                match spawned {
                    Ok(_) => Some(tx),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot start the WAL sync thread; refusing writes");
                        None
                    }
                }
            }
        };
        Durability { tx, failed }
    }

    /// Runs `waiter` once everything committed so far is durable.
    fn after_sync(&self, waiter: Waiter) {
        if self.failed.load(std::sync::atomic::Ordering::SeqCst) {
            return waiter(false);
        }
        match &self.tx {
            None => waiter(true),
            Some(tx) => {
                if let Err(e) = tx.send(waiter) {
                    (e.0)(false);
                }
            }
        }
    }

    async fn wait(&self) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.after_sync(Box::new(move |ok| {
            let _ = tx.send(ok);
        }));
        match rx.await {
            Ok(true) => Ok(()),
            _ => Err(StoreError::NotDurable),
        }
    }
}

/// fsyncs the WAL for every group of waiters that queued up while the previous fsync ran.
/// Runs on its own thread until the store (every sender) is dropped.
fn syncer(
    wal: std::path::PathBuf,
    rx: std::sync::mpsc::Receiver<Waiter>,
    failed: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut file: Option<std::fs::File> = None;
    while let Ok(first) = rx.recv() {
        let mut waiters = vec![first];
        while let Ok(w) = rx.try_recv() {
            waiters.push(w);
        }
        let started = std::time::Instant::now();
        let synced = match file.take() {
            Some(f) => Ok(f),
            None => std::fs::File::open(&wal),
        }
        .and_then(|f| f.sync_data().map(|()| f));
        let ok = match synced {
            Ok(f) => {
                file = Some(f);
                true
            }
            Err(e) => {
                // After a failed fsync the page cache can no longer be trusted to reach
                // the disk (the "fsyncgate" lesson): refuse every later durable write.
                tracing::error!(error = %e, wal = %wal.display(), "fsync of the WAL failed; no further writes will be acknowledged");
                failed.store(true, std::sync::atomic::Ordering::SeqCst);
                false
            }
        };
        metrics::histogram!(crate::telemetry::FSYNC_SECONDS)
            .record(started.elapsed().as_secs_f64());
        if !ok {
            metrics::counter!(crate::telemetry::FSYNC_FAILURES).increment(1);
        }
        tracing::trace!(
            took_us = started.elapsed().as_micros() as u64,
            waiters = waiters.len(),
            "fsync"
        );
        for w in waiters {
            w(ok);
        }
    }
}

/// SQLite implementation of [`Store`]. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

fn connect_options(db: &DatabaseSettings) -> SqliteConnectOptions {
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
        spawn_writer_thread(group_commit(
            writer.clone(),
            rx,
            nonces.clone(),
            durability.clone(),
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
                lookups,
                durability,
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
        self.inner.read.close().await;
    }
}

/// Runs the group-commit loop on a thread of its own with a one-thread runtime.
///
/// On the shared runtime the writer task queued behind dozens of HTTP tasks each time
/// SQLite's thread answered it, and the writer is the one serial step every enqueue
/// passes through. It ends when every sender is gone.
fn spawn_writer_thread(
    task: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), StoreError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
    std::thread::Builder::new()
        .name("mcpq-writer".into())
        .spawn(move || rt.block_on(task))
        .map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
    Ok(())
}

/// Answers `get_job` calls in groups: each of `database.poll_readers` tasks takes whatever
/// lookups are waiting and answers them with one statement. Polls are the most frequent
/// call of a job's life; one statement per poll made each pay a round trip to SQLite's
/// thread (BENCHMARKS.md has the before/after). The tasks end when the store is dropped.
async fn group_read(
    mut conn: SqliteConnection,
    opts: SqliteConnectOptions,
    rx: Arc<Mutex<mpsc::Receiver<Lookup>>>,
) {
    let mut batch = Vec::with_capacity(MAX_READ_BATCH);
    loop {
        if !take_batch(&rx, &mut batch, MAX_READ_BATCH).await {
            return;
        }
        let mut ids = String::from("[");
        for (i, l) in batch.iter().enumerate() {
            if i > 0 {
                ids.push(',');
            }
            crate::json::write_str(&l.id.0, &mut ids);
        }
        ids.push(']');
        let started = std::time::Instant::now();
        let rows: Result<String, sqlx::Error> = sqlx::query_scalar(sql::GET_JOBS)
            .bind(ids)
            .fetch_one(&mut conn)
            .await;
        tracing::trace!(
            lookups = batch.len(),
            took_us = started.elapsed().as_micros() as u64,
            "group read"
        );
        if let Err(e) = &rows {
            // This group's callers get an internal error; the next group gets a fresh
            // connection, so a broken one cannot fail every later poll.
            tracing::warn!(error = %e, "group read failed; reconnecting");
            match SqliteConnection::connect_with(&opts).await {
                Ok(fresh) => conn = fresh,
                Err(e) => tracing::warn!(error = %e, "group read: reconnect failed; will retry"),
            }
        }
        let found = rows
            .map_err(|e| e.to_string())
            .and_then(|text| records_from_json(&text).map_err(|e| e.to_string()));
        for l in batch.drain(..) {
            let answer = match &found {
                Ok(found) => Ok(found
                    .get(&l.id.0)
                    .filter(|rec| rec.client_id == l.client)
                    .cloned()),
                Err(e) => Err(e.clone()),
            };
            let _ = l.reply.send(answer);
        }
    }
}

const MAX_READ_BATCH: usize = 512;

/// How long admitted nonces of non-job calls may wait to be written. Nothing waits on
/// them (they are write-behind), so they ride along with the next job commit or are
/// written on their own at most this often: one fsync per interval instead of one per batch.
const NONCE_LINGER: Duration = Duration::from_millis(10);

/// The single writer task: drains waiting writes into one transaction.
async fn group_commit(
    writer: Arc<Mutex<SqliteConnection>>,
    mut rx: mpsc::Receiver<WriteOp>,
    pending: PendingNonces,
    durability: Durability,
) {
    let mut ops = Vec::with_capacity(MAX_BATCH);
    loop {
        ops.clear();
        match rx.recv().await {
            Some(op) => ops.push(op),
            None => return,
        }
        let linger_until = tokio::time::Instant::now() + NONCE_LINGER;
        loop {
            while ops.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(op) => ops.push(op),
                    Err(_) => break,
                }
            }
            // Someone waits for this commit (an enqueue or a flush), or the batch is full:
            // commit now. Otherwise only nonces are pending: let them gather a little.
            let waited_on = ops.iter().any(|op| !matches!(op, WriteOp::NoncesPending));
            if waited_on || ops.len() >= MAX_BATCH {
                break;
            }
            match tokio::time::timeout_at(linger_until, rx.recv()).await {
                Ok(Some(op)) => ops.push(op),
                Ok(None) | Err(_) => break,
            }
        }
        let mut conn = writer.lock().await;
        commit_batch(&mut conn, &mut ops, &pending, &durability).await;
    }
}

async fn commit_batch(
    conn: &mut SqliteConnection,
    ops: &mut Vec<WriteOp>,
    pending: &PendingNonces,
    durability: &Durability,
) {
    let mut nonces = NoncePack::default();
    for n in take_nonces(pending) {
        nonces.push(&n);
    }
    let mut jobs = Rows::new();
    for op in ops.iter() {
        match op {
            WriteOp::NoncesPending => {}
            WriteOp::Job(j, _) => {
                if let Some(n) = &j.nonce {
                    nonces.push(n);
                }
                push_job(&mut jobs, j);
            }
            WriteOp::Flush(_) => {}
        }
    }
    let started = std::time::Instant::now();
    let job_count = jobs.count;
    let outcome = if nonces.is_empty() && jobs.count == 0 {
        Ok(Vec::new())
    } else {
        write_batch(conn, nonces, jobs, ops).await
    };
    metrics::histogram!(crate::telemetry::BATCH_ROWS).record(ops.len() as f64);
    metrics::histogram!(crate::telemetry::COMMIT_SECONDS).record(started.elapsed().as_secs_f64());
    tracing::trace!(
        ops = ops.len(),
        jobs = job_count,
        took_us = started.elapsed().as_micros() as u64,
        "group commit"
    );
    let mut failure = None;
    let mut results = match outcome {
        Ok(r) => r.into_iter(),
        Err(e) => {
            tracing::error!(error = %e, "group commit failed; its callers get an internal error");
            failure = Some(e.to_string());
            Vec::new().into_iter()
        }
    };
    let mut job_replies = Vec::new();
    let mut flush_replies = Vec::new();
    for op in ops.drain(..) {
        match op {
            WriteOp::NoncesPending => {}
            WriteOp::Job(_, reply) => {
                let r = results.next().ok_or_else(|| {
                    format!(
                        "the batch was rolled back: {}",
                        failure.as_deref().unwrap_or("unknown error")
                    )
                });
                job_replies.push((reply, r));
            }
            WriteOp::Flush(reply) => flush_replies.push(reply),
        }
    }
    if job_replies.is_empty() && flush_replies.is_empty() {
        return;
    }
    // Callers hear back only once the commit is on disk; meanwhile the writer moves on.
    durability.after_sync(Box::new(move |durable| {
        for (reply, r) in job_replies {
            let r = if durable {
                r
            } else {
                Err("the commit could not be made durable (fsync failed)".to_string())
            };
            let _ = reply.send(r);
        }
        for reply in flush_replies {
            let _ = reply.send(());
        }
    }));
}

/// A JSON array of strings, for `json_each` filters.
fn json_strings(items: &[String]) -> String {
    Json::Array(items.iter().map(|s| Json::str(s.as_str())).collect()).to_canonical()
}

/// Rows for the batch statements (enqueue, complete, heartbeat, release): a JSON array
/// of positional arrays, which the SQL reads with `value ->> N` from `json_each`.
/// Positional, because SQLite re-parses `value` for every `->>` and indexing beats a key
/// search; written straight into one string, because this runs once per job.
struct Rows {
    json: String,
    count: usize,
    fields: usize,
}

impl Rows {
    fn new() -> Rows {
        Rows {
            json: String::from("["),
            count: 0,
            fields: 0,
        }
    }

    fn row(&mut self) -> &mut Rows {
        if self.count > 0 {
            self.json.push_str("],");
        }
        self.json.push('[');
        self.count += 1;
        self.fields = 0;
        self
    }

    fn sep(&mut self) {
        if self.fields > 0 {
            self.json.push(',');
        }
        self.fields += 1;
    }

    fn str(&mut self, v: &str) -> &mut Rows {
        self.sep();
        crate::json::write_str(v, &mut self.json);
        self
    }

    fn opt_str(&mut self, v: Option<&str>) -> &mut Rows {
        match v {
            Some(v) => self.str(v),
            None => {
                self.sep();
                self.json.push_str("null");
                self
            }
        }
    }

    fn int(&mut self, v: i64) -> &mut Rows {
        use std::fmt::Write;
        self.sep();
        let _ = write!(self.json, "{v}");
        self
    }

    fn opt_int(&mut self, v: Option<i64>) -> &mut Rows {
        match v {
            Some(v) => self.int(v),
            None => {
                self.sep();
                self.json.push_str("null");
                self
            }
        }
    }

    fn finish(mut self) -> String {
        if self.count > 0 {
            self.json.push(']');
        }
        self.json.push(']');
        self.json
    }
}

/// `[id, client, tool, args, max_attempts, created_at, idempotency_key, def, on_crash,
/// capped, input_responses]` (migration 0006).
fn push_job(rows: &mut Rows, j: &NewJob) {
    rows.row()
        .str(&j.id.0)
        .str(&j.client_id.0)
        .str(&j.tool)
        .str(&j.args)
        .int(i64::from(j.max_attempts))
        .int(j.created_at)
        .opt_str(j.idempotency_key.as_deref())
        .str(&j.def)
        .int(j.on_crash.code())
        .int(i64::from(j.capped))
        .opt_str(j.input_responses.as_deref());
}

/// Nonce records packed for one `nonce_batches` row: 16-byte digest + big-endian i64 expiry each.
#[derive(Default)]
struct NoncePack {
    bytes: Vec<u8>,
    max_expiry: i64,
}

const NONCE_RECORD_LEN: usize = 24;

impl NoncePack {
    fn push(&mut self, n: &NonceRecord) {
        self.bytes.extend_from_slice(&n.key.0);
        self.bytes.extend_from_slice(&n.expires_ms.to_be_bytes());
        self.max_expiry = self.max_expiry.max(n.expires_ms);
    }

    fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn unpack(bytes: &[u8]) -> Result<Vec<NonceRecord>, StoreError> {
        if !bytes.len().is_multiple_of(NONCE_RECORD_LEN) {
            return Err(StoreError::Corrupt(
                "nonce batch length is not a multiple of 24".into(),
            ));
        }
        Ok(bytes
            .chunks_exact(NONCE_RECORD_LEN)
            .map(|c| {
                let mut key = [0u8; 16];
                key.copy_from_slice(&c[..16]);
                let mut exp = [0u8; 8];
                exp.copy_from_slice(&c[16..]);
                NonceRecord {
                    key: NonceKey(key),
                    expires_ms: i64::from_be_bytes(exp),
                }
            })
            .collect())
    }
}

/// Writes a batch. Returns one `Enqueued` per job op, in order.
///
/// The common case (no idempotency keys) is one statement, one round trip: an insert into
/// the `enqueue_batch` view, whose trigger stores nonces and jobs atomically. A batch with
/// idempotency keys needs to know which inserts collided, so it takes the slower path: one
/// `BEGIN IMMEDIATE` transaction with `ON CONFLICT DO NOTHING RETURNING id`.
///
/// (A multi-statement string would also save round trips, but when one of its statements
/// failed, sqlx-sqlite 0.8.6's worker thread panicked and every later write hung.)
async fn write_batch(
    conn: &mut SqliteConnection,
    nonces: NoncePack,
    jobs: Rows,
    ops: &[WriteOp],
) -> Result<Vec<Enqueued>, sqlx::Error> {
    let keyed = ops
        .iter()
        .any(|op| matches!(op, WriteOp::Job(j, _) if j.idempotency_key.is_some()));
    if !keyed {
        let entries = (!nonces.is_empty()).then_some(nonces.bytes);
        sqlx::query(sql::ENQUEUE_BATCH)
            .bind(nonces.max_expiry)
            .bind(entries)
            .bind(jobs.finish())
            .execute(&mut *conn)
            .await?;
        return Ok(ops
            .iter()
            .filter_map(|op| match op {
                WriteOp::Job(j, _) => Some(Enqueued::Created(j.id.clone())),
                _ => None,
            })
            .collect());
    }
    write_batch_keyed(conn, nonces, jobs, ops).await
}

async fn write_batch_keyed(
    conn: &mut SqliteConnection,
    nonces: NoncePack,
    jobs: Rows,
    ops: &[WriteOp],
) -> Result<Vec<Enqueued>, sqlx::Error> {
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    if !nonces.is_empty() {
        sqlx::query(sql::INSERT_NONCE_BATCH)
            .bind(nonces.max_expiry)
            .bind(nonces.bytes)
            .execute(&mut *tx)
            .await?;
    }
    let mut out = Vec::new();
    if jobs.count > 0 {
        let inserted: std::collections::HashSet<String> = sqlx::query(sql::INSERT_JOBS)
            .bind(jobs.finish())
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .map(|r| r.get::<String, _>(0))
            .collect();
        for op in ops {
            let WriteOp::Job(j, _) = op else { continue };
            if inserted.contains(&j.id.0) {
                out.push(Enqueued::Created(j.id.clone()));
                continue;
            }
            // Not inserted: its idempotency key already names a job (maybe one from this
            // very batch).
            let key = j.idempotency_key.as_deref().unwrap_or_default();
            let existing: Option<String> = sqlx::query_scalar(sql::FIND_IDEMPOTENT)
                .bind(&j.client_id.0)
                .bind(key)
                .fetch_optional(&mut *tx)
                .await?;
            match existing {
                Some(id) => out.push(Enqueued::Existing(JobId(id))),
                None => {
                    return Err(sqlx::Error::Protocol(
                        "job insert conflicted on its id".into(),
                    ))
                }
            }
        }
    }
    tx.commit().await?;
    Ok(out)
}

/// The rows of `get_jobs.sql`, keyed by job id.
fn records_from_json(text: &str) -> Result<HashMap<String, JobRecord>, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("group read: {what}"));
    let Json::Array(rows) =
        crate::json::parse(text.as_bytes()).map_err(|e| corrupt(&e.to_string()))?
    else {
        return Err(corrupt("not an array"));
    };
    let mut out = HashMap::with_capacity(rows.len());
    for row in rows {
        let Json::Array(cols) = row else {
            return Err(corrupt("a row is not an array"));
        };
        let [id, client_id, tool, args, state, attempt, max_attempts, run_at, lease_owner, lease_expires_at, fence, cancel_requested, progress, result, errors, idempotency_key, created_at, started_at, finished_at, def, on_crash, input_requests, input_responses, request_state]: [Json; 24] =
            cols.try_into().map_err(|_| corrupt("a row does not have 24 columns"))?;
        let text = |v: Json, name: &str| match v {
            Json::Str(s) => Ok(s),
            _ => Err(corrupt(&format!("{name} is not text"))),
        };
        let int = |v: Json, name: &str| match v {
            Json::Int(i) => Ok(i),
            _ => Err(corrupt(&format!("{name} is not an integer"))),
        };
        let opt_text = |v: Json, name: &str| match v {
            Json::Null => Ok(None),
            v => text(v, name).map(Some),
        };
        let opt_int = |v: Json, name: &str| match v {
            Json::Null => Ok(None),
            v => int(v, name).map(Some),
        };
        let state = text(state, "state")?;
        let on_crash = int(on_crash, "on_crash")?;
        let rec = JobRecord {
            id: JobId(text(id, "id")?),
            client_id: ClientId(text(client_id, "client_id")?),
            tool: text(tool, "tool")?,
            args: text(args, "args")?,
            state: JobState::parse(&state).ok_or_else(|| corrupt(&format!("state {state:?}")))?,
            attempt: int(attempt, "attempt")? as u32,
            max_attempts: int(max_attempts, "max_attempts")? as u32,
            run_at: int(run_at, "run_at")?,
            lease_owner: opt_text(lease_owner, "lease_owner")?,
            lease_expires_at: opt_int(lease_expires_at, "lease_expires_at")?,
            fence: int(fence, "fence")?,
            cancel_requested: int(cancel_requested, "cancel_requested")? != 0,
            progress: opt_text(progress, "progress")?,
            result: opt_text(result, "result")?,
            errors: text(errors, "errors")?,
            idempotency_key: opt_text(idempotency_key, "idempotency_key")?,
            created_at: int(created_at, "created_at")?,
            started_at: opt_int(started_at, "started_at")?,
            finished_at: opt_int(finished_at, "finished_at")?,
            def: text(def, "def")?,
            on_crash: CrashPolicy::from_code(on_crash)
                .ok_or_else(|| corrupt(&format!("on_crash {on_crash}")))?,
            input_requests: opt_text(input_requests, "input_requests")?,
            input_responses: opt_text(input_responses, "input_responses")?,
            request_state: opt_text(request_state, "request_state")?,
        };
        out.insert(rec.id.0.clone(), rec);
    }
    Ok(out)
}

/// One claimed job from claim.sql's `json_array(id, client_id, tool, args, attempt,
/// max_attempts, fence, run_at, input_responses, request_state)`.
fn claimed_from_json(text: &str) -> Result<ClaimedJob, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("claimed job: {what}"));
    let Json::Array(cols) =
        crate::json::parse(text.as_bytes()).map_err(|e| corrupt(&e.to_string()))?
    else {
        return Err(corrupt("not an array"));
    };
    let [Json::Str(id), Json::Str(client_id), Json::Str(tool), Json::Str(args), Json::Int(attempt), Json::Int(max_attempts), Json::Int(fence), Json::Int(due_at), input_responses, request_state]: [Json; 10] =
        cols.try_into().map_err(|_| corrupt("not 10 columns"))?
    else {
        return Err(corrupt("a column has the wrong type"));
    };
    let opt_text = |v: Json, name: &str| match v {
        Json::Null => Ok(None),
        Json::Str(s) => Ok(Some(s)),
        _ => Err(corrupt(&format!("{name} is not text"))),
    };
    let count = |v: i64, name: &str| u32::try_from(v).map_err(|_| corrupt(&format!("{name} {v}")));
    Ok(ClaimedJob {
        id: JobId(id),
        client_id: ClientId(client_id),
        tool,
        args,
        attempt: count(attempt, "attempt")?,
        max_attempts: count(max_attempts, "max_attempts")?,
        fence,
        due_at,
        input_responses: opt_text(input_responses, "input_responses")?,
        request_state: opt_text(request_state, "request_state")?,
    })
}

/// `[id, fence, state, result, error, run_at]` per completion (complete.sql), and
/// `[id, fence, input_requests, request_state]` per attempt that asked (complete_ask.sql).
fn completions_json(done: &[Completion]) -> (String, Option<String>) {
    let mut rows = Rows::new();
    let mut asks = Rows::new();
    let mut asked = false;
    for c in done {
        let (state, result, error, run_at) = match &c.outcome {
            Outcome::Succeeded { result } => ("succeeded", Some(result.as_str()), None, None),
            Outcome::Retry { run_at, error } => {
                ("queued", None, Some(error.as_str()), Some(*run_at))
            }
            Outcome::Failed { error } => ("failed", None, Some(error.as_str()), None),
            Outcome::Cancelled { error } => ("cancelled", None, Some(error.as_str()), None),
            Outcome::InDoubt { error } => ("in_doubt", None, Some(error.as_str()), None),
            Outcome::AwaitInput { requests, state } => {
                asks.row()
                    .str(&c.id.0)
                    .int(c.fence)
                    .str(requests)
                    .opt_str(state.as_deref());
                asked = true;
                continue;
            }
        };
        rows.row()
            .str(&c.id.0)
            .int(c.fence)
            .str(state)
            .opt_str(result)
            .opt_str(error)
            .opt_int(run_at);
    }
    (rows.finish(), asked.then(|| asks.finish()))
}

impl SqliteStore {
    async fn apply_completions(
        &self,
        done: Vec<Completion>,
        now: i64,
        only_expired: bool,
    ) -> Result<Vec<JobId>, StoreError> {
        if done.is_empty() {
            return Ok(Vec::new());
        }
        let (finished, asked) = completions_json(&done);
        let mut conn = self.inner.writer.lock().await;
        let mut rows = sqlx::query(sql::COMPLETE)
            .bind(finished)
            .bind(now)
            .bind(only_expired as i64)
            .fetch_all(&mut *conn)
            .await?;
        if let Some(asked) = asked {
            rows.extend(
                sqlx::query(sql::COMPLETE_ASK)
                    .bind(asked)
                    .bind(now)
                    .fetch_all(&mut *conn)
                    .await?,
            );
        }
        drop(conn);
        // A finished job's outcome is what polls report: make it durable before the worker
        // forgets the job (a completion lost to a power cut would otherwise be rescued as
        // a failed attempt).
        self.inner.durability.wait().await?;
        Ok(rows.iter().map(|r| JobId(r.get::<String, _>(0))).collect())
    }
}

impl Store for SqliteStore {
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(SqliteStore::close(self))
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            if self
                .inner
                .durability
                .failed
                .load(std::sync::atomic::Ordering::SeqCst)
            {
                return Err(StoreError::NotDurable);
            }
            sqlx::query("SELECT 1").execute(&self.inner.read).await?;
            Ok(())
        })
    }

    fn record_nonce(&self, nonce: NonceRecord) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            if self.inner.tx.is_closed() {
                return Err(StoreError::Closed);
            }
            let first = {
                let mut pending = self.inner.nonces.lock().unwrap_or_else(|p| p.into_inner());
                pending.push(nonce);
                pending.len() == 1
            };
            if first {
                self.inner
                    .tx
                    .send(WriteOp::NoncesPending)
                    .await
                    .map_err(|_| StoreError::Closed)?;
            }
            Ok(())
        })
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let (tx, rx) = oneshot::channel();
            self.inner
                .tx
                .send(WriteOp::Flush(tx))
                .await
                .map_err(|_| StoreError::Closed)?;
            rx.await.map_err(|_| StoreError::Closed)
        })
    }

    fn live_nonces(&self, now: i64) -> BoxFuture<'_, Result<Vec<NonceRecord>, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query(sql::LIVE_NONCES)
                .bind(now)
                .fetch_all(&self.inner.read)
                .await?;
            let mut live = Vec::new();
            for r in &rows {
                let entries: Vec<u8> = r.try_get(0)?;
                live.extend(
                    NoncePack::unpack(&entries)?
                        .into_iter()
                        .filter(|n| n.expires_ms >= now),
                );
            }
            Ok(live)
        })
    }

    fn enqueue(&self, job: NewJob) -> BoxFuture<'_, Result<Enqueued, StoreError>> {
        Box::pin(async move {
            let (tx, rx) = oneshot::channel();
            self.inner
                .tx
                .send(WriteOp::Job(Box::new(job), tx))
                .await
                .map_err(|_| StoreError::Closed)?;
            match rx.await {
                Ok(Ok(e)) => Ok(e),
                Ok(Err(msg)) => Err(StoreError::Commit(msg)),
                Err(_) => Err(StoreError::Closed),
            }
        })
    }

    fn get_job<'a>(
        &'a self,
        client: &'a ClientId,
        id: &'a JobId,
    ) -> BoxFuture<'a, Result<Option<JobRecord>, StoreError>> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            let lookup = Lookup {
                id: id.clone(),
                client: client.clone(),
                reply,
            };
            self.inner
                .lookups
                .send(lookup)
                .await
                .map_err(|_| StoreError::Closed)?;
            match answer.await {
                Ok(Ok(rec)) => Ok(rec),
                Ok(Err(msg)) => Err(StoreError::Read(msg)),
                Err(_) => Err(StoreError::Closed),
            }
        })
    }

    fn cancel<'a>(
        &'a self,
        client: &'a ClientId,
        id: &'a JobId,
        now: i64,
    ) -> BoxFuture<'a, Result<CancelOutcome, StoreError>> {
        Box::pin(async move {
            let mut conn = self.inner.writer.lock().await;
            let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
            let q = sqlx::query(sql::CANCEL_QUEUED)
                .bind(&id.0)
                .bind(&client.0)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
            let outcome = if q.is_some() {
                CancelOutcome::Cancelled
            } else if sqlx::query(sql::CANCEL_RUNNING)
                .bind(&id.0)
                .bind(&client.0)
                .fetch_optional(&mut *tx)
                .await?
                .is_some()
            {
                CancelOutcome::Requested
            } else {
                let state: Option<String> = sqlx::query_scalar(sql::JOB_STATE)
                    .bind(&id.0)
                    .bind(&client.0)
                    .fetch_optional(&mut *tx)
                    .await?;
                match state.as_deref().and_then(JobState::parse) {
                    Some(s) => CancelOutcome::AlreadyFinished(s),
                    None => CancelOutcome::NotFound,
                }
            };
            tx.commit().await?;
            drop(conn);
            // A cancel is acknowledged to the client: make it durable first.
            if outcome == CancelOutcome::Cancelled || outcome == CancelOutcome::Requested {
                self.inner.durability.wait().await?;
            }
            Ok(outcome)
        })
    }

    fn answer_input<'a>(
        &'a self,
        client: &'a ClientId,
        id: &'a JobId,
        answers: &'a serde_json::Map<String, serde_json::Value>,
        now: i64,
    ) -> BoxFuture<'a, Result<AnswerOutcome, StoreError>> {
        Box::pin(async move {
            let mut conn = self.inner.writer.lock().await;
            let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
            let row: Option<(String, Option<String>, Option<String>)> =
                sqlx::query_as(sql::ANSWER_READ)
                    .bind(&id.0)
                    .bind(&client.0)
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some((state, requests, so_far)) = row else {
                return Ok(AnswerOutcome::NotFound);
            };
            let state = JobState::parse(&state)
                .ok_or_else(|| StoreError::Corrupt(format!("state {state:?}")))?;
            let (left, so_far, outcome) =
                match super::plan_answers(state, requests.as_deref(), so_far.as_deref(), answers) {
                    AnswerPlan::Done(outcome) => return Ok(outcome),
                    AnswerPlan::Write {
                        left,
                        so_far,
                        outcome,
                    } => (left, so_far, outcome),
                };
            // The writer lock and BEGIN IMMEDIATE make the read and this write one step;
            // the guard on the requests read keeps it right without them too.
            let written = sqlx::query(sql::ANSWER_WRITE)
                .bind(&id.0)
                .bind(&requests)
                .bind(left)
                .bind(&so_far)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
            tx.commit().await?;
            drop(conn);
            if written.is_none() {
                return Err(StoreError::Read(
                    "the job changed while its answers were written".into(),
                ));
            }
            // Acknowledged to the client: durable first.
            self.inner.durability.wait().await?;
            Ok(outcome)
        })
    }

    fn count_queued<'a>(
        &'a self,
        client: &'a str,
        limit: u64,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            let n: i64 = sqlx::query_scalar(sql::COUNT_QUEUED)
                .bind(client)
                .bind(limit.min(i64::MAX as u64) as i64)
                .fetch_one(&self.inner.read)
                .await?;
            Ok(n as u64)
        })
    }

    fn lease_holders(&self) -> BoxFuture<'_, Result<Vec<(String, i64)>, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query(sql::LEASE_HOLDERS)
                .fetch_all(&self.inner.read)
                .await?;
            rows.iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect()
        })
    }

    fn queue_stats(&self, now: i64) -> BoxFuture<'_, Result<QueueStats, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query(sql::STATS)
                .bind(now)
                .fetch_all(&self.inner.read)
                .await?;
            let mut out = QueueStats::default();
            for r in &rows {
                let state: String = r.try_get(0)?;
                let state = JobState::parse(&state)
                    .ok_or_else(|| StoreError::Corrupt(format!("job state {state:?}")))?;
                let n: i64 = r.try_get(2)?;
                out.active.push((state, r.try_get(1)?, n as u64));
                if let Some(at) = r.try_get::<Option<i64>, _>(3)? {
                    out.oldest_due_at = Some(out.oldest_due_at.map_or(at, |o: i64| o.min(at)));
                }
            }
            Ok(out)
        })
    }

    fn has_due_jobs(&self, now: i64) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            Ok(sqlx::query_scalar::<_, i64>(sql::HAS_DUE)
                .bind(now)
                .fetch_one(&self.inner.read)
                .await?
                != 0)
        })
    }

    fn claim<'a>(
        &'a self,
        worker: &'a str,
        limit: usize,
        now: i64,
        lease_ms: i64,
        filter: &'a ClaimFilter,
    ) -> BoxFuture<'a, Result<Vec<ClaimedJob>, StoreError>> {
        Box::pin(async move {
            // Tools without a limit: one statement.
            let uncapped = sqlx::query(sql::CLAIM)
                .bind(worker)
                .bind(now)
                .bind(limit as i64)
                .bind(lease_ms)
                .bind(json_strings(&filter.defs));
            let mut conn = self.inner.writer.lock().await;
            let rows = if filter.capped.is_empty() {
                // The common case stays one autocommit statement.
                uncapped.fetch_all(&mut *conn).await?
            } else {
                // Counting a capped tool's running jobs and claiming up to its limit must
                // see no other process's claim in between: one write transaction.
                let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
                let mut rows = if filter.defs.is_empty() {
                    Vec::new()
                } else {
                    uncapped.fetch_all(&mut *tx).await?
                };
                for c in &filter.capped {
                    let left = limit.saturating_sub(rows.len());
                    if left == 0 {
                        break;
                    }
                    rows.extend(
                        sqlx::query(sql::CLAIM_TOOL)
                            .bind(worker)
                            .bind(now)
                            .bind(i64::from(c.limit))
                            .bind(lease_ms)
                            .bind(&c.tool)
                            .bind(json_strings(&c.defs))
                            .bind(left as i64)
                            .fetch_all(&mut *tx)
                            .await?,
                    );
                }
                tx.commit().await?;
                rows
            };
            drop(conn);
            rows.iter()
                .map(|r| claimed_from_json(r.try_get::<&str, _>(0)?))
                .collect()
        })
    }

    fn unknown_definitions<'a>(
        &'a self,
        known: &'a [String],
        now: i64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<(String, String)>, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query(sql::UNKNOWN_DEFINITIONS)
                .bind(json_strings(known))
                .bind(now)
                .bind(limit as i64)
                .fetch_all(&self.inner.read)
                .await?;
            rows.iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect()
        })
    }

    fn resolve_in_doubt<'a>(
        &'a self,
        id: &'a JobId,
        resolution: Resolution,
        now: i64,
        by: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let (state, entry) = match resolution {
                Resolution::Retry => ("queued", format!("in_doubt resolved: retried by {by}")),
                Resolution::Fail => ("failed", format!("in_doubt resolved: failed by {by}")),
            };
            let mut conn = self.inner.writer.lock().await;
            let row = sqlx::query(sql::RESOLVE_IN_DOUBT)
                .bind(&id.0)
                .bind(state)
                .bind(now)
                .bind(entry)
                .fetch_optional(&mut *conn)
                .await?;
            drop(conn);
            if row.is_some() {
                self.inner.durability.wait().await?;
            }
            Ok(row.is_some())
        })
    }

    fn heartbeat(
        &self,
        beats: Vec<Heartbeat>,
        now: i64,
        lease_ms: i64,
    ) -> BoxFuture<'_, Result<Vec<HeartbeatAck>, StoreError>> {
        Box::pin(async move {
            if beats.is_empty() {
                return Ok(Vec::new());
            }
            // [id, fence, progress] per running job (heartbeat.sql).
            let mut rows = Rows::new();
            for b in &beats {
                rows.row()
                    .str(&b.id.0)
                    .int(b.fence)
                    .opt_str(b.progress.as_deref());
            }
            let mut conn = self.inner.writer.lock().await;
            let rows = sqlx::query(sql::HEARTBEAT)
                .bind(rows.finish())
                .bind(now + lease_ms)
                .fetch_all(&mut *conn)
                .await?;
            drop(conn);
            rows.iter()
                .map(|r| {
                    Ok(HeartbeatAck {
                        id: JobId(r.try_get(0)?),
                        cancel_requested: r.try_get::<i64, _>(1)? != 0,
                    })
                })
                .collect()
        })
    }

    fn complete(
        &self,
        done: Vec<Completion>,
        now: i64,
    ) -> BoxFuture<'_, Result<Vec<JobId>, StoreError>> {
        Box::pin(self.apply_completions(done, now, false))
    }

    fn release(
        &self,
        jobs: Vec<(JobId, i64)>,
        now: i64,
    ) -> BoxFuture<'_, Result<usize, StoreError>> {
        Box::pin(async move {
            if jobs.is_empty() {
                return Ok(0);
            }
            // [id, fence] per job (release.sql).
            let mut rows = Rows::new();
            for (id, fence) in &jobs {
                rows.row().str(&id.0).int(*fence);
            }
            let mut conn = self.inner.writer.lock().await;
            let r = sqlx::query(sql::RELEASE)
                .bind(rows.finish())
                .bind(now)
                .execute(&mut *conn)
                .await?;
            Ok(r.rows_affected() as usize)
        })
    }

    fn expired_leases(
        &self,
        now: i64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<ExpiredLease>, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query(sql::EXPIRED_LEASES)
                .bind(now)
                .bind(limit as i64)
                .fetch_all(&self.inner.read)
                .await?;
            rows.iter()
                .map(|r| {
                    let on_crash: i64 = r.try_get(4)?;
                    Ok(ExpiredLease {
                        id: JobId(r.try_get(0)?),
                        fence: r.try_get(1)?,
                        attempt: r.try_get::<i64, _>(2)? as u32,
                        max_attempts: r.try_get::<i64, _>(3)? as u32,
                        on_crash: CrashPolicy::from_code(on_crash)
                            .ok_or_else(|| StoreError::Corrupt(format!("on_crash {on_crash}")))?,
                    })
                })
                .collect()
        })
    }

    fn rescue(
        &self,
        done: Vec<Completion>,
        now: i64,
    ) -> BoxFuture<'_, Result<Vec<JobId>, StoreError>> {
        Box::pin(self.apply_completions(done, now, true))
    }

    fn prune(&self, finished_before: i64, now: i64) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let mut conn = self.inner.writer.lock().await;
            let jobs = sqlx::query(sql::PRUNE_JOBS)
                .bind(finished_before)
                .execute(&mut *conn)
                .await?
                .rows_affected();
            sqlx::query(sql::PRUNE_NONCES)
                .bind(now)
                .execute(&mut *conn)
                .await?;
            Ok(jobs)
        })
    }
}

/// Opens the database and applies migrations, for `mcpq migrate`.
pub async fn migrate_only(db: &DatabaseSettings) -> Result<(), StoreError> {
    let mut conn = SqliteConnection::connect_with(&connect_options(db)).await?;
    migrate(&mut conn).await?;
    conn.close().await?;
    Ok(())
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

impl SqliteStore {
    /// Jobs not yet finished (queued or running); for `mcpq bench drain`.
    pub async fn any_unfinished(&self) -> Result<bool, StoreError> {
        // EXISTS over the partial indexes: cheap at any backlog, unlike count(*).
        let q = "SELECT EXISTS (SELECT 1 FROM jobs WHERE state = 'queued') \
                 OR EXISTS (SELECT 1 FROM jobs WHERE state = 'running')";
        Ok(sqlx::query_scalar::<_, i64>(q)
            .fetch_one(&self.inner.read)
            .await?
            != 0)
    }

    /// How many of the jobs with `seq` in `first..=last` have succeeded (a rowid range scan).
    pub async fn succeeded_in_range(&self, first: i64, last: i64) -> Result<i64, StoreError> {
        let q = "SELECT count(*) FROM jobs WHERE seq BETWEEN ?1 AND ?2 AND state = 'succeeded'";
        Ok(sqlx::query_scalar(q)
            .bind(first)
            .bind(last)
            .fetch_one(&self.inner.read)
            .await?)
    }

    /// Checkpoints the whole WAL into the database file and truncates it (benchmark set-up,
    /// so a fill does not leave checkpoint work to the measured run).
    pub async fn checkpoint_truncate(&self) -> Result<(), StoreError> {
        let mut conn = self.inner.writer.lock().await;
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// The sequence number of the queue's head (the jobs_queued index's first entry).
    pub async fn queue_head_seq(&self) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT seq FROM jobs WHERE state = 'queued' ORDER BY run_at, seq LIMIT 1",
        )
        .fetch_optional(&self.inner.read)
        .await?)
    }

    /// The smallest job sequence number (benchmarks use it to follow the first jobs).
    pub async fn first_seq(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar::<_, Option<i64>>("SELECT min(seq) FROM jobs")
                .fetch_one(&self.inner.read)
                .await?
                .unwrap_or(0),
        )
    }
}

/// Inserts `n` no-op jobs directly (benchmark set-up only; bypasses the wire and nonces).
pub async fn bench_fill_noop(store: &SqliteStore, n: usize) -> Result<(), StoreError> {
    let client = "bench";
    let now = crate::clock::Clock::now_ms(&crate::clock::SystemClock);
    let mut conn = store.inner.writer.lock().await;
    let mut left = n;
    while left > 0 {
        let k = left.min(10_000);
        let mut rows = Rows::new();
        for _ in 0..k {
            rows.row()
                .str(&JobId::generate().0)
                .str(client)
                .str("noop")
                .str("{}")
                .int(3)
                .int(now)
                .opt_str(None)
                .str(crate::tools::BUILTIN_DEFINITION)
                .int(CrashPolicy::Retry.code())
                .int(0);
        }
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(sql::INSERT_JOBS)
            .bind(rows.finish())
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        left -= k;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{claimed_from_json, records_from_json, Rows};
    use crate::store::StoreError;

    #[test]
    fn group_read_rows_decode_and_reject_anything_malformed() {
        let row = r#"["0193b3c4-5d6e-7f80-9a1b-000000000001","alice","start_long_task","{}","running",1,3,10,"w1",40,2,0,"{\"p\":1}",null,"[]",null,5,6,null,"1",2,null,null,"s"]"#;
        let found = records_from_json(&format!("[{row}]")).unwrap();
        let r = &found["0193b3c4-5d6e-7f80-9a1b-000000000001"];
        assert_eq!(r.client_id.0, "alice");
        assert_eq!(r.lease_owner.as_deref(), Some("w1"));
        assert_eq!(r.progress.as_deref(), Some(r#"{"p":1}"#));
        assert_eq!(r.on_crash, crate::jobs::CrashPolicy::Hold);
        assert_eq!(r.request_state.as_deref(), Some("s"));
        assert_eq!(
            (r.attempt, r.fence, r.lease_expires_at, r.finished_at),
            (1, 2, Some(40), None)
        );
        assert!(records_from_json("[]").unwrap().is_empty());
        for bad in [
            "{}".to_string(),
            "[1]".to_string(),
            r#"[["too","short"]]"#.to_string(),
            format!("[{}]", row.replace(r#""running""#, r#""exploded""#)),
            format!("[{}]", row.replace(",1,3,", r#","1",3,"#)),
            format!("[{}]", row.replace(r#""1",2,"#, r#""1",7,"#)),
            format!("[{}]", row.replace(r#","s"]"#, ",5]")),
        ] {
            assert!(
                matches!(records_from_json(&bad), Err(StoreError::Corrupt(_))),
                "{bad} must be rejected"
            );
        }
    }

    #[test]
    fn claimed_rows_decode_and_reject_anything_malformed() {
        let row = r#"["0193b3c4-5d6e-7f80-9a1b-000000000001","alice","start_long_task","{\"seconds\":1}",2,3,7,1700000000000,"{\"a\":{}}",null]"#;
        let job = claimed_from_json(row).unwrap();
        assert_eq!(job.id.0, "0193b3c4-5d6e-7f80-9a1b-000000000001");
        assert_eq!(job.tool, "start_long_task");
        assert_eq!(job.client_id.0, "alice");
        assert_eq!(job.args, r#"{"seconds":1}"#);
        assert_eq!((job.attempt, job.max_attempts, job.fence), (2, 3, 7));
        assert_eq!(job.due_at, 1_700_000_000_000);
        assert_eq!(job.input_responses.as_deref(), Some(r#"{"a":{}}"#));
        assert_eq!(job.request_state, None);
        for bad in [
            "{}".to_string(),
            "not json".to_string(),
            r#"["too","short"]"#.to_string(),
            row.replace(",2,3,", r#","2",3,"#),
            row.replace(",2,3,", ",-1,3,"),
            row.replace(r#""start_long_task""#, "null"),
            row.replace(",null]", ",5]"),
        ] {
            assert!(
                matches!(claimed_from_json(&bad), Err(StoreError::Corrupt(_))),
                "{bad} must be rejected"
            );
        }
    }

    #[test]
    fn rows_are_a_json_array_of_positional_arrays() {
        assert_eq!(Rows::new().finish(), "[]");
        let mut rows = Rows::new();
        rows.row()
            .str("a\"b\\é")
            .int(-3)
            .opt_str(None)
            .opt_int(Some(7));
        rows.row().str("").int(0).opt_str(Some("x")).opt_int(None);
        let text = rows.finish();
        assert_eq!(text, r#"[["a\"b\\\u00e9",-3,null,7],["",0,"x",null]]"#);
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed[0][0], "a\"b\\é");
    }
}
