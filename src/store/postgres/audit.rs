//! The audit trail on PostgreSQL: an operator's records appended now, and retention. Each
//! is one transaction that first locks the chain's single head row (`audit_head_lock.sql`),
//! as the group commit does, so every daemon and process sharing the database appends to
//! one chain. docs/AUDIT.md.
//!
//! It must not decide what is recorded (`crate::audit::writer` and the callers do).

use sqlx::{Connection, PgConnection, Row};

use tokio::sync::mpsc;

use super::writer::CommitOp;
use super::{sql, writer, PgStore};
use crate::audit::{self, Entry, Head};
use crate::store::audit::{ends_from_row, prune_entry};
use crate::store::StoreError;

impl PgStore {
    /// Hands records written behind to the group commit (docs/AUDIT.md); never waits.
    pub(super) fn audit_behind(&self, entries: Vec<Entry>) {
        if entries.is_empty() {
            return;
        }
        let op = CommitOp::Audit(entries, writer::InFlight::new(&self.inner.audit_inflight));
        if let Err(mpsc::error::TrySendError::Full(op)) = self.inner.tx.try_send(op) {
            let tx = self.inner.tx.clone();
            tokio::spawn(async move {
                let _ = tx.send(op).await;
            });
        }
    }

    /// Appends `entries` durably, now.
    pub(super) async fn append_now(&self, entries: Vec<Entry>) -> Result<(), StoreError> {
        let mut conn = self.inner.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        let start = lock_head(&mut tx).await?;
        append_locked(&mut tx, &start, entries).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes the records written before `before` (at most `limit` past the checkpoint),
    /// moves the checkpoint to the last one deleted and appends the `prune` record, in one
    /// transaction.
    pub(super) async fn prune_audit_now(
        &self,
        before: i64,
        limit: i64,
        now: i64,
    ) -> Result<u64, StoreError> {
        let mut conn = self.inner.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        let ends = ends_from_row(
            &sqlx::query(sql::AUDIT_HEAD_LOCK)
                .fetch_one(&mut *tx)
                .await?,
        )?;
        let point = sqlx::query(sql::AUDIT_PRUNE_POINT)
            .bind(before)
            .bind(limit)
            .bind(ends.checkpoint.seq)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(point) = point else {
            return Ok(0);
        };
        let through = Head {
            seq: point.try_get(0)?,
            digest: point.try_get(1)?,
        };
        let n = sqlx::query(sql::AUDIT_PRUNE)
            .bind(through.seq)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query(sql::AUDIT_CHECKPOINT)
            .bind(through.seq)
            .bind(&through.digest)
            .execute(&mut *tx)
            .await?;
        append_locked(&mut tx, &ends.head, vec![prune_entry(now, &through, n)]).await?;
        tx.commit().await?;
        Ok(n)
    }
}

/// Locks the chain's head row for the rest of the transaction and reads it.
pub(super) async fn lock_head(tx: &mut PgConnection) -> Result<Head, sqlx::Error> {
    let r = sqlx::query(sql::AUDIT_HEAD_LOCK)
        .fetch_one(&mut *tx)
        .await?;
    Ok(Head {
        seq: r.try_get(0)?,
        digest: r.try_get(1)?,
    })
}

/// Seals `entries` onto `start` (the head this transaction locked) and writes them with the
/// new head; returns it.
pub(super) async fn append_locked(
    tx: &mut PgConnection,
    start: &Head,
    entries: Vec<Entry>,
) -> Result<Head, sqlx::Error> {
    if entries.is_empty() {
        return Ok(start.clone());
    }
    let (sealed, end) = audit::seal(start, entries);
    let mut c = RecordColumns::default();
    for r in sealed {
        c.push(r);
    }
    sqlx::query(sql::AUDIT_APPEND)
        .bind(c.seq)
        .bind(c.at)
        .bind(c.kind)
        .bind(c.actor)
        .bind(c.tool)
        .bind(c.args_digest)
        .bind(c.args)
        .bind(c.outcome)
        .bind(c.count)
        .bind(c.request_id)
        .bind(c.job_id)
        .bind(c.trace_id)
        .bind(c.detail)
        .bind(c.prev)
        .bind(c.digest)
        .bind(end.seq)
        .bind(&end.digest)
        .execute(&mut *tx)
        .await?;
    Ok(end)
}

/// `audit_append.sql`'s columns, one array each.
#[derive(Default)]
struct RecordColumns {
    seq: Vec<i64>,
    at: Vec<i64>,
    kind: Vec<String>,
    actor: Vec<String>,
    tool: Vec<Option<String>>,
    args_digest: Vec<Option<String>>,
    args: Vec<Option<String>>,
    outcome: Vec<String>,
    count: Vec<i32>,
    request_id: Vec<Option<String>>,
    job_id: Vec<Option<String>>,
    trace_id: Vec<Option<String>>,
    detail: Vec<Option<String>>,
    prev: Vec<String>,
    digest: Vec<String>,
}

impl RecordColumns {
    fn push(&mut self, r: audit::Record) {
        let e = r.entry;
        self.seq.push(r.seq);
        self.at.push(e.at);
        self.kind.push(e.kind.as_str().to_string());
        self.actor.push(e.actor);
        self.tool.push(e.tool);
        self.args_digest.push(e.args_digest);
        self.args.push(e.args);
        self.outcome.push(e.outcome);
        self.count.push(i32::try_from(e.count).unwrap_or(i32::MAX));
        self.request_id.push(e.request_id);
        self.job_id.push(e.job_id);
        self.trace_id.push(e.trace_id);
        self.detail.push(e.detail);
        self.prev.push(r.prev);
        self.digest.push(r.digest);
    }
}
