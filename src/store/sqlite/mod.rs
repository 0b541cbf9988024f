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

mod admin;
mod audit;
mod bench;
mod browse;
mod claim;
mod copy;
mod open;
mod reader;
mod rows;
mod signals;
mod traces;
mod webhooks;
mod writer;

use std::sync::Arc;

use sqlx::{Row, SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot, Mutex};

use super::*;
use crate::jobs::CrashPolicy;
use crate::store::batch::{lookup, Lookup};
use claim::Claim;
use rows::{claimed_from_json, completions_json, json_strings, NoncePack, Rows};
use writer::{Durability, PendingNonces, WriteOp};

pub use open::{migrate, migrate_only, migrator};

pub(crate) mod sql;

struct Inner {
    read: SqlitePool,
    writer: Arc<Mutex<SqliteConnection>>,
    tx: mpsc::Sender<WriteOp>,
    nonces: PendingNonces,
    /// Audit records written behind (sync calls, refusals, reloads) for the next commit.
    audit: writer::PendingAudit,
    lookups: mpsc::Sender<Lookup>,
    durability: Durability,
    status: Arc<status::StoreStatus>,
    /// Wake-ups to and from the other processes on this database.
    signals: Arc<signals::Signals>,
}

/// SQLite implementation of [`Store`]. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
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
        let batch = completions_json(&done);
        // (statement, its rows, whether it takes `only_expired`)
        let mut statements: Vec<(&str, String, bool)> = [
            (sql::COMPLETE_SUCCEEDED, batch.succeeded, true),
            (sql::COMPLETE, batch.other, true),
            (sql::COMPLETE_ASK, batch.asked, false),
        ]
        .into_iter()
        .filter_map(|(q, rows, expired)| rows.map(|rows| (q, rows, expired)))
        .collect();
        let apply = |q: &'static str, rows: String, expired: bool| {
            let query = sqlx::query(q).bind(rows).bind(now);
            match expired {
                true => query.bind(only_expired as i64),
                false => query,
            }
        };
        let mut conn = self.inner.writer.lock().await;
        if statements.len() == 1 && !done.iter().any(|c| c.hooked) {
            // One kind of outcome and no job with a webhook: one statement, its own
            // transaction (the explicit one costs the drain ~2%: BENCHMARKS.md).
            let (q, batch, expired) = statements.swap_remove(0);
            let rows = apply(q, batch, expired).fetch_all(&mut *conn).await?;
            drop(conn);
            self.inner.durability.wait().await?;
            return Ok(self.changed(&rows));
        }
        // One transaction: the outcomes and, for jobs with a callback, their webhook events.
        writer::begin_immediate(&mut conn).await?;
        let written = async {
            let mut rows = Vec::new();
            for (q, batch, expired) in statements {
                rows.extend(apply(q, batch, expired).fetch_all(&mut *conn).await?);
            }
            webhooks::record_events(&mut conn, &webhooks::hooked(&rows)).await?;
            Ok::<_, StoreError>(rows)
        }
        .await;
        let rows = writer::finish(&mut conn, written).await?;
        drop(conn);
        // A finished job's outcome is what polls report: make it durable before the worker
        // forgets the job (a completion lost to a power cut would otherwise be rescued as
        // a failed attempt).
        self.inner.durability.wait().await?;
        Ok(self.changed(&rows))
    }

    /// The jobs a completion changed (their ids first in each row), signalled to whoever
    /// holds a call on them.
    fn changed(&self, rows: &[sqlx::sqlite::SqliteRow]) -> Vec<JobId> {
        let ids: Vec<JobId> = rows.iter().map(|r| JobId(r.get::<String, _>(0))).collect();
        self.inner
            .signals
            .send_changed(ids.iter().map(|id| id.0.as_str()));
        ids
    }
}

