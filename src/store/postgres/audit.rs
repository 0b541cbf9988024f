//! The audit trail on PostgreSQL: an operator's records appended now, and retention. Each
//! is one transaction that first locks the chain's single head row (`audit_head_lock.sql`),
//! as the group commit does, so every daemon and process sharing the database appends to
//! one chain. docs/AUDIT.md.
//!
//! It must not decide what is recorded (`crate::audit::writer` and the callers do).

use sqlx::{Connection, Row};

use super::{sql, writer, PgStore};
use crate::audit::{Entry, Head};
use crate::store::audit::{ends_from_row, prune_entry};
use crate::store::StoreError;

impl PgStore {
    /// Appends `entries` durably, now.
    pub(super) async fn append_now(&self, entries: Vec<Entry>) -> Result<(), StoreError> {
        let mut conn = self.inner.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        let start = writer::lock_head(&mut tx).await?;
        writer::append_locked(&mut tx, &start, entries).await?;
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
        writer::append_locked(&mut tx, &ends.head, vec![prune_entry(now, &through, n)]).await?;
        tx.commit().await?;
        Ok(n)
    }
}
