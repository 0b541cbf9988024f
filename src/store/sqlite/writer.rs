//! The SQLite write path: the single writer task (group commit of enqueues and nonces, on a
//! thread of its own) and the syncer thread that fsyncs the WAL before callers hear back.
//!
//! It must not decide job transitions; it writes what it is handed, in batches.

use std::sync::Arc;
use std::time::Duration;

use sqlx::{Row, SqliteConnection};
use tokio::sync::{mpsc, oneshot, Mutex};

use super::rows::{push_job, push_record, NoncePack, Rows};
use super::signals::Signals;
use super::sql;
use crate::audit::{self, Entry, Head};
use crate::auth::NonceRecord;
use crate::config::{DatabaseSettings, Synchronous};
use crate::jobs::JobId;
use crate::logging::repeats;
use crate::otel::{spans, TraceHeaders};
use crate::store::status::StoreStatus;
use crate::store::{Enqueued, NewJob, StoreError};

pub(super) const MAX_BATCH: usize = 4096;

pub(super) enum WriteOp {
    /// Nonces were added to an empty [`PendingNonces`] (or audit records to an empty
    /// [`PendingAudit`]): commit them within the linger time.
    NoncesPending,
    Job(Box<NewJob>, oneshot::Sender<Result<Enqueued, StoreError>>),
    Flush(oneshot::Sender<()>),
}

/// Admitted nonces of calls that create no job, waiting for the next group commit.
///
/// A plain buffer rather than a message each: sending every nonce to the writer woke its
/// thread once per call (a futex wake and a context switch, the largest cost left on the
/// sync path); now only the nonce that finds the buffer empty wakes it, at most once per
/// commit.
pub(super) type PendingNonces = Arc<std::sync::Mutex<Vec<NonceRecord>>>;

fn take_nonces(pending: &PendingNonces) -> Vec<NonceRecord> {
    std::mem::take(&mut *pending.lock().unwrap_or_else(|p| p.into_inner()))
}

/// Audit records written behind (docs/AUDIT.md), waiting for the next group commit like
/// [`PendingNonces`].
pub(super) type PendingAudit = Arc<std::sync::Mutex<Vec<Entry>>>;

