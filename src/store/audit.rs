//! The audit trail's side of the store that both drivers share: decoding stored records,
//! the chain's two ends, and the record a retention pass appends. docs/AUDIT.md.
//!
//! It must not seal or verify (`crate::audit` does) nor run statements (the drivers do:
//! the group commit appends records in the same transaction as its jobs).

use super::StoreError;
use crate::audit::{Entry, Head, Kind, Record};

/// The stored chain's ends: the last record, and the checkpoint of the pruned prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainEnds {
    pub head: Head,
    pub checkpoint: Head,
}

/// The most records one page of `audit_page` returns.
pub const PAGE: usize = 5000;

/// `audit_head.sql`'s row: seq, digest, pruned_seq, pruned_digest.
pub(crate) fn ends_from_row<'r, R>(r: &'r R) -> Result<ChainEnds, StoreError>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(ChainEnds {
        head: Head {
            seq: r.try_get(0)?,
            digest: r.try_get(1)?,
        },
        checkpoint: Head {
            seq: r.try_get(2)?,
            digest: r.try_get(3)?,
        },
    })
}

/// One row of `audit_page.sql`: seq, at, kind, actor, tool, args_digest, args, outcome,
/// count, request_id, job_id, trace_id, detail, prev, digest.
pub(crate) fn record_from_row<'r, R>(r: &'r R) -> Result<Record, StoreError>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let kind: String = r.try_get(2)?;
    let count: i64 = r.try_get(8)?;
    Ok(Record {
        seq: r.try_get(0)?,
        entry: Entry {
            at: r.try_get(1)?,
            // An unknown kind is kept as it reads, so the digest check reports the record.
            kind: Kind::parse(&kind)
                .ok_or_else(|| StoreError::Corrupt(format!("audit kind {kind:?}")))?,
            actor: r.try_get(3)?,
            tool: r.try_get(4)?,
            args_digest: r.try_get(5)?,
            args: r.try_get(6)?,
            outcome: r.try_get(7)?,
            count: u32::try_from(count).unwrap_or(u32::MAX),
            request_id: r.try_get(9)?,
            job_id: r.try_get(10)?,
            trace_id: r.try_get(11)?,
            detail: r.try_get(12)?,
        },
        prev: r.try_get(13)?,
        digest: r.try_get(14)?,
    })
}

/// The record a retention pass appends after deleting records `..=through`.
pub(crate) fn prune_entry(now: i64, through: &Head, deleted: u64) -> Entry {
    let mut e = Entry::new(now, Kind::Prune, "retention", "done");
    e.count = u32::try_from(deleted).unwrap_or(u32::MAX);
    e.detail = Some(format!(
        "records through {} deleted; checkpoint digest {}",
        through.seq, through.digest
    ));
    e
}

/// The audit entries of a batch's jobs, with what the commit did: `accepted` and the job's
/// id, or the id of the job its idempotency key already named.
pub(crate) fn job_entry(entry: &Entry, outcome: &super::Enqueued) -> Entry {
    let mut e = entry.clone();
    e.job_id = Some(outcome.id().0.clone());
    if let super::Enqueued::Existing(_) = outcome {
        e.outcome = "accepted_existing".into();
    }
    e
}
