//! The PostgreSQL store (sqlx): one database shared by any number of daemons and workers on
//! any number of machines.
//!
//! Design (docs/ARCHITECTURE.md, BENCHMARKS.md):
//! - enqueues and nonces are group-committed: `postgres.commit_connections` tasks, each with a
//!   connection of its own, take whatever is waiting and write it with one statement
//!   (`enqueue.sql`: a multi-row insert of nonces, then of jobs, from arrays), so a batch
//!   costs one round trip and one commit; a caller hears back only after that commit;
//! - replay protection spans daemons: every admitted nonce, of job calls and sync calls alike,
//!   is inserted into `nonces` (primary key) before the call is answered, and the insert that
//!   commits first wins; a job whose nonce lost is not created;
//! - claims are one `UPDATE … FROM (SELECT … FOR UPDATE SKIP LOCKED)` statement over a partial
//!   index of queued rows; a tool with a concurrency limit is claimed under its advisory lock;
//! - batch writes (heartbeats, completions, releases) pass one array per column (`unnest`);
//! - polls are group reads: waiting lookups are answered by one `id = ANY($1)` statement;
//! - after a batch with jobs commits, one task sends `NOTIFY mcpq_jobs` (at most every few
//!   milliseconds), waking idle workers that `LISTEN`: a hint only, workers poll as well;
//! - retention deletes in bounded batches.
//!
//! It must not decide job transitions (see `jobs`) or know about HTTP.

mod admin;
pub mod bench;
mod copy;

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions, PgRow, PgSslMode};
use sqlx::{ConnectOptions, Connection, PgConnection, Row};
use tokio::sync::{mpsc, oneshot, Mutex, Notify};

use super::*;
use crate::auth::NonceKey;
use crate::config::PostgresSettings;
use crate::jobs::CrashPolicy;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The channel `enqueue.sql` notifies after inserting jobs.
const CHANNEL: &str = "mcpq_jobs";
const MAX_BATCH: usize = 2048;

mod sql {
    pub const ENQUEUE: &str = include_str!("../sql/postgres/enqueue.sql");
    pub const FIND_IDEMPOTENT: &str = include_str!("../sql/postgres/find_idempotent.sql");
    pub const GET_JOB: &str = include_str!("../sql/postgres/get_job.sql");
    pub const GET_JOBS: &str = include_str!("../sql/postgres/get_jobs.sql");
    pub const CANCEL: &str = include_str!("../sql/postgres/cancel.sql");
    pub const ANSWER_READ: &str = include_str!("../sql/postgres/answer_read.sql");
    pub const ANSWER_WRITE: &str = include_str!("../sql/postgres/answer_write.sql");
    pub const HAS_DUE: &str = include_str!("../sql/postgres/has_due.sql");
    pub const CLAIM: &str = include_str!("../sql/postgres/claim.sql");
    pub const CLAIM_TOOL: &str = include_str!("../sql/postgres/claim_tool.sql");
    pub const UNKNOWN_DEFINITIONS: &str = include_str!("../sql/postgres/unknown_definitions.sql");
    pub const RESOLVE_IN_DOUBT: &str = include_str!("../sql/postgres/resolve_in_doubt.sql");
    pub const HEARTBEAT: &str = include_str!("../sql/postgres/heartbeat.sql");
    pub const COMPLETE: &str = include_str!("../sql/postgres/complete.sql");
    pub const RELEASE: &str = include_str!("../sql/postgres/release.sql");
    pub const EXPIRED_LEASES: &str = include_str!("../sql/postgres/expired_leases.sql");
    pub const COUNT_QUEUED: &str = include_str!("../sql/postgres/count_queued.sql");
    pub const LEASE_HOLDERS: &str = include_str!("../sql/postgres/lease_holders.sql");
    pub const STATS: &str = include_str!("../sql/postgres/stats.sql");
    pub const LIVE_NONCES: &str = include_str!("../sql/postgres/live_nonces.sql");
    pub const PRUNE_JOBS: &str = include_str!("../sql/postgres/prune_jobs.sql");
    pub const PRUNE_NONCES: &str = include_str!("../sql/postgres/prune_nonces.sql");
    pub const ADMIN_LIST: &str = include_str!("../sql/postgres/admin_list.sql");
    pub const ADMIN_CANCEL: &str = include_str!("../sql/postgres/admin_cancel.sql");
    pub const ADMIN_RETRY: &str = include_str!("../sql/postgres/admin_retry.sql");
    pub const ADMIN_ACTIVITY: &str = include_str!("../sql/postgres/admin_activity.sql");
}

