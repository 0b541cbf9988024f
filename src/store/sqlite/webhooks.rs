//! The SQLite side of the webhook outbox (docs/WEBHOOKS.md): writing a state change's
//! events in its transaction ([`record_events`]), leasing due events, applying delivery
//! reports, the backlog and a job's deliveries.
//!
//! It must not deliver or decide retries; it writes what it is handed.

use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::SqliteStore;
use crate::envelope::ClientId;
use crate::jobs::JobId;
use crate::store::outbox::{DeliveryFate, DeliveryReport, OutboxEvent, WebhookDelivery};
use crate::store::StoreError;

pub(super) const EVENTS: &str = include_str!("sql/webhook_events.sql");
pub(super) const DUE: &str = include_str!("sql/webhook_due.sql");
pub(super) const CLAIM: &str = include_str!("sql/webhook_claim.sql");
pub(super) const REPORT: &str = include_str!("sql/webhook_report.sql");
pub(super) const BACKLOG: &str = include_str!("sql/webhook_backlog.sql");
pub(super) const DELIVERIES: &str = include_str!("sql/webhook_deliveries.sql");
pub(super) const PRUNE: &str = include_str!("sql/prune_webhooks.sql");

/// Writes the webhook events of `ids`, jobs the caller's statement just moved, on the
/// caller's connection inside its transaction (so the events are durable exactly when the
/// change is). Jobs without a callback, or in a state that is no event, write nothing.
pub(super) async fn record_events(
    conn: &mut sqlx::SqliteConnection,
    ids: &[String],
) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    let json = serde_json::to_string(ids).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    sqlx::query(EVENTS).bind(json).execute(&mut *conn).await?;
    Ok(())
}

/// The ids of `rows` (`id, callback IS NOT NULL`) whose job has a callback.
pub(super) fn hooked(rows: &[SqliteRow]) -> Vec<String> {
    rows.iter()
        .filter(|r| r.try_get::<bool, _>(1).unwrap_or(false))
        .filter_map(|r| r.try_get::<String, _>(0).ok())
        .collect()
}

fn event_of(r: &SqliteRow) -> Result<OutboxEvent, StoreError> {
    Ok(OutboxEvent {
        seq: r.try_get(0)?,
        job_id: JobId(r.try_get(1)?),
        client_id: ClientId(r.try_get(2)?),
        url: r.try_get(3)?,
        state: r.try_get(4)?,
        tool: r.try_get(5)?,
        attempt: r.try_get::<i64, _>(6)?.max(0) as u32,
        result: r.try_get(7)?,
        error: r.try_get(8)?,
        input_requests: r.try_get(9)?,
        at: r.try_get(10)?,
        attempts: r.try_get::<i64, _>(11)?.max(0) as u32,
    })
}

impl SqliteStore {
    pub(super) async fn claim_hooks(
        &self,
        owner: &str,
        now: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<OutboxEvent>, StoreError> {
        // An idle deliverer's poll stays off the write lock the other processes commit with.
        let due: i64 = sqlx::query_scalar(DUE)
            .bind(now)
            .fetch_one(&self.inner.read)
            .await?;
        if due == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.inner.writer.lock().await;
        let rows = sqlx::query(CLAIM)
            .bind(owner)
            .bind(now)
            .bind(lease_ms)
            .bind(limit as i64)
            .fetch_all(&mut *conn)
            .await?;
        drop(conn);
        rows.iter().map(event_of).collect()
    }

    pub(super) async fn report_hooks(
        &self,
        owner: &str,
        reports: Vec<DeliveryReport>,
        now: i64,
    ) -> Result<usize, StoreError> {
        if reports.is_empty() {
            return Ok(0);
        }
        let mut conn = self.inner.writer.lock().await;
        super::writer::begin_immediate(&mut conn).await?;
        let written = async {
            let mut applied = 0;
            for r in &reports {
                let next_at = match r.fate {
                    DeliveryFate::Retry { next_at } => Some(next_at),
                    DeliveryFate::Delivered | DeliveryFate::GaveUp => None,
                };
                applied += sqlx::query(REPORT)
                    .bind(r.seq)
                    .bind(owner)
                    .bind(now)
                    .bind(r.status.map(i64::from))
                    .bind(r.error.as_deref())
                    .bind(next_at)
                    .bind((r.fate == DeliveryFate::Delivered) as i64)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected() as usize;
            }
            Ok::<_, StoreError>(applied)
        }
        .await;
        let applied = super::writer::finish(&mut conn, written).await?;
        Ok(applied)
    }

    pub(super) async fn hook_backlog(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(BACKLOG)
            .fetch_one(&self.inner.read)
            .await?;
        Ok(n.max(0) as u64)
    }

    pub(super) async fn hook_deliveries(
        &self,
        job: &JobId,
    ) -> Result<Vec<WebhookDelivery>, StoreError> {
        let rows = sqlx::query(DELIVERIES)
            .bind(&job.0)
            .fetch_all(&self.inner.read)
            .await?;
        rows.iter()
            .map(|r| {
                let seq: i64 = r.try_get(0)?;
                let job: String = r.try_get(1)?;
                let done: Option<i64> = r.try_get(8)?;
                let delivered: i64 = r.try_get(9)?;
                Ok(WebhookDelivery {
                    webhook_id: format!("msg_{job}_{seq}"),
                    url: r.try_get(2)?,
                    event: r.try_get(3)?,
                    attempts: r.try_get::<i64, _>(4)?.max(0) as u32,
                    last_status: r.try_get::<Option<i64>, _>(5)?.map(|s| s as u16),
                    last_error: r.try_get(6)?,
                    last_at: r.try_get(7)?,
                    status: WebhookDelivery::status_of(done.is_some(), delivered != 0),
                    next_at: if done.is_none() { r.try_get(10)? } else { None },
                })
            })
            .collect()
    }

    /// Retention of done events, beside the jobs' (`prune`).
    pub(super) async fn prune_hooks(&self, before: i64) -> Result<u64, StoreError> {
        let mut conn = self.inner.writer.lock().await;
        Ok(sqlx::query(PRUNE)
            .bind(before)
            .execute(&mut *conn)
            .await?
            .rows_affected())
    }
}
