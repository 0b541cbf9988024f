//! The PostgreSQL write path: group committers (enqueues and nonces, one statement per batch
//! on connections of their own) and the notifier that wakes listening workers after jobs
//! commit.
//!
//! It must not decide job transitions; it writes what it is handed, in batches.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::{Connection, PgConnection, Row};
use tokio::sync::{mpsc, oneshot, Mutex, Notify};

use super::sql;
use crate::auth::NonceRecord;
use crate::jobs::JobId;
use crate::store::batch::take_batch;
use crate::store::{Enqueued, NewJob, StoreError};

/// The channel `enqueue.sql` notifies after inserting jobs.
pub(super) const CHANNEL: &str = "mcpq_jobs";
pub(super) const MAX_BATCH: usize = 2048;

/// A write waiting for the next group commit.
pub(super) enum CommitOp {
    Job(Box<NewJob>, oneshot::Sender<Result<Enqueued, StoreError>>),
    /// A sync call's nonce and the time of the call: answered `true` if admitted, `false` if
    /// another caller had it.
    Nonce(NonceRecord, i64, oneshot::Sender<Result<bool, StoreError>>),
    Flush(oneshot::Sender<()>),
}

/// Sends `NOTIFY mcpq_jobs` after enqueues commit, at most once per [`NOTIFY_EVERY`]: one
/// notification wakes every listening worker, and each then claims everything due. Kept out
/// of the enqueue statement: a transaction that notifies holds PostgreSQL's notify-queue lock
/// through its commit, which serialized the group commits' WAL flushes.
pub(super) async fn notify_loop(
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
pub(super) async fn group_commit(
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
        metrics::histogram!(crate::telemetry::names::BATCH_ROWS).record(n as f64);
        metrics::histogram!(crate::telemetry::names::COMMIT_SECONDS)
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
    priority: Vec<i16>,
    boost: Vec<i64>,
    run_at: Vec<i64>,
    ckey: Vec<Option<String>>,
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

/// Writes one batch and answers every op in it; returns true if the statement failed.
async fn commit_batch(conn: &mut PgConnection, ops: &mut Vec<CommitOp>) -> bool {
    let Batch {
        now,
        keys,
        expiries,
        dup,
        cols,
    } = batch_of(ops);
    let outcome = if keys.is_empty() && cols.id.is_empty() {
        Ok((HashSet::new(), HashSet::new(), HashMap::new()))
    } else {
        write_batch(conn, keys, expiries, now, cols, ops, &dup).await
    };
    match outcome {
        Ok(outcome) => {
            answer(ops, &dup, outcome);
            false
        }
        Err(e) => {
            tracing::error!(error = %e, "group commit failed; its callers get an internal error");
            fail(ops, &e.to_string());
            true
        }
    }
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
            cols.priority.push(i16::from(j.priority));
            cols.boost.push(j.boost_ms);
            cols.run_at.push(j.run_at);
            cols.ckey.push(j.ckey.clone());
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

/// Every caller of a batch whose statement failed hears why.
fn fail(ops: &mut Vec<CommitOp>, msg: &str) {
    for op in ops.drain(..) {
        match op {
            CommitOp::Job(_, reply) => {
                let _ = reply.send(Err(StoreError::Commit(msg.to_string())));
            }
            CommitOp::Nonce(_, _, reply) => {
                let _ = reply.send(Err(StoreError::Commit(msg.to_string())));
            }
            CommitOp::Flush(reply) => {
                let _ = reply.send(());
            }
        }
    }
}

/// Answers every op of a committed batch from what its statement returned.
fn answer(ops: &mut Vec<CommitOp>, dup: &[bool], (admitted, inserted, existing): BatchOutcome) {
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
        .bind(cols.priority)
        .bind(cols.boost)
        .bind(cols.run_at)
        .bind(cols.ckey)
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