/// A write waiting for the next group commit.
enum CommitOp {
    Job(Box<NewJob>, oneshot::Sender<Result<Enqueued, StoreError>>),
    /// A sync call's nonce and the time of the call: answered `true` if admitted, `false` if
    /// another caller had it.
    Nonce(NonceRecord, i64, oneshot::Sender<Result<bool, StoreError>>),
    Flush(oneshot::Sender<()>),
}

/// One `get_job` waiting for the next group read.
struct Lookup {
    id: JobId,
    client: ClientId,
    reply: oneshot::Sender<Result<Option<JobRecord>, StoreError>>,
}

struct Inner {
    pool: PgPool,
    lookups: mpsc::Sender<Lookup>,
    /// Held by this process's writes to running jobs (heartbeats, completions, releases,
    /// rescues). Two such statements of one process touching overlapping rows in different
    /// orders deadlocked (PostgreSQL breaks that only after `deadlock_timeout`, 1 s): taking
    /// turns costs nothing measurable, as they are batched anyway. Claims take queued rows
    /// with SKIP LOCKED and need no turn.
    writes: Mutex<()>,
    tx: mpsc::Sender<CommitOp>,
    wake: Option<Arc<Notify>>,
    /// Pokes the notifier (`notify_loop`): jobs became due outside a group commit.
    jobs_added: Arc<Notify>,
    prune_batch: i64,
    stop: tokio_util::sync::CancellationToken,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// PostgreSQL implementation of [`Store`]. Cheap to clone.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

/// Connection options from `database.url` and `[postgres]`: TLS, the password file, and the
/// per-session settings every connection of ours runs with.
pub fn connect_options(url: &str, pg: &PostgresSettings) -> Result<PgConnectOptions, StoreError> {
    let mut opts = PgConnectOptions::from_str(url)?.application_name("mcpq");
    if !pg.password_file.is_empty() {
        let path = crate::config::credentials_path(
            std::path::Path::new(&pg.password_file),
            "postgres.password_file",
        )
        .map_err(|e| StoreError::Config(e.to_string()))?;
        let text = std::fs::read_to_string(&path).map_err(|e| {
            StoreError::Config(format!(
                "cannot read postgres.password_file {}: {e}",
                path.display()
            ))
        })?;
        opts = opts.password(text.trim_end_matches(['\n', '\r']));
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
        for _ in 0..pg.commit_connections.max(1) {
            let conn = tokio::time::timeout(timeout, PgConnection::connect_with(&opts))
                .await
                .map_err(|_| StoreError::Config("timed out connecting to PostgreSQL".into()))??;
            tokio::spawn(group_commit(
                conn,
                opts.clone(),
                rx.clone(),
                jobs_added.clone(),
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
        Ok(PgStore {
            inner: Arc::new(Inner {
                lookups,
                pool,
                writes: Mutex::new(()),
                tx,
                wake,
                jobs_added,
                prune_batch: i64::from(pg.prune_batch.max(1)),
                stop,
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

/// Wakes idle workers on each notification. A lost connection is retried: notifications
/// sent meanwhile are lost, which costs only latency (workers also poll).
async fn listen(
    mut listener: PgListener,
    notify: Arc<Notify>,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            n = listener.recv() => match n {
                Ok(_) => notify.notify_waiters(),
                Err(_) if stop.is_cancelled() => return,
                Err(e) => {
                    tracing::warn!(error = %e, "LISTEN connection lost; workers fall back to polling until it is back");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    }
}

/// Tasks answering polls in groups (each one statement per group, on a pooled connection).
const POLL_READERS: usize = 2;
const MAX_READ_BATCH: usize = 512;

/// Answers `get_job` calls in groups: whatever lookups are waiting, with one statement.
/// Polls are the most frequent call of a job's life; one query each made a poll cost a
/// round trip and a pooled connection (BENCHMARKS.md). The tasks end with the store.
async fn group_read(pool: PgPool, rx: Arc<Mutex<mpsc::Receiver<Lookup>>>) {
    let mut batch = Vec::with_capacity(MAX_READ_BATCH);
    loop {
        if !take_batch(&rx, &mut batch, MAX_READ_BATCH).await {
            return;
        }
        let ids: Vec<&str> = batch.iter().map(|l| l.id.0.as_str()).collect();
        let found: Result<HashMap<String, JobRecord>, StoreError> = async {
            let rows = sqlx::query(sql::GET_JOBS)
                .bind(&ids)
                .fetch_all(&pool)
                .await?;
            rows.iter()
                .map(|r| record_from_row(r).map(|rec| (rec.id.0.clone(), rec)))
                .collect()
        }
        .await;
        for l in batch.drain(..) {
            let answer = match &found {
                Ok(found) => Ok(found
                    .get(&l.id.0)
                    .filter(|rec| rec.client_id == l.client)
                    .cloned()),
                Err(e) => Err(StoreError::Read(e.to_string())),
            };
            let _ = l.reply.send(answer);
        }
    }
}

/// Sends `NOTIFY mcpq_jobs` after enqueues commit, at most once per [`NOTIFY_EVERY`]: one
/// notification wakes every listening worker, and each then claims everything due. Kept out
/// of the enqueue statement: a transaction that notifies holds PostgreSQL's notify-queue lock
/// through its commit, which serialized the group commits' WAL flushes.
async fn notify_loop(
    pool: PgPool,
    jobs_added: Arc<Notify>,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = jobs_added.notified() => {}
        }
        if let Err(e) = sqlx::query("SELECT pg_notify($1, '')")
            .bind(CHANNEL)
            .execute(&pool)
            .await
        {
            tracing::debug!(error = %e, "NOTIFY failed (workers poll anyway)");
        }
        tokio::time::sleep(NOTIFY_EVERY).await;
    }
}

const NOTIFY_EVERY: Duration = Duration::from_millis(5);

/// One group committer: takes every waiting write and commits it with one statement. The
/// committers share the queue; while one waits for its commit, the next batch forms and
/// another commits it (PostgreSQL flushes their WAL together).
async fn group_commit(
    mut conn: PgConnection,
    opts: PgConnectOptions,
    rx: Arc<Mutex<mpsc::Receiver<CommitOp>>>,
    jobs_added: Arc<Notify>,
) {
    let mut ops = Vec::with_capacity(MAX_BATCH);
    loop {
        if !take_batch(&rx, &mut ops, MAX_BATCH).await {
            return;
        }
        let started = std::time::Instant::now();
        let n = ops.len();
        let with_jobs = ops.iter().any(|op| matches!(op, CommitOp::Job(..)));
        let failed = commit_batch(&mut conn, &mut ops).await;
        if with_jobs && !failed {
            // A permit is kept if the notifier is busy: the wake-up is never lost, only merged.
            jobs_added.notify_one();
        }
        metrics::histogram!(crate::telemetry::BATCH_ROWS).record(n as f64);
        metrics::histogram!(crate::telemetry::COMMIT_SECONDS)
            .record(started.elapsed().as_secs_f64());
        tracing::trace!(
            ops = n,
            took_us = started.elapsed().as_micros() as u64,
            "group commit"
        );
        if failed {
            // The next batch gets a fresh connection, so a broken one cannot fail every
            // later enqueue.
            match PgConnection::connect_with(&opts).await {
                Ok(fresh) => conn = fresh,
                Err(e) => tracing::warn!(error = %e, "group commit: reconnect failed; will retry"),
            }
        }
    }
}

/// The columns of `enqueue.sql`, one array each.
#[derive(Default)]
struct JobColumns {
    id: Vec<String>,
    client: Vec<String>,
    tool: Vec<String>,
    args: Vec<String>,
    max: Vec<i32>,
    at: Vec<i64>,
    key: Vec<Option<String>>,
    def: Vec<String>,
    crash: Vec<i16>,
    capped: Vec<bool>,
    nonce: Vec<Option<Vec<u8>>>,
    answers: Vec<Option<String>>,
}

/// Writes one batch and answers every op in it; returns true if the statement failed.
async fn commit_batch(conn: &mut PgConnection, ops: &mut Vec<CommitOp>) -> bool {
    // A stored nonce that expired before this instant may be taken over: the earliest call
    // time in the batch, so no caller ever takes over a copy that is live at its own time.
    let now = ops
        .iter()
        .filter_map(|op| match op {
            CommitOp::Job(j, _) if j.nonce.is_some() => Some(j.created_at),
            CommitOp::Nonce(_, at, _) => Some(*at),
            _ => None,
        })
        .min()
        .unwrap_or(i64::MIN);
    // Each nonce once per statement (ON CONFLICT DO UPDATE may touch a row only once); a
    // second copy in the same batch is a replay of the first.
    let mut seen = HashSet::new();
    let mut keys: Vec<Vec<u8>> = Vec::new();
    let mut expiries = Vec::new();
    let mut dup = vec![false; ops.len()];
    let mut cols = JobColumns::default();
    for (i, op) in ops.iter().enumerate() {
        let nonce = match op {
            CommitOp::Job(j, _) => j.nonce.as_ref(),
            CommitOp::Nonce(n, _, _) => Some(n),
            CommitOp::Flush(_) => None,
        };
        if let Some(n) = nonce {
            if seen.insert(n.key.0) {
                keys.push(n.key.0.to_vec());
                expiries.push(n.expires_ms);
            } else {
                dup[i] = true;
            }
        }
        if let CommitOp::Job(j, _) = op {
            if dup[i] {
                continue;
            }
            cols.id.push(j.id.0.clone());
            cols.client.push(j.client_id.0.clone());
            cols.tool.push(j.tool.clone());
            cols.args.push(j.args.clone());
            cols.max
                .push(i32::try_from(j.max_attempts).unwrap_or(i32::MAX));
            cols.at.push(j.created_at);
            cols.key.push(j.idempotency_key.clone());
            cols.def.push(j.def.clone());
            cols.crash.push(j.on_crash.code() as i16);
            cols.capped.push(j.capped);
            cols.nonce.push(j.nonce.as_ref().map(|n| n.key.0.to_vec()));
            cols.answers.push(j.input_responses.clone());
        }
    }
    let outcome = if keys.is_empty() && cols.id.is_empty() {
        Ok((HashSet::new(), HashSet::new(), HashMap::new()))
    } else {
        write_batch(conn, keys, expiries, now, cols, ops, &dup).await
    };
    let failed = outcome.is_err();
    let (admitted, inserted, existing) = match outcome {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(error = %e, "group commit failed; its callers get an internal error");
            let msg = e.to_string();
            for op in ops.drain(..) {
                match op {
                    CommitOp::Job(_, reply) => {
                        let _ = reply.send(Err(StoreError::Commit(msg.clone())));
                    }
                    CommitOp::Nonce(_, _, reply) => {
                        let _ = reply.send(Err(StoreError::Commit(msg.clone())));
                    }
                    CommitOp::Flush(reply) => {
                        let _ = reply.send(());
                    }
                }
            }
            return true;
        }
    };
    for (i, op) in ops.drain(..).enumerate() {
        match op {
            CommitOp::Flush(reply) => {
                let _ = reply.send(());
            }
            CommitOp::Nonce(n, _, reply) => {
                let _ = reply.send(Ok(!dup[i] && admitted.contains(&n.key.0[..])));
            }
            CommitOp::Job(j, reply) => {
                let nonce_ok = match &j.nonce {
                    Some(n) => !dup[i] && admitted.contains(&n.key.0[..]),
                    None => true,
                };
                let r = if !nonce_ok {
                    Err(StoreError::Replayed)
                } else if inserted.contains(&j.id.0) {
                    Ok(Enqueued::Created(j.id.clone()))
                } else if let Some(id) = j
                    .idempotency_key
                    .as_ref()
                    .and_then(|k| existing.get(&(j.client_id.0.clone(), k.clone())))
                {
                    Ok(Enqueued::Existing(JobId(id.clone())))
                } else {
                    Err(StoreError::Commit("job insert conflicted on its id".into()))
                };
                let _ = reply.send(r);
            }
        }
    }
    failed
}

type BatchOutcome = (
    HashSet<Vec<u8>>,
    HashSet<String>,
    HashMap<(String, String), String>,
);

async fn write_batch(
    conn: &mut PgConnection,
    keys: Vec<Vec<u8>>,
    expiries: Vec<i64>,
    now: i64,
    cols: JobColumns,
    ops: &[CommitOp],
    dup: &[bool],
) -> Result<BatchOutcome, sqlx::Error> {
    let row = sqlx::query(sql::ENQUEUE)
        .bind(keys)
        .bind(expiries)
        .bind(now)
        .bind(cols.id)
        .bind(cols.client)
        .bind(cols.tool)
        .bind(cols.args)
        .bind(cols.max)
        .bind(cols.at)
        .bind(cols.key)
        .bind(cols.def)
        .bind(cols.crash)
        .bind(cols.capped)
        .bind(cols.nonce)
        .bind(cols.answers)
        .fetch_one(&mut *conn)
        .await?;
    let admitted: HashSet<Vec<u8>> = row.try_get::<Vec<Vec<u8>>, _>(0)?.into_iter().collect();
    let inserted: HashSet<String> = row.try_get::<Vec<String>, _>(1)?.into_iter().collect();
    // Jobs not inserted although their nonce was admitted: their idempotency key names a job
    // (committed: ON CONFLICT waited for any concurrent insert of the same key to finish).
    let mut clients = Vec::new();
    let mut idem = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let CommitOp::Job(j, _) = op else { continue };
        let Some(k) = &j.idempotency_key else {
            continue;
        };
        let nonce_ok = j
            .nonce
            .as_ref()
            .is_none_or(|n| !dup[i] && admitted.contains(&n.key.0[..]));
        if nonce_ok && !inserted.contains(&j.id.0) {
            clients.push(j.client_id.0.clone());
            idem.push(k.clone());
        }
    }
    let mut existing = HashMap::new();
    if !clients.is_empty() {
        for r in sqlx::query(sql::FIND_IDEMPOTENT)
            .bind(clients)
            .bind(idem)
            .fetch_all(&mut *conn)
            .await?
        {
            existing.insert((r.try_get(0)?, r.try_get(1)?), r.try_get(2)?);
        }
    }
    Ok((admitted, inserted, existing))
}

fn count(v: i32, name: &str) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("{name} {v}")))
}

fn record_from_row(r: &PgRow) -> Result<JobRecord, StoreError> {
    let state: String = r.try_get(4)?;
    let on_crash: i16 = r.try_get(20)?;
    Ok(JobRecord {
        id: JobId(r.try_get(0)?),
        client_id: ClientId(r.try_get(1)?),
        tool: r.try_get(2)?,
        args: r.try_get(3)?,
        state: JobState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("job state {state:?}")))?,
        attempt: count(r.try_get(5)?, "attempt")?,
        max_attempts: count(r.try_get(6)?, "max_attempts")?,
        run_at: r.try_get(7)?,
        lease_owner: r.try_get(8)?,
        lease_expires_at: r.try_get(9)?,
        fence: r.try_get(10)?,
        cancel_requested: r.try_get(11)?,
        progress: r.try_get(12)?,
        result: r.try_get(13)?,
        errors: r.try_get(14)?,
        idempotency_key: r.try_get(15)?,
        created_at: r.try_get(16)?,
        started_at: r.try_get(17)?,
        finished_at: r.try_get(18)?,
        def: r.try_get(19)?,
        on_crash: CrashPolicy::from_code(i64::from(on_crash))
            .ok_or_else(|| StoreError::Corrupt(format!("on_crash {on_crash}")))?,
        input_requests: r.try_get(21)?,
        input_responses: r.try_get(22)?,
        request_state: r.try_get(23)?,
    })
}

fn claimed_from_row(r: &PgRow) -> Result<ClaimedJob, StoreError> {
    Ok(ClaimedJob {
        id: JobId(r.try_get(0)?),
        client_id: ClientId(r.try_get(1)?),
        tool: r.try_get(2)?,
        args: r.try_get(3)?,
        attempt: count(r.try_get(4)?, "attempt")?,
        max_attempts: count(r.try_get(5)?, "max_attempts")?,
        fence: r.try_get(6)?,
        due_at: r.try_get(7)?,
        input_responses: r.try_get(8)?,
        request_state: r.try_get(9)?,
    })
}

fn state_of(text: &str) -> Result<JobState, StoreError> {
    JobState::parse(text).ok_or_else(|| StoreError::Corrupt(format!("job state {text:?}")))
}

impl PgStore {
    async fn send(&self, op: CommitOp) -> Result<(), StoreError> {
        self.inner.tx.send(op).await.map_err(|_| StoreError::Closed)
    }

    async fn apply_completions(
        &self,
        done: Vec<Completion>,
        now: i64,
        only_expired: bool,
    ) -> Result<Vec<JobId>, StoreError> {
        if done.is_empty() {
            return Ok(Vec::new());
        }
        // Rows are locked in id order in every batch statement (see `Inner::writes`).
        let mut done = done;
        done.sort_by(|a, b| a.id.0.cmp(&b.id.0));
        let n = done.len();
        let (mut ids, mut fences, mut states) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut results, mut errors, mut run_ats) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut requests, mut request_states) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for c in done {
            let (asked, asked_state) = match &c.outcome {
                Outcome::AwaitInput { requests, state } => (Some(requests.clone()), state.clone()),
                _ => (None, None),
            };
            requests.push(asked);
            request_states.push(asked_state);
            let (state, result, error, run_at) = match c.outcome {
                Outcome::Succeeded { result } => ("succeeded", Some(result), None, None),
                Outcome::Retry { run_at, error } => ("queued", None, Some(error), Some(run_at)),
                Outcome::Failed { error } => ("failed", None, Some(error), None),
                Outcome::Cancelled { error } => ("cancelled", None, Some(error), None),
                Outcome::InDoubt { error } => ("in_doubt", None, Some(error), None),
                Outcome::AwaitInput { .. } => ("input_required", None, None, None),
            };
            ids.push(c.id.0);
            fences.push(c.fence);
            states.push(state);
            results.push(result);
            errors.push(error);
            run_ats.push(run_at);
        }
        let _turn = self.inner.writes.lock().await;
        let rows = sqlx::query(sql::COMPLETE)
            .bind(ids)
            .bind(fences)
            .bind(states)
            .bind(results)
            .bind(errors)
            .bind(run_ats)
            .bind(now)
            .bind(only_expired)
            .bind(vec!["running"; n])
            .bind(requests)
            .bind(request_states)
            .fetch_all(&self.inner.pool)
            .await?;
        rows.iter().map(|r| Ok(JobId(r.try_get(0)?))).collect()
    }

