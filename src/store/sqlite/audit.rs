//! The audit trail on SQLite: an operator's records appended now, and retention. Both take
//! the write lock (`BEGIN IMMEDIATE`) on the writer connection, so the head they read is
//! the committed one; the group commit's cached head then no longer matches and its next
//! statement reseals (`writer::write_batch`). docs/AUDIT.md.
//!
//! It must not decide what is recorded (`crate::audit::writer` and the callers do).

use sqlx::{Connection, Row};

use super::{sql, writer, SqliteStore};
use crate::audit::{Entry, Head};
use crate::store::audit::{ends_from_row, prune_entry};
use crate::store::StoreError;

impl SqliteStore {
    /// Appends `entries` durably, now.
    pub(super) async fn append_now(&self, entries: Vec<Entry>) -> Result<(), StoreError> {
        let mut conn = self.inner.writer.lock().await;
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        writer::append_in_tx(&mut tx, entries).await?;
        tx.commit().await?;
        drop(conn);
        self.inner.durability.wait().await?;
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
        let mut conn = self.inner.writer.lock().await;
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        let ends = ends_from_row(&sqlx::query(sql::AUDIT_HEAD).fetch_one(&mut *tx).await?)?;
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
        writer::append_in_tx(&mut tx, vec![prune_entry(now, &through, n)]).await?;
        tx.commit().await?;
        drop(conn);
        self.inner.durability.wait().await?;
        Ok(n)
    }
}
