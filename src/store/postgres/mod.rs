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

use sqlx::postgres::PgPool;
use sqlx::Row;
use tokio::sync::{mpsc, oneshot, Mutex, Notify};

use super::*;
use crate::auth::NonceKey;
use crate::jobs::CrashPolicy;
use crate::store::batch::{lookup, Lookup};
use rows::{claimed_from_row, count, state_of};
use writer::CommitOp;

pub use open::{connect_options, migrate_only, migrator};

pub(crate) mod sql;

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
    status: Arc<status::StoreStatus>,
    /// Audit ops written behind and not yet committed (`writer::InFlight`).
    audit_inflight: Arc<std::sync::atomic::AtomicUsize>,
    /// Changed jobs, to this process's held calls and other processes'.
    changes: Arc<signals::Changes>,
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

impl PgStore {
    async fn send(&self, op: CommitOp) -> Result<(), StoreError> {
        self.inner.tx.send(op).await.map_err(|_| StoreError::Closed)
    }

    /// Runs a retention statement (`$1` the bound, `$2` the batch size) until a pass
    /// deletes less than a batch; returns how many rows it deleted.
    async fn prune_batches(&self, statement: &'static str, bound: i64) -> Result<u64, StoreError> {
        let batch = self.inner.prune_batch;
        let mut total = 0;
        loop {
            let n = sqlx::query(statement)
                .bind(bound)
                .bind(batch)
                .execute(&self.inner.pool)
                .await?
                .rows_affected();
            total += n;
            if (n as i64) < batch {
                return Ok(total);
            }
        }
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
        let ids: Vec<JobId> = rows
            .iter()
            .map(|r| Ok(JobId(r.try_get(0)?)))
            .collect::<Result<_, StoreError>>()?;
        self.inner.changes.send(ids.iter().map(|id| id.0.as_str()));
        Ok(ids)
    }
}

impl Store for PgStore {
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            sqlx::query("SELECT 1").execute(&self.inner.pool).await?;
            Ok(())
        })
    }

    fn status(&self) -> &Arc<status::StoreStatus> {
        &self.inner.status
    }

    /// On a connection of its own: the pool would wait out its acquire timeout retrying a
    /// server that refuses connections, where a fresh connect fails (or succeeds) at once.
    fn probe(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            use sqlx::Connection;
            let opts = self.inner.pool.connect_options();
            let mut conn = sqlx::PgConnection::connect_with(&opts).await?;
            sqlx::query("SELECT 1").execute(&mut conn).await?;
            let _ = conn.close().await;
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
        Box::pin(lookup(&self.inner.lookups, client, id))
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
            let (state, entry) = resolution.transition(by);
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

    fn save_attempt_state<'a>(
        &'a self,
        id: &'a JobId,
        fence: i64,
        state: Option<&'a str>,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let _turn = self.inner.writes.lock().await;
            let r = sqlx::query(sql::SAVE_ATTEMPT_STATE)
                .bind(&id.0)
                .bind(fence)
                .bind(state)
                .execute(&self.inner.pool)
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

    fn job_by_key<'a>(
        &'a self,
        client: &'a ClientId,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<(JobId, i64)>, StoreError>> {
        Box::pin(async move {
            let row: Option<(String, i64)> = sqlx::query_as(sql::JOB_BY_KEY)
                .bind(&client.0)
                .bind(key)
                .fetch_optional(&self.inner.pool)
                .await?;
            Ok(row.map(|(id, at)| (JobId(id), at)))
        })
    }

    fn traced_jobs<'a>(
        &'a self,
        ids: &'a [JobId],
    ) -> BoxFuture<'a, Result<Vec<TracedJob>, StoreError>> {
        Box::pin(traces::traced_jobs(&self.inner.pool, ids))
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

    fn schedule_ticks(&self) -> BoxFuture<'_, Result<Vec<(String, i64)>, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query(sql::SCHEDULE_TICKS)
                .fetch_all(&self.inner.pool)
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
            q.execute(&self.inner.pool).await?;
            Ok(())
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
            stats_from_rows(&rows)
        })
    }

    fn expire_waiting<'a>(
        &'a self,
        waiting_since: i64,
        now: i64,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            Ok(sqlx::query(sql::EXPIRE_WAITING)
                .bind(waiting_since)
                .bind(now)
                .bind(reason)
                .execute(&self.inner.pool)
                .await?
                .rows_affected())
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

    fn prune(&self, finished_before: i64, now: i64) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let jobs = self.prune_batches(sql::PRUNE_JOBS, finished_before).await?;
            self.prune_batches(sql::PRUNE_NONCES, now).await?;
            self.prune_hooks(finished_before).await?;
            Ok(jobs)
        })
    }

    fn audit(&self, entries: Vec<crate::audit::Entry>) {
        self.audit_behind(entries)
    }

    fn prune_audit(
        &self,
        before: i64,
        limit: i64,
        now: i64,
    ) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(self.prune_audit_now(before, limit, now))
    }

    fn wakeups(&self) -> Option<Arc<Notify>> {
        self.inner.wake.clone()
    }

    fn job_changes(&self) -> Option<Arc<crate::store::changes::JobChanges>> {
        Some(self.inner.changes.waiters())
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let _ = self.flush().await;
            // Records written behind may sit in another committer's batch than the flush.
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
            while self
                .inner
                .audit_inflight
                .load(std::sync::atomic::Ordering::SeqCst)
                > 0
                && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            self.inner.stop.cancel();
            self.inner.pool.close().await;
        })
    }
}