impl Store for SqliteStore {
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(SqliteStore::close(self))
    }

    fn wakeups(&self) -> Option<Arc<tokio::sync::Notify>> {
        self.inner.signals.enqueued()
    }

    fn job_changes(&self) -> Option<Arc<crate::store::changes::JobChanges>> {
        Some(self.inner.signals.changes())
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

    fn status(&self) -> &Arc<status::StoreStatus> {
        &self.inner.status
    }

    /// A read, then a write of the header page through the writer connection: after a full
    /// disk or a read-only remount, reads work long before writes do.
    fn probe(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            self.ping().await?;
            let mut writer = self.inner.writer.lock().await;
            let v: i64 = sqlx::query_scalar("PRAGMA user_version")
                .fetch_one(&mut *writer)
                .await?;
            sqlx::query(&format!("PRAGMA user_version = {v}"))
                .execute(&mut *writer)
                .await?;
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
                Ok(Err(e)) => Err(e),
                Err(_) => Err(StoreError::Closed),
            }
        })
    }

    fn get_job<'a>(
        &'a self,
        client: &'a ClientId,
        id: &'a JobId,
    ) -> BoxFuture<'a, Result<Option<JobRecord>, StoreError>> {
        Box::pin(lookup(&self.inner.lookups, client, id))
    }

    fn cancel<'a>(
        &'a self,
        client: &'a ClientId,
        id: &'a JobId,
        now: i64,
    ) -> BoxFuture<'a, Result<CancelOutcome, StoreError>> {
        Box::pin(async move {
            let mut conn = self.inner.writer.lock().await;
            writer::begin_immediate(&mut conn).await?;
            let written = async {
                let q = sqlx::query(sql::CANCEL_QUEUED)
                    .bind(&id.0)
                    .bind(&client.0)
                    .bind(now)
                    .fetch_optional(&mut *conn)
                    .await?;
                let outcome = if q.is_some() {
                    webhooks::record_events(&mut conn, std::slice::from_ref(&id.0)).await?;
                    CancelOutcome::Cancelled
                } else if sqlx::query(sql::CANCEL_RUNNING)
                    .bind(&id.0)
                    .bind(&client.0)
                    .fetch_optional(&mut *conn)
                    .await?
                    .is_some()
                {
                    CancelOutcome::Requested
                } else {
                    let state: Option<String> = sqlx::query_scalar(sql::JOB_STATE)
                        .bind(&id.0)
                        .bind(&client.0)
                        .fetch_optional(&mut *conn)
                        .await?;
                    match state.as_deref().and_then(JobState::parse) {
                        Some(s) => CancelOutcome::AlreadyFinished(s),
                        None => CancelOutcome::NotFound,
                    }
                };
                Ok::<_, StoreError>(outcome)
            }
            .await;
            let outcome = writer::finish(&mut conn, written).await?;
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
            writer::begin_immediate(&mut conn).await?;
            // `Err(outcome)`: answered without a write.
            let written = async {
                let row: Option<(String, Option<String>, Option<String>)> =
                    sqlx::query_as(sql::ANSWER_READ)
                        .bind(&id.0)
                        .bind(&client.0)
                        .fetch_optional(&mut *conn)
                        .await?;
                let Some((state, requests, so_far)) = row else {
                    return Ok(Err(AnswerOutcome::NotFound));
                };
                let state = JobState::parse(&state)
                    .ok_or_else(|| StoreError::Corrupt(format!("state {state:?}")))?;
                let plan =
                    super::plan_answers(state, requests.as_deref(), so_far.as_deref(), answers);
                let (left, so_far, outcome) = match plan {
                    AnswerPlan::Done(outcome) => return Ok(Err(outcome)),
                    AnswerPlan::Write {
                        left,
                        so_far,
                        outcome,
                    } => (left, so_far, outcome),
                };
                // The writer lock and BEGIN IMMEDIATE make the read and this write one step;
                // the guard on the requests read keeps it right without them too.
                let row = sqlx::query(sql::ANSWER_WRITE)
                    .bind(&id.0)
                    .bind(&requests)
                    .bind(left)
                    .bind(&so_far)
                    .bind(now)
                    .fetch_optional(&mut *conn)
                    .await?;
                Ok::<_, StoreError>(Ok((row.is_some(), outcome)))
            }
            .await;
            let step = writer::finish(&mut conn, written).await?;
            drop(conn);
            let (written, outcome) = match step {
                Ok(v) => v,
                Err(outcome) => return Ok(outcome),
            };
            if !written {
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

    fn schedule_ticks(&self) -> BoxFuture<'_, Result<Vec<(String, i64)>, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query(sql::SCHEDULE_TICKS)
                .fetch_all(&self.inner.read)
                .await?;
            rows.iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                .collect()
        })
    }

    fn record_tick<'a>(
        &'a self,
        name: &'a str,
        tick_ms: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let q = sqlx::query(sql::RECORD_TICK).bind(name).bind(tick_ms);
            let mut conn = self.inner.writer.lock().await;
            q.execute(&mut *conn).await?;
            drop(conn);
            self.inner.durability.wait().await?;
            Ok(())
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
            stats_from_rows(&rows)
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
            let mut conn = self.inner.writer.lock().await;
            let claim = Claim {
                worker,
                limit,
                now,
                lease_ms,
                filter,
            };
            let rows = if filter.capped.is_empty() {
                // The common case stays one autocommit statement.
                claim.run(&mut conn).await?
            } else {
                // A capped tool's running jobs are counted (and a keyed tool's queue read,
                // a start rate's bucket read and written) with no other process's claim in
                // between: one write transaction.
                writer::begin_immediate(&mut conn).await?;
                let written = claim.run(&mut conn).await;
                writer::finish(&mut conn, written).await?
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
            let (state, entry) = resolution.transition(by);
            let mut conn = self.inner.writer.lock().await;
            writer::begin_immediate(&mut conn).await?;
            let written = async {
                let row = sqlx::query(sql::RESOLVE_IN_DOUBT)
                    .bind(&id.0)
                    .bind(state)
                    .bind(now)
                    .bind(entry)
                    .fetch_optional(&mut *conn)
                    .await?;
                if row.is_some() {
                    webhooks::record_events(&mut conn, std::slice::from_ref(&id.0)).await?;
                }
                Ok::<_, StoreError>(row)
            }
            .await;
            let row = writer::finish(&mut conn, written).await?;
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

    fn save_attempt_state<'a>(
        &'a self,
        id: &'a JobId,
        fence: i64,
        state: Option<&'a str>,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let mut conn = self.inner.writer.lock().await;
            let r = sqlx::query(sql::SAVE_ATTEMPT_STATE)
                .bind(&id.0)
                .bind(fence)
                .bind(state)
                .execute(&mut *conn)
                .await?;
            Ok(r.rows_affected() == 1)
        })
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

    fn job_by_key<'a>(
        &'a self,
        client: &'a ClientId,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<(JobId, i64)>, StoreError>> {
        Box::pin(async move {
            let row: Option<(String, i64)> = sqlx::query_as(sql::JOB_BY_KEY)
                .bind(&client.0)
                .bind(key)
                .fetch_optional(&self.inner.read)
                .await?;
            Ok(row.map(|(id, at)| (JobId(id), at)))
        })
    }

    fn traced_jobs<'a>(
        &'a self,
        ids: &'a [JobId],
    ) -> BoxFuture<'a, Result<Vec<TracedJob>, StoreError>> {
        Box::pin(traces::traced_jobs(&self.inner.read, ids))
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

    fn expire_waiting<'a>(
        &'a self,
        waiting_since: i64,
        now: i64,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            let mut conn = self.inner.writer.lock().await;
            writer::begin_immediate(&mut conn).await?;
            let written = async {
                let rows = sqlx::query(sql::EXPIRE_WAITING)
                    .bind(waiting_since)
                    .bind(now)
                    .bind(reason)
                    .fetch_all(&mut *conn)
                    .await?;
                webhooks::record_events(&mut conn, &webhooks::hooked(&rows)).await?;
                Ok::<_, StoreError>(rows)
            }
            .await;
            let rows = writer::finish(&mut conn, written).await?;
            Ok(rows.len() as u64)
        })
    }

    fn claim_webhooks<'a>(
        &'a self,
        owner: &'a str,
        now: i64,
        lease_ms: i64,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<outbox::OutboxEvent>, StoreError>> {
        Box::pin(self.claim_hooks(owner, now, lease_ms, limit))
    }

    fn report_webhooks<'a>(
        &'a self,
        owner: &'a str,
        reports: Vec<outbox::DeliveryReport>,
        now: i64,
    ) -> BoxFuture<'a, Result<usize, StoreError>> {
        Box::pin(self.report_hooks(owner, reports, now))
    }

    fn webhook_backlog(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(self.hook_backlog())
    }

    fn audit(&self, entries: Vec<crate::audit::Entry>) {
        if entries.is_empty() {
            return;
        }
        let first = {
            let mut pending = self.inner.audit.lock().unwrap_or_else(|p| p.into_inner());
            let first = pending.is_empty();
            pending.extend(entries);
            first
        };
        // A full queue means a commit is coming anyway; it takes the buffer.
        if first {
            let _ = self.inner.tx.try_send(WriteOp::NoncesPending);
        }
    }

    fn prune_audit(
        &self,
        before: i64,
        limit: i64,
        now: i64,
    ) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(self.prune_audit_now(before, limit, now))
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
            drop(conn);
            self.prune_hooks(finished_before).await?;
            Ok(jobs)
        })
    }
}