    async fn claim_capped(
        &self,
        worker: &str,
        limit: usize,
        now: i64,
        lease_ms: i64,
        filter: &ClaimFilter,
    ) -> Result<Vec<PgRow>, StoreError> {
        let mut tx = self.inner.pool.begin().await?;
        let mut rows = if filter.defs.is_empty() {
            Vec::new()
        } else {
            sqlx::query(sql::CLAIM)
                .bind(worker)
                .bind(now)
                .bind(limit as i64)
                .bind(lease_ms)
                .bind(&filter.defs)
                .fetch_all(&mut *tx)
                .await?
        };
        // Locks in name order, so two claimers never wait on each other in a cycle.
        let mut capped: Vec<&CappedTool> = filter.capped.iter().collect();
        capped.sort_by(|a, b| a.tool.cmp(&b.tool));
        for c in capped {
            let left = limit.saturating_sub(rows.len());
            if left == 0 {
                break;
            }
            // Held until commit: counting the tool's running jobs and claiming up to its
            // limit see no other claimer in between.
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('mcpq-capped:' || $1, 0))")
                .bind(&c.tool)
                .execute(&mut *tx)
                .await?;
            rows.extend(
                sqlx::query(sql::CLAIM_TOOL)
                    .bind(worker)
                    .bind(now)
                    .bind(i64::from(c.limit))
                    .bind(lease_ms)
                    .bind(&c.tool)
                    .bind(&c.defs)
                    .bind(left as i64)
                    .fetch_all(&mut *tx)
                    .await?,
            );
        }
        tx.commit().await?;
        Ok(rows)
    }
}

