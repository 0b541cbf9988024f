//! The PostgreSQL write path: group committers (enqueues and nonces, one statement per batch
//! on connections of their own) and the notifier that wakes listening workers after jobs
//! commit.
//!
//! It must not decide job transitions; it writes what it is handed, in batches.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, Row};
use tokio::sync::{mpsc, oneshot, Mutex, Notify};

use super::sql;
use crate::audit::Entry;
use crate::auth::NonceRecord;
use crate::jobs::JobId;
use crate::logging::repeats;
use crate::otel::{spans, TraceHeaders};
use crate::store::batch::take_batch;
use crate::store::status::StoreStatus;
use crate::store::{Enqueued, NewJob, StoreError};

/// The channel `enqueue.sql` notifies after inserting jobs.
pub(super) const MAX_BATCH: usize = 2048;

/// A write waiting for the next group commit.
pub(super) enum CommitOp {
    Job(Box<NewJob>, oneshot::Sender<Result<Enqueued, StoreError>>),
    /// A sync call's nonce and the time of the call: answered `true` if admitted, `false` if
    /// another caller had it.
    Nonce(NonceRecord, i64, oneshot::Sender<Result<bool, StoreError>>),
    Flush(oneshot::Sender<()>),
    /// Audit records written behind (docs/AUDIT.md): sealed onto the chain in the batch's
    /// transaction; nobody waits for them but `close` (until every [`InFlight`] is gone).
    Audit(Vec<Entry>, #[allow(dead_code)] InFlight),
}

/// One audit op not yet committed or dropped: `close` waits until none is left, since its
/// flush is answered by whichever committer takes it, maybe before another commits these.
pub(super) struct InFlight(Arc<std::sync::atomic::AtomicUsize>);

impl InFlight {
    pub(super) fn new(count: &Arc<std::sync::atomic::AtomicUsize>) -> InFlight {
        count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        InFlight(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// One group committer: takes every waiting write and commits it with one statement. The
/// committers share the queue; while one waits for its commit, the next batch forms and
/// another commits it (PostgreSQL flushes their WAL together).
pub(super) async fn group_commit(
    conn: PgConnection,
    opts: PgConnectOptions,
    rx: Arc<Mutex<mpsc::Receiver<CommitOp>>>,
    jobs_added: Arc<Notify>,
    status: Arc<StoreStatus>,
) {
    let mut link = Link::new(conn, opts).await;
    let mut ops = Vec::with_capacity(MAX_BATCH);
    loop {
        if !take_batch(&rx, &mut ops, MAX_BATCH).await {
            return;
        }
        let started = std::time::Instant::now();
        let n = ops.len();
        // The batch's traced calls, taken before `commit_batch` answers (and drains) them.
        let traced: Vec<TraceHeaders> = if crate::otel::enabled() {
            ops.iter()
                .filter_map(|op| match op {
                    CommitOp::Job(j, _) => j.trace.as_deref().and_then(TraceHeaders::from_stored),
                    _ => None,
                })
                .collect()
        } else {
            Vec::new()
        };
        let with_jobs = ops.iter().any(|op| matches!(op, CommitOp::Job(..)));
        let committed = commit_batch(&mut link, &mut ops, &status).await;
        if with_jobs && committed {
            // A permit is kept if the notifier is busy: the wake-up is never lost, only merged.
            jobs_added.notify_one();
        }
        metrics::histogram!(crate::telemetry::names::BATCH_ROWS).record(n as f64);
        metrics::histogram!(crate::telemetry::names::COMMIT_SECONDS)
            .record(started.elapsed().as_secs_f64());
        if crate::otel::enabled() {
            commit_span(&traced, n, started);
        }
        tracing::trace!(
            ops = n,
            took_us = started.elapsed().as_micros() as u64,
            "group commit"
        );
    }
}

/// `mcpq.store.commit` in the traces of the batch's traced calls (one span per batch).
fn commit_span(traced: &[TraceHeaders], ops: usize, started: std::time::Instant) {
    if traced.is_empty() {
        return;
    }
    let start = std::time::SystemTime::now() - started.elapsed();
    let attrs = vec![
        spans::db_system("postgresql"),
        spans::attr("mcpq.batch.ops", ops as i64),
    ];
    spans::batch("mcpq.store.commit", start, traced, attrs);
}

/// A committer's connection and its backend's pid (to make sure a lost one is gone), or
/// none while the server cannot be reached.
struct Link {
    conn: Option<(PgConnection, i32)>,
    opts: PgConnectOptions,
}

impl Link {
    async fn new(conn: PgConnection, opts: PgConnectOptions) -> Link {
        let mut conn = conn;
        let conn = match backend_pid(&mut conn).await {
            Ok(pid) => Some((conn, pid)),
            Err(_) => None,
        };
        Link { conn, opts }
    }

    /// The live connection, connecting first if the last one was lost.
    async fn get(&mut self) -> Result<&mut PgConnection, sqlx::Error> {
        if self.conn.is_none() {
            let mut c = PgConnection::connect_with(&self.opts).await?;
            let pid = backend_pid(&mut c).await?;
            self.conn = Some((c, pid));
        }
        match &mut self.conn {
            Some((c, _)) => Ok(c),
            None => Err(sqlx::Error::PoolClosed),
        }
    }

    /// Drops the connection; returns the pid of its backend.
    fn lose(&mut self) -> Option<i32> {
        self.conn.take().map(|(_, pid)| pid)
    }
}

async fn backend_pid(conn: &mut PgConnection) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(conn)
        .await
}

/// What a failed statement says about its batch.
enum Fate {
    /// The server answered with an error, or the statement never left: nothing committed.
    NotCommitted(String),
    /// The connection was lost while the statement was in flight: it may have committed.
    Unknown(String),
    /// The statement itself is wrong: a bug, answered `internal`.
    Bug,
}

fn fate(e: &sqlx::Error) -> Fate {
    match (e, crate::store::fault::sqlx_unavailable(e)) {
        (sqlx::Error::Database(_), Some(why)) => Fate::NotCommitted(why.into()),
        (sqlx::Error::PoolClosed, Some(why)) => Fate::NotCommitted(why.into()),
        (_, Some(why)) => Fate::Unknown(why.into()),
        (_, None) => Fate::Bug,
    }
}

/// How long the callers of a batch whose outcome is unknown may wait for it to be resolved
/// (the server back, the lost backend gone) before they are told it could not be.
const RESOLVE_FOR: Duration = Duration::from_secs(30);

/// Writes one batch and answers every op in it; returns true if it committed.
///
/// A batch that certainly did not commit (the server refused it, or no connection could be
/// had) is tried once more on a fresh connection, then answered `store_unavailable`. A batch
/// whose connection was lost in flight is resolved, never guessed (see [`resolve`]).
async fn commit_batch(link: &mut Link, ops: &mut Vec<CommitOp>, status: &StoreStatus) -> bool {
    let mut tries = 0;
    loop {
        tries += 1;
        let conn = match link.get().await {
            Ok(conn) => conn,
            Err(e) => {
                // Nothing was sent: the batch certainly did not commit.
                let why = crate::store::fault::sqlx_unavailable(&e)
                    .unwrap_or("the database cannot be reached");
                status.down(why);
                repeats::fault("group commit: connect", &e);
                fail(ops, |_| StoreError::Unavailable(why.to_string()));
                return false;
            }
        };
        let e = match run_batch(conn, ops).await {
            Ok((outcome, dup)) => {
                answer(ops, &dup, outcome);
                status.up();
                return true;
            }
            Err(e) => e,
        };
        let lost = link.lose();
        match fate(&e) {
            Fate::Bug => {
                tracing::error!(error = %e, "group commit failed; its callers get an internal error");
                fail(ops, |_| StoreError::Commit(e.to_string()));
                return false;
            }
            Fate::NotCommitted(why) => {
                repeats::fault("group commit", &e);
                // A session the server ended between batches fails the next statement on
                // it: the retry on a fresh connection is the normal recovery, not an outage.
                if tries < 2 {
                    continue;
                }
                status.down(&why);
                fail(ops, |_| StoreError::Unavailable(why.clone()));
                return false;
            }
            Fate::Unknown(why) => {
                status.down(&why);
                repeats::fault("group commit", &e);
                return resolve(link, ops, lost, &why).await;
            }
        }
    }
}

/// Writes a batch; returns what its statement did and which ops were in-batch replays.
///
/// A batch with audit records is one transaction: the enqueue statement, then the lock on
/// the chain's head row (`audit_head_lock.sql`), the records sealed onto it (the jobs' with
/// what the statement did to each) and the head moved. The lock is taken after the enqueue
/// so a head holder never waits for a row another committer holds.
async fn run_batch(
    conn: &mut PgConnection,
    ops: &[CommitOp],
) -> Result<(BatchOutcome, Vec<bool>), sqlx::Error> {
    let Batch {
        now,
        keys,
        expiries,
        dup,
        cols,
    } = batch_of(ops);
    let audited = ops.iter().any(|op| match op {
        CommitOp::Audit(..) => true,
        CommitOp::Job(j, _) => j.audit.is_some(),
        _ => false,
    });
    let empty = keys.is_empty() && cols.id.is_empty();
    if !audited {
        if empty {
            return Ok(((HashSet::new(), HashSet::new(), HashMap::new()), dup));
        }
        let outcome = write_batch(conn, keys, expiries, now, cols, ops, &dup).await?;
        return Ok((outcome, dup));
    }
    let mut tx = conn.begin().await?;
    let outcome = if empty {
        (HashSet::new(), HashSet::new(), HashMap::new())
    } else {
        write_batch(&mut tx, keys, expiries, now, cols, ops, &dup).await?
    };
    let start = super::audit::lock_head(&mut tx).await?;
    super::audit::append_locked(&mut tx, &start, audit_entries(ops, &dup, &outcome)).await?;
    tx.commit().await?;
    Ok((outcome, dup))
}

/// The batch's audit records in commit order: each job's that the statement created (or
/// found by its idempotency key), then those written behind. A job refused as a replay has
/// none here: its caller's refusal is recorded instead.
fn audit_entries(ops: &[CommitOp], dup: &[bool], outcome: &BatchOutcome) -> Vec<Entry> {
    let (admitted, inserted, existing) = outcome;
    let mut out = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        match op {
            CommitOp::Job(j, _) => {
                let Some(e) = &j.audit else { continue };
                let nonce_ok = match &j.nonce {
                    Some(n) => !dup[i] && admitted.contains(&n.key.0[..]),
                    None => true,
                };
                let done = if !nonce_ok {
                    continue;
                } else if inserted.contains(&j.id.0) {
                    Enqueued::Created(j.id.clone())
                } else if let Some(id) = j
                    .idempotency_key
                    .as_ref()
                    .and_then(|k| existing.get(&(j.client_id.0.clone(), k.clone())))
                {
                    Enqueued::Existing(JobId(id.clone()))
                } else {
                    continue;
                };
                out.push(crate::store::audit::job_entry(e, &done));
            }
            CommitOp::Audit(entries, _) => out.extend(entries.iter().cloned()),
            _ => {}
        }
    }
    out
}

/// Resolves a batch whose connection was lost in flight: on a fresh connection, makes sure
/// the lost backend is gone (so its transaction can no longer commit), then looks the
/// batch's jobs up. A job found was committed: its caller hears `accepted`. The rest did not
/// commit and are written again, except calls whose nonce is now held (it may be theirs):
/// those are told to retry with a new envelope. If the server cannot be reached for
/// [`RESOLVE_FOR`], every caller hears that the outcome is unknown, with its job id.
async fn resolve(link: &mut Link, ops: &mut Vec<CommitOp>, lost: Option<i32>, why: &str) -> bool {
    let deadline = tokio::time::Instant::now() + RESOLVE_FOR;
    let mut pause = Duration::from_millis(50);
    let found = loop {
        let attempt = async {
            let conn = link.get().await?;
            if let Some(pid) = lost {
                wait_gone(conn, pid, deadline).await?;
            }
            look_up(conn, ops).await
        };
        match attempt.await {
            Ok(found) => break Some(found),
            Err(_) if tokio::time::Instant::now() < deadline => {
                link.lose();
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            Err(_) => break None,
        }
    };
    let Some((jobs, nonces)) = found else {
        resolved("unresolved");
        fail(ops, |op| match op {
            CommitOp::Job(j, _) => StoreError::OutcomeUnknown(format!(
                "{why}, and the outcome of the commit could not be learned within {} s: job {} may \
                 exist (poll it before calling again)",
                RESOLVE_FOR.as_secs(),
                j.id.0
            )),
            _ => StoreError::Unavailable(why.to_string()),
        });
        return false;
    };
    // Records written behind committed with the batch if any of its jobs or nonces did.
    let committed = !jobs.is_empty() || !nonces.is_empty();
    let mut again = Vec::new();
    for op in ops.drain(..) {
        match op {
            CommitOp::Audit(..) if committed => {}
            CommitOp::Job(j, reply) if jobs.contains(&j.id.0) => {
                resolved("committed");
                let _ = reply.send(Ok(Enqueued::Created(j.id.clone())));
            }
            CommitOp::Job(j, reply)
                if j.nonce
                    .as_ref()
                    .is_some_and(|n| nonces.contains(&n.key.0[..])) =>
            {
                let _ = reply.send(Err(StoreError::Unavailable(why.to_string())));
            }
            CommitOp::Nonce(n, _, reply) if nonces.contains(&n.key.0[..]) => {
                let _ = reply.send(Err(StoreError::Unavailable(why.to_string())));
            }
            op => again.push(op),
        }
    }
    if again.is_empty() {
        return true;
    }
    resolved("retried");
    let outcome = match link.get().await {
        Ok(conn) => run_batch(conn, &again).await,
        Err(e) => Err(e),
    };
    match outcome {
        Ok((outcome, dup)) => {
            answer(&mut again, &dup, outcome);
            true
        }
        Err(e) => {
            link.lose();
            let why = crate::store::fault::sqlx_unavailable(&e).unwrap_or("the commit failed");
            fail(&mut again, |_| StoreError::Unavailable(why.to_string()));
            false
        }
    }
}

fn resolved(outcome: &'static str) {
    metrics::counter!(crate::telemetry::names::COMMITS_RESOLVED, "outcome" => outcome).increment(1);
}

/// Waits until the backend `pid` has ended, ending it if PostgreSQL still runs it.
async fn wait_gone(
    conn: &mut PgConnection,
    pid: i32,
    deadline: tokio::time::Instant,
) -> Result<(), sqlx::Error> {
    loop {
        let still = sqlx::query(sql::BACKEND_GONE)
            .bind(pid)
            .fetch_all(&mut *conn)
            .await?;
        if still.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(sqlx::Error::PoolTimedOut);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The batch's job ids that exist and its nonce keys that are held.
async fn look_up(
    conn: &mut PgConnection,
    ops: &[CommitOp],
) -> Result<(HashSet<String>, HashSet<Vec<u8>>), sqlx::Error> {
    let mut ids = Vec::new();
    let mut keys = Vec::new();
    let mut now = i64::MAX;
    for op in ops {
        match op {
            CommitOp::Job(j, _) => {
                ids.push(j.id.0.clone());
                if let Some(n) = &j.nonce {
                    keys.push(n.key.0.to_vec());
                    now = now.min(j.created_at);
                }
            }
            CommitOp::Nonce(n, at, _) => {
                keys.push(n.key.0.to_vec());
                now = now.min(*at);
            }
            CommitOp::Flush(_) | CommitOp::Audit(..) => {}
        }
    }
    let jobs = sqlx::query_scalar::<_, String>(sql::RESOLVE_JOBS)
        .bind(ids)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect();
    let nonces = sqlx::query_scalar::<_, Vec<u8>>(sql::RESOLVE_NONCES)
        .bind(keys)
        .bind(now)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect();
    Ok((jobs, nonces))
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
    priority: Vec<i16>,
    boost: Vec<i64>,
    run_at: Vec<i64>,
    ckey: Vec<Option<String>>,
    callback: Vec<Option<String>>,
    /// Trace contexts (`enqueue_traced.sql` only, when `traced`).
    trace: Vec<Option<String>>,
    traced: bool,
}

/// What one batch writes: its nonces (each once) and its jobs' columns.
struct Batch {
    /// A stored nonce that expired before this instant may be taken over.
    now: i64,
    keys: Vec<Vec<u8>>,
    expiries: Vec<i64>,
    /// Per op: its nonce is a second copy within the batch (a replay of the first).
    dup: Vec<bool>,
    cols: JobColumns,
}

fn batch_of(ops: &[CommitOp]) -> Batch {
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
            CommitOp::Flush(_) | CommitOp::Audit(..) => None,
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
            cols.priority.push(i16::from(j.priority));
            cols.boost.push(j.boost_ms);
            cols.run_at.push(j.run_at);
            cols.ckey.push(j.ckey.clone());
            cols.callback.push(j.callback.clone());
            cols.traced |= j.trace.is_some();
            cols.trace.push(j.trace.clone());
        }
    }
    Batch {
        now,
        keys,
        expiries,
        dup,
        cols,
    }
}

/// Every caller of a batch that failed hears why (`err` makes each one's error).
fn fail(ops: &mut Vec<CommitOp>, err: impl Fn(&CommitOp) -> StoreError) {
    for op in ops.drain(..) {
        let e = err(&op);
        match op {
            CommitOp::Job(_, reply) => {
                let _ = reply.send(Err(e));
            }
            CommitOp::Nonce(_, _, reply) => {
                let _ = reply.send(Err(e));
            }
            CommitOp::Flush(reply) => {
                let _ = reply.send(());
            }
            CommitOp::Audit(entries, _) => lost(entries.len(), &e),
        }
    }
}

/// Audit records written behind that a failed batch took with it (docs/AUDIT.md).
fn lost(n: usize, e: &StoreError) {
    metrics::counter!(crate::telemetry::names::AUDIT_LOST).increment(n as u64);
    // Rate-limited like every fault: an outage fails many batches in a row.
    repeats::fault(
        "audit records lost",
        &format!("{n} audit record(s) written behind were lost with their batch: {e}"),
    );
}

/// Answers every op of a committed batch from what its statement returned.
fn answer(ops: &mut Vec<CommitOp>, dup: &[bool], (admitted, inserted, existing): BatchOutcome) {
    for (i, op) in ops.drain(..).enumerate() {
        match op {
            CommitOp::Flush(reply) => {
                let _ = reply.send(());
            }
            CommitOp::Audit(..) => {}
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
    // A batch with a traced call takes the statement that also writes trace contexts; every
    // other batch the one it always took (docs/TRACING.md).
    let traced = cols.traced;
    let statement = if traced {
        sql::ENQUEUE_TRACED
    } else {
        sql::ENQUEUE
    };
    let query = sqlx::query(statement)
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
        .bind(cols.priority)
        .bind(cols.boost)
        .bind(cols.run_at)
        .bind(cols.ckey)
        .bind(cols.callback);
    let query = if traced {
        query.bind(cols.trace)
    } else {
        query
    };
    let row = query.fetch_one(&mut *conn).await?;
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