fn take_audit(pending: &PendingAudit) -> Vec<Entry> {
    std::mem::take(&mut *pending.lock().unwrap_or_else(|p| p.into_inner()))
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
pub(super) struct Durability {
    tx: Option<std::sync::mpsc::Sender<Waiter>>,
    pub(super) failed: Arc<std::sync::atomic::AtomicBool>,
}

impl Durability {
    pub(super) fn new(db: &DatabaseSettings) -> Durability {
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

    pub(super) async fn wait(&self) -> Result<(), StoreError> {
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
        metrics::histogram!(crate::telemetry::names::FSYNC_SECONDS)
            .record(started.elapsed().as_secs_f64());
        if !ok {
            metrics::counter!(crate::telemetry::names::FSYNC_FAILURES).increment(1);
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

/// Runs the group-commit loop on a thread of its own with a one-thread runtime.
///
/// On the shared runtime the writer task queued behind dozens of HTTP tasks each time
/// SQLite's thread answered it, and the writer is the one serial step every enqueue
/// passes through. It ends when every sender is gone.
pub(super) fn spawn_writer_thread(
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

/// How long admitted nonces of non-job calls may wait to be written. Nothing waits on
/// them (they are write-behind), so they ride along with the next job commit or are
/// written on their own at most this often: one fsync per interval instead of one per batch.
const NONCE_LINGER: Duration = Duration::from_millis(10);

/// The single writer task: drains waiting writes into one transaction.
pub(super) async fn group_commit(
    writer: Arc<Mutex<SqliteConnection>>,
    mut rx: mpsc::Receiver<WriteOp>,
    pending: (PendingNonces, PendingAudit),
    durability: Durability,
    status: Arc<StoreStatus>,
    signals: Arc<Signals>,
) {
    let mut ops = Vec::with_capacity(MAX_BATCH);
    // The audit chain's head as this writer last committed it; `None`: read it first.
    let mut head: Option<Head> = None;
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
        let batch = Batch {
            pending: &pending,
            head: &mut head,
            durability: &durability,
            status: &status,
            signals: &signals,
        };
        commit_batch(&mut conn, &mut ops, batch).await;
    }
}

/// What a group commit works with besides its ops.
struct Batch<'a> {
    pending: &'a (PendingNonces, PendingAudit),
    head: &'a mut Option<Head>,
    durability: &'a Durability,
    status: &'a StoreStatus,
    signals: &'a Signals,
}

async fn commit_batch(conn: &mut SqliteConnection, ops: &mut Vec<WriteOp>, b: Batch<'_>) {
    let (pending, durability, status) = (b.pending, b.durability, b.status);
    let behind = take_audit(&pending.1);
    let mut nonces = NoncePack::default();
    for n in take_nonces(&pending.0) {
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
    let behind_n = behind.len();
    let outcome = if nonces.is_empty() && jobs.count == 0 && behind.is_empty() {
        Ok(Vec::new())
    } else {
        write_batch(conn, nonces, jobs, ops, (behind, b.head)).await
    };
    observe_commit(ops, job_count, started);
    // SQLite is local: a failed statement rolled back, so the outcome is always known.
    let mut failure: Option<Box<dyn Fn() -> StoreError + Send>> = None;
    let mut results = match outcome {
        Ok(r) => {
            status.up();
            if job_count > 0 {
                // Workers in other processes claim now rather than when their back-off ends.
                b.signals.send_enqueued();
            }
            r.into_iter()
        }
        Err(e) => {
            lost(behind_n);
            failure = Some(match crate::store::fault::sqlx_unavailable(&e) {
                Some(why) => {
                    status.down(why);
                    repeats::fault("group commit", &e);
                    Box::new(move || StoreError::Unavailable(why.to_string()))
                }
                None => {
                    tracing::error!(error = %e, "group commit failed; its callers get an internal error");
                    let msg = format!("the batch was rolled back: {e}");
                    Box::new(move || StoreError::Commit(msg.clone()))
                }
            });
            Vec::new().into_iter()
        }
    };
    let mut job_replies = Vec::new();
    let mut flush_replies = Vec::new();
    for op in ops.drain(..) {
        match op {
            WriteOp::NoncesPending => {}
            WriteOp::Job(_, reply) => {
                let r = results.next().ok_or_else(|| match &failure {
                    Some(f) => f(),
                    None => StoreError::Commit("the batch was rolled back".into()),
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
                Err(StoreError::NotDurable)
            };
            let _ = reply.send(r);
        }
        for reply in flush_replies {
            let _ = reply.send(());
        }
    }));
}

/// A group commit's metrics, span and trace line.
fn observe_commit(ops: &[WriteOp], job_count: usize, started: std::time::Instant) {
    metrics::histogram!(crate::telemetry::names::BATCH_ROWS).record(ops.len() as f64);
    metrics::histogram!(crate::telemetry::names::COMMIT_SECONDS)
        .record(started.elapsed().as_secs_f64());
    if crate::otel::enabled() {
        commit_span(ops, started);
    }
    tracing::trace!(
        ops = ops.len(),
        jobs = job_count,
        took_us = started.elapsed().as_micros() as u64,
        "group commit"
    );
}

/// `mcpq.store.commit` in the traces of the batch's traced calls (one span per batch).
fn commit_span(ops: &[WriteOp], started: std::time::Instant) {
    let traced: Vec<_> = ops
        .iter()
        .filter_map(|op| match op {
            WriteOp::Job(j, _) => j.trace.as_deref().and_then(TraceHeaders::from_stored),
            _ => None,
        })
        .collect();
    if traced.is_empty() {
        return;
    }
    let jobs = ops
        .iter()
        .filter(|op| matches!(op, WriteOp::Job(..)))
        .count();
    let start = std::time::SystemTime::now() - started.elapsed();
    let attrs = vec![
        spans::db_system("sqlite"),
        spans::attr("mcpq.batch.ops", ops.len() as i64),
        spans::attr("mcpq.batch.jobs", jobs as i64),
    ];
    spans::batch("mcpq.store.commit", start, &traced, attrs);
}

/// Audit records written behind that a failed batch took with it (docs/AUDIT.md).
fn lost(n: usize) {
    if n > 0 {
        metrics::counter!(crate::telemetry::names::AUDIT_LOST).increment(n as u64);
        // Rate-limited like every fault: an outage fails many batches in a row.
        repeats::fault(
            "audit records lost",
            &format!("{n} audit record(s) written behind were lost with their batch"),
        );
    }
}

/// Writes a batch. Returns one `Enqueued` per job op, in order.
///
/// The common case (no idempotency keys) is one statement, one round trip: an insert into
/// the `enqueue_batch` view, whose trigger stores nonces and jobs atomically. A batch with
/// idempotency keys needs to know which inserts collided, so it takes the slower path: one
/// `BEGIN IMMEDIATE` transaction with `ON CONFLICT DO NOTHING RETURNING id`. So does a batch
/// with a traced call (docs/TRACING.md), whose contexts are written in that transaction:
/// with traces off the common case's statement is untouched.
///
/// (A multi-statement string would also save round trips, but when one of its statements
/// failed, sqlx-sqlite 0.8.6's worker thread panicked and every later write hung.)
async fn write_batch(
    conn: &mut SqliteConnection,
    nonces: NoncePack,
    jobs: Rows,
    ops: &[WriteOp],
    audit: (Vec<Entry>, &mut Option<Head>),
) -> Result<Vec<Enqueued>, sqlx::Error> {
    let keyed = ops.iter().any(
        |op| matches!(op, WriteOp::Job(j, _) if j.idempotency_key.is_some() || j.trace.is_some()),
    );
    if keyed {
        return write_batch_keyed(conn, nonces, jobs, ops, audit).await;
    }
    let created: Vec<Enqueued> = ops
        .iter()
        .filter_map(|op| match op {
            WriteOp::Job(j, _) => Some(Enqueued::Created(j.id.clone())),
            _ => None,
        })
        .collect();
    let (behind, head) = audit;
    let records = audit_entries(ops, &created, behind);
    let entries = (!nonces.is_empty()).then_some(nonces.bytes);
    let jobs = (jobs.count > 0).then(|| jobs.finish());
    if records.is_empty() {
        sqlx::query(sql::ENQUEUE_BATCH)
            .bind(nonces.max_expiry)
            .bind(entries)
            .bind(jobs.unwrap_or_else(|| "[]".into()))
            .execute(&mut *conn)
            .await?;
        return Ok(created);
    }
    // Sealed onto the head this writer last committed; if another process (an operator's
    // command, retention) appended since, the statement aborts and the batch is resealed
    // on the head read now.
    let mut tries = 0;
    loop {
        tries += 1;
        let start = match head.take() {
            Some(h) => h,
            None => read_head(conn).await?,
        };
        let mut rows = Rows::new();
        let end = audit::seal_with(&start, &records, |seq, e, prev, digest| {
            push_record(&mut rows, seq, e, prev, digest)
        });
        let done = sqlx::query(sql::ENQUEUE_AUDITED)
            .bind(nonces.max_expiry)
            .bind(entries.as_deref())
            .bind(jobs.as_deref())
            .bind(rows.finish())
            .bind(start.seq)
            .bind(end.seq)
            .bind(&end.digest)
            .bind(newest(&records))
            .execute(&mut *conn)
            .await;
        match done {
            Ok(_) => {
                *head = Some(end);
                return Ok(created);
            }
            Err(e) if tries < 5 && head_moved(&e) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The batch's audit records in commit order: its jobs' (with what the commit did to each,
/// `done` holding one outcome per job op), then those written behind.
fn audit_entries(ops: &[WriteOp], done: &[Enqueued], behind: Vec<Entry>) -> Vec<Entry> {
    let mut out = Vec::new();
    let jobs = ops.iter().filter_map(|op| match op {
        WriteOp::Job(j, _) => Some(j),
        _ => None,
    });
    for (j, outcome) in jobs.zip(done) {
        if let Some(e) = &j.audit {
            out.push(crate::store::audit::job_entry(e, outcome));
        }
    }
    out.extend(behind);
    out
}

/// The time of a pack's newest record (`audit_packs.max_at`).
fn newest(records: &[Entry]) -> i64 {
    records.iter().map(|e| e.at).max().unwrap_or(i64::MIN)
}

fn head_moved(e: &sqlx::Error) -> bool {
    e.to_string().contains("audit chain head moved")
}

/// The chain's head as committed (read on the writer connection).
pub(super) async fn read_head(conn: &mut SqliteConnection) -> Result<Head, sqlx::Error> {
    let r = sqlx::query(sql::AUDIT_HEAD).fetch_one(&mut *conn).await?;
    Ok(Head {
        seq: r.try_get(0)?,
        digest: r.try_get(1)?,
    })
}

/// Seals `entries` onto the head and writes them, inside a write transaction the caller
/// holds (`BEGIN IMMEDIATE`: the head read is the committed one); returns the new head.
pub(super) async fn append_in_tx(
    tx: &mut SqliteConnection,
    entries: Vec<Entry>,
) -> Result<Head, sqlx::Error> {
    let start = read_head(tx).await?;
    if entries.is_empty() {
        return Ok(start);
    }
    let mut rows = Rows::new();
    let end = audit::seal_with(&start, &entries, |seq, e, prev, digest| {
        push_record(&mut rows, seq, e, prev, digest)
    });
    sqlx::query(sql::ENQUEUE_AUDITED)
        .bind(0i64)
        .bind(None::<Vec<u8>>)
        .bind(None::<String>)
        .bind(rows.finish())
        .bind(start.seq)
        .bind(end.seq)
        .bind(&end.digest)
        .bind(newest(&entries))
        .execute(&mut *tx)
        .await?;
    Ok(end)
}

async fn write_batch_keyed(
    conn: &mut SqliteConnection,
    nonces: NoncePack,
    jobs: Rows,
    ops: &[WriteOp],
    (behind, head): (Vec<Entry>, &mut Option<Head>),
) -> Result<Vec<Enqueued>, sqlx::Error> {
    // Outside sqlx's transaction tracking (`super::begin_immediate`): a full disk must not
    // leave the connection refusing every later transaction.
    begin_immediate(conn).await?;
    *head = None;
    let written = async {
        if !nonces.is_empty() {
            sqlx::query(sql::INSERT_NONCE_BATCH)
                .bind(nonces.max_expiry)
                .bind(nonces.bytes)
                .execute(&mut *conn)
                .await?;
        }
        let mut out = Vec::new();
        let mut traces = Rows::new();
        for op in ops {
            if let WriteOp::Job(j, _) = op {
                if let Some(t) = &j.trace {
                    traces.row().str(&j.id.0).str(t);
                }
            }
        }
        if jobs.count > 0 {
            let inserted: std::collections::HashSet<String> = sqlx::query(sql::INSERT_JOBS)
                .bind(jobs.finish())
                .fetch_all(&mut *conn)
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
                    .fetch_optional(&mut *conn)
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
        if traces.count > 0 {
            sqlx::query(sql::TRACE_JOBS)
                .bind(traces.finish())
                .execute(&mut *conn)
                .await?;
        }
        let records = audit_entries(ops, &out, behind);
        let end = append_in_tx(&mut *conn, records).await?;
        Ok::<_, sqlx::Error>((out, end))
    }
    .await;
    let (out, end) = finish(conn, written).await?;
    *head = Some(end);
    Ok(out)
}

/// `BEGIN IMMEDIATE` on the writer connection, outside sqlx's transaction tracking. A
/// statement that fails on a full disk (or an I/O error) may have made SQLite roll the
/// transaction back already; sqlx's own rollback then fails as well and leaves the
/// connection counted as inside a transaction, refusing every later `begin_with`: the
/// full-disk test caught completions refused for good after space came back. [`finish`]
/// tolerates that. A transaction left open by a cancelled caller is rolled back here.
pub(super) async fn begin_immediate(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    if sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut *conn)
        .await
        .is_ok()
    {
        return Ok(());
    }
    let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
    sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
    Ok(())
}

/// Commits the transaction [`begin_immediate`] opened if `written` succeeded, else rolls it
/// back; a rollback that finds no transaction (SQLite already ended it) is not an error.
pub(super) async fn finish<T, E: From<sqlx::Error>>(
    conn: &mut SqliteConnection,
    written: Result<T, E>,
) -> Result<T, E> {
    let committed = match written {
        Ok(v) => sqlx::query("COMMIT")
            .execute(&mut *conn)
            .await
            .map(|_| v)
            .map_err(E::from),
        Err(e) => Err(e),
    };
    if committed.is_err() {
        let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
    }
    committed
}
