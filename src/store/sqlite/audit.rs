//! The audit trail on SQLite: an operator's records appended now, retention, and reading
//! the packed records back. Records are stored a group commit at a time, one `audit_packs`
//! row each (migration 0014); appending and retention take the write lock (`BEGIN
//! IMMEDIATE`) on the writer connection, so the head they read is the committed one; the
//! group commit's cached head then no longer matches and its next statement reseals
//! (`writer::write_batch`). docs/AUDIT.md.
//!
//! It must not decide what is recorded (`crate::audit::writer` and the callers do).

use futures_util::TryStreamExt;
use sqlx::Row;

use super::{sql, writer, SqliteStore};
use crate::audit::{Entry, Head, Kind, Record};
use crate::store::audit::{ends_from_row, prune_entry};
use crate::store::StoreError;

/// One positional row of a pack, as `rows::push_record` writes it.
type Packed = (
    i64,
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    String,
);

/// Appends the records of one pack that come after `after_seq` and were written at or
/// after `since` to `out`.
pub(super) fn unpack(
    pack: &str,
    after_seq: i64,
    since: i64,
    out: &mut Vec<Record>,
) -> Result<(), StoreError> {
    let rows: Vec<Packed> =
        serde_json::from_str(pack).map_err(|e| StoreError::Corrupt(format!("audit pack: {e}")))?;
    for r in rows {
        let (seq, at, kind, actor, tool, args_digest, args, outcome, count) =
            (r.0, r.1, r.2, r.3, r.4, r.5, r.6, r.7, r.8);
        if seq <= after_seq || at < since {
            continue;
        }
        out.push(Record {
            seq,
            entry: Entry {
                at,
                kind: Kind::parse(&kind)
                    .ok_or_else(|| StoreError::Corrupt(format!("audit kind {kind:?}")))?,
                actor,
                tool,
                args_digest,
                args,
                outcome,
                count: u32::try_from(count).unwrap_or(u32::MAX),
                request_id: r.9,
                job_id: r.10,
                trace_id: r.11,
                detail: r.12,
            },
            prev: r.13,
            digest: r.14,
        });
    }
    Ok(())
}

impl SqliteStore {
    /// Up to `limit` records after `after_seq` written at or after `since`, in chain order,
    /// unpacked from as many packs as it takes.
    pub(super) async fn audit_records(
        &self,
        after_seq: i64,
        since: i64,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        let mut out = Vec::new();
        let mut packs = sqlx::query(sql::AUDIT_PAGE)
            .bind(after_seq)
            .bind(since)
            .bind(limit as i64)
            .fetch(&self.inner.read);
        while let Some(row) = packs.try_next().await? {
            unpack(row.try_get(0)?, after_seq, since, &mut out)?;
            if out.len() >= limit {
                // The next page starts after the last record handed out, inside this pack.
                out.truncate(limit);
                break;
            }
        }
        Ok(out)
    }

    /// Appends `entries` durably, now.
    pub(super) async fn append_now(&self, entries: Vec<Entry>) -> Result<(), StoreError> {
        let mut conn = self.inner.writer.lock().await;
        super::writer::begin_immediate(&mut conn).await?;
        let written = async {
            writer::append_in_tx(&mut conn, entries).await?;
            Ok::<_, StoreError>(())
        }
        .await;
        super::writer::finish(&mut conn, written).await?;
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
        super::writer::begin_immediate(&mut conn).await?;
        let written = async {
            let ends = ends_from_row(&sqlx::query(sql::AUDIT_HEAD).fetch_one(&mut *conn).await?)?;
            let point = sqlx::query(sql::AUDIT_PRUNE_POINT)
                .bind(before)
                .bind(limit)
                .bind(ends.checkpoint.seq)
                .fetch_optional(&mut *conn)
                .await?;
            let Some(point) = point else {
                return Ok(0);
            };
            let through = Head {
                seq: point.try_get(0)?,
                digest: point.try_get(1)?,
            };
            let n: u64 = sqlx::query_scalar::<_, i64>(sql::AUDIT_PRUNE)
                .bind(through.seq)
                .fetch_all(&mut *conn)
                .await?
                .into_iter()
                .map(|records| records.max(0) as u64)
                .sum();
            sqlx::query(sql::AUDIT_CHECKPOINT)
                .bind(through.seq)
                .bind(&through.digest)
                .execute(&mut *conn)
                .await?;
            writer::append_in_tx(&mut conn, vec![prune_entry(now, &through, n)]).await?;
            Ok::<_, StoreError>(n)
        }
        .await;
        let n = super::writer::finish(&mut conn, written).await?;
        drop(conn);
        self.inner.durability.wait().await?;
        Ok(n)
    }
}