impl Store for PgStore {
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            sqlx::query("SELECT 1").execute(&self.inner.pool).await?;
            Ok(())
        })
    }

    fn record_nonce(&self, nonce: NonceRecord) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            // Recorded, not decided: an existing copy stays as it is.
            self.admit_nonce(nonce, i64::MIN).await?;
            Ok(())
        })
    }

    fn admit_nonce(&self, nonce: NonceRecord, now: i64) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            let (tx, rx) = oneshot::channel();
            self.send(CommitOp::Nonce(nonce, now, tx)).await?;
            rx.await.map_err(|_| StoreError::Closed)?
        })
    }

    fn shares_nonces(&self) -> bool {
        true
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let (tx, rx) = oneshot::channel();
            self.send(CommitOp::Flush(tx)).await?;
            rx.await.map_err(|_| StoreError::Closed)
        })
    }

    fn live_nonces(&self, now: i64) -> BoxFuture<'_, Result<Vec<NonceRecord>, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query(sql::LIVE_NONCES)
                .bind(now)
                .fetch_all(&self.inner.pool)
                .await?;
            rows.iter()
                .map(|r| {
                    let key: Vec<u8> = r.try_get(0)?;
                    let key: [u8; 16] = key
                        .try_into()
                        .map_err(|_| StoreError::Corrupt("a nonce key is not 16 bytes".into()))?;
                    Ok(NonceRecord {
                        key: NonceKey(key),
                        expires_ms: r.try_get(1)?,
                    })
                })
                .collect()
        })
    }

    fn enqueue(&self, job: NewJob) -> BoxFuture<'_, Result<Enqueued, StoreError>> {
        Box::pin(async move {
            let (tx, rx) = oneshot::channel();
            self.send(CommitOp::Job(Box::new(job), tx)).await?;
            rx.await.map_err(|_| StoreError::Closed)?
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
            answer.await.map_err(|_| StoreError::Closed)?
        })
    }

    fn cancel<'a>(
        &'a self,
        client: &'a ClientId,
        id: &'a JobId,
        now: i64,
    ) -> BoxFuture<'a, Result<CancelOutcome, StoreError>> {
        Box::pin(async move {
            // A job that changes state between the statement's snapshot and its update (a
            // claim commits in between) matches neither update; look again.
            for _ in 0..5 {
                let r = sqlx::query(sql::CANCEL)
                    .bind(&id.0)
                    .bind(&client.0)
                    .bind(now)
                    .fetch_one(&self.inner.pool)
                    .await?;
                if r.try_get::<bool, _>(0)? {
                    return Ok(CancelOutcome::Cancelled);
                }
                if r.try_get::<bool, _>(1)? {
                    return Ok(CancelOutcome::Requested);
                }
                match r.try_get::<Option<String>, _>(2)? {
                    None => return Ok(CancelOutcome::NotFound),
                    Some(s) => {
                        let s = state_of(&s)?;
                        if !matches!(
                            s,
                            JobState::Queued | JobState::Running | JobState::AwaitingInput
                        ) {
                            return Ok(CancelOutcome::AlreadyFinished(s));
                        }
                    }
                }
            }
            Err(StoreError::Commit(
                "cancel: the job kept changing state".into(),
            ))
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
            let mut tx = self.inner.pool.begin().await?;
            let row = sqlx::query(sql::ANSWER_READ)
                .bind(&id.0)
                .bind(&client.0)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(row) = row else {
                return Ok(AnswerOutcome::NotFound);
            };
            let state = state_of(&row.try_get::<String, _>(0)?)?;
            let requests: Option<String> = row.try_get(1)?;
            let so_far: Option<String> = row.try_get(2)?;
            let (left, so_far, outcome) =
                match super::plan_answers(state, requests.as_deref(), so_far.as_deref(), answers) {
                    AnswerPlan::Done(outcome) => return Ok(outcome),
                    AnswerPlan::Write {
                        left,
                        so_far,
                        outcome,
                    } => (left, so_far, outcome),
                };
            let written = sqlx::query(sql::ANSWER_WRITE)
                .bind(&id.0)
                .bind(&requests)
                .bind(left)
                .bind(&so_far)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
            if written.is_none() {
                return Err(StoreError::Commit(
                    "answer_input: the job changed under its row lock".into(),
                ));
            }
            tx.commit().await?;
            if outcome == AnswerOutcome::Resumed {
                self.inner.jobs_added.notify_one();
            }
            Ok(outcome)
        })
    }

    fn has_due_jobs(&self, now: i64) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            Ok(sqlx::query_scalar::<_, bool>(sql::HAS_DUE)
                .bind(now)
                .fetch_one(&self.inner.pool)
                .await?)
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
            let rows = if filter.capped.is_empty() {
                sqlx::query(sql::CLAIM)
                    .bind(worker)
                    .bind(now)
                    .bind(limit as i64)
                    .bind(lease_ms)
                    .bind(&filter.defs)
                    .fetch_all(&self.inner.pool)
                    .await?
            } else {
                self.claim_capped(worker, limit, now, lease_ms, filter)
                    .await?
            };
            rows.iter().map(claimed_from_row).collect()
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
                .bind(known)
                .bind(now)
                .bind(limit as i64)
                .fetch_all(&self.inner.pool)
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
            let row = sqlx::query(sql::RESOLVE_IN_DOUBT)
                .bind(&id.0)
                .bind(state)
                .bind(now)
                .bind(entry)
                .fetch_optional(&self.inner.pool)
                .await?;
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
            let mut beats = beats;
            beats.sort_by(|a, b| a.id.0.cmp(&b.id.0));
            let mut ids = Vec::with_capacity(beats.len());
            let mut fences = Vec::with_capacity(beats.len());
            let mut progress = Vec::with_capacity(beats.len());
            for b in beats {
                ids.push(b.id.0);
                fences.push(b.fence);
                progress.push(b.progress);
            }
            let n = ids.len();
            let _turn = self.inner.writes.lock().await;
            let rows = sqlx::query(sql::HEARTBEAT)
                .bind(ids)
                .bind(fences)
                .bind(progress)
                .bind(now + lease_ms)
                .bind(vec!["running"; n])
                .fetch_all(&self.inner.pool)
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(HeartbeatAck {
                        id: JobId(r.try_get(0)?),
                        cancel_requested: r.try_get(1)?,
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
            let mut jobs = jobs;
            jobs.sort_by(|a, b| a.0 .0.cmp(&b.0 .0));
            let (ids, fences): (Vec<String>, Vec<i64>) =
                jobs.into_iter().map(|(id, f)| (id.0, f)).unzip();
            let n = ids.len();
            let _turn = self.inner.writes.lock().await;
            let r = sqlx::query(sql::RELEASE)
                .bind(ids)
                .bind(fences)
                .bind(now)
                .bind(vec!["running"; n])
                .execute(&self.inner.pool)
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
                .fetch_all(&self.inner.pool)
                .await?;
            rows.iter()
                .map(|r| {
                    let on_crash: i16 = r.try_get(4)?;
                    Ok(ExpiredLease {
                        id: JobId(r.try_get(0)?),
                        fence: r.try_get(1)?,
                        attempt: count(r.try_get(2)?, "attempt")?,
                        max_attempts: count(r.try_get(3)?, "max_attempts")?,
                        on_crash: CrashPolicy::from_code(i64::from(on_crash))
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

    fn count_queued<'a>(
        &'a self,
        client: &'a str,
        limit: u64,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            let n: i64 = sqlx::query_scalar(sql::COUNT_QUEUED)
                .bind(client)
                .bind(limit.min(i64::MAX as u64) as i64)
                .fetch_one(&self.inner.pool)
                .await?;
            Ok(n as u64)
        })
    }

    fn lease_holders(&self) -> BoxFuture<'_, Result<Vec<(String, i64)>, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query(sql::LEASE_HOLDERS)
                .fetch_all(&self.inner.pool)
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
                .fetch_all(&self.inner.pool)
                .await?;
            let mut out = QueueStats::default();
            for r in &rows {
                let state = state_of(&r.try_get::<String, _>(0)?)?;
                let n: i64 = r.try_get(2)?;
                out.active.push((state, r.try_get(1)?, n as u64));
                if let Some(at) = r.try_get::<Option<i64>, _>(3)? {
                    out.oldest_due_at = Some(out.oldest_due_at.map_or(at, |o: i64| o.min(at)));
                }
            }
            Ok(out)
        })
    }

    fn prune(&self, finished_before: i64, now: i64) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let batch = self.inner.prune_batch;
            let mut jobs = 0;
            loop {
                let n = sqlx::query(sql::PRUNE_JOBS)
                    .bind(finished_before)
                    .bind(batch)
                    .execute(&self.inner.pool)
                    .await?
                    .rows_affected();
                jobs += n;
                if (n as i64) < batch {
                    break;
                }
            }
            loop {
                let n = sqlx::query(sql::PRUNE_NONCES)
                    .bind(now)
                    .bind(batch)
                    .execute(&self.inner.pool)
                    .await?
                    .rows_affected();
                if (n as i64) < batch {
                    break;
                }
            }
            Ok(jobs)
        })
    }

    fn wakeups(&self) -> Option<Arc<Notify>> {
        self.inner.wake.clone()
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let _ = self.flush().await;
            self.inner.stop.cancel();
            self.inner.pool.close().await;
        })
    }
}
