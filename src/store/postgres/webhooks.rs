//! The PostgreSQL side of the webhook outbox (docs/WEBHOOKS.md): leasing due events (SKIP
//! LOCKED, so deliverers on several machines take different rows), applying delivery
//! reports, the backlog and a job's deliveries. The outbox rows themselves are written by
//! the `jobs_webhook` trigger (migration 0008) with the state change.
//!
//! It must not deliver or decide retries; it writes what it is handed.

use sqlx::postgres::PgRow;
use sqlx::Row;

use super::PgStore;
use crate::envelope::ClientId;
use crate::jobs::JobId;
use crate::store::outbox::{DeliveryFate, DeliveryReport, OutboxEvent, WebhookDelivery};
use crate::store::StoreError;

pub(super) const CLAIM: &str = include_str!("sql/webhook_claim.sql");
pub(super) const REPORT: &str = include_str!("sql/webhook_report.sql");
pub(super) const BACKLOG: &str = include_str!("sql/webhook_backlog.sql");
pub(super) const DELIVERIES: &str = include_str!("sql/webhook_deliveries.sql");
pub(super) const PRUNE: &str = include_str!("sql/prune_webhooks.sql");

fn event_of(r: &PgRow) -> Result<OutboxEvent, StoreError> {
    Ok(OutboxEvent {
        seq: r.try_get(0)?,
        job_id: JobId(r.try_get(1)?),
        client_id: ClientId(r.try_get(2)?),
        url: r.try_get(3)?,
        state: r.try_get(4)?,
        tool: r.try_get(5)?,
        attempt: r.try_get::<i32, _>(6)?.max(0) as u32,
        result: r.try_get(7)?,
        error: r.try_get(8)?,
        input_requests: r.try_get(9)?,
        at: r.try_get(10)?,
        attempts: r.try_get::<i32, _>(11)?.max(0) as u32,
    })
}

impl PgStore {
    pub(super) async fn claim_hooks(
        &self,
        owner: &str,
        now: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<OutboxEvent>, StoreError> {
        let rows = sqlx::query(CLAIM)
            .bind(owner)
            .bind(now)
            .bind(lease_ms)
            .bind(limit as i64)
            .fetch_all(&self.inner.pool)
            .await?;
        rows.iter().map(event_of).collect()
    }

    pub(super) async fn report_hooks(
        &self,
        owner: &str,
        reports: Vec<DeliveryReport>,
        now: i64,
    ) -> Result<usize, StoreError> {
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
                .bind(r.status.map(i32::from))
                .bind(r.error.as_deref())
                .bind(next_at)
                .bind(r.fate == DeliveryFate::Delivered)
                .execute(&self.inner.pool)
                .await?
                .rows_affected() as usize;
        }
        Ok(applied)
    }

    pub(super) async fn hook_backlog(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(BACKLOG)
            .fetch_one(&self.inner.pool)
            .await?;
        Ok(n.max(0) as u64)
    }

    pub(super) async fn hook_deliveries(
        &self,
        job: &JobId,
    ) -> Result<Vec<WebhookDelivery>, StoreError> {
        let rows = sqlx::query(DELIVERIES)
            .bind(&job.0)
            .fetch_all(&self.inner.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let seq: i64 = r.try_get(0)?;
                let job: String = r.try_get(1)?;
                let done: Option<i64> = r.try_get(8)?;
                let delivered: bool = r.try_get(9)?;
                Ok(WebhookDelivery {
                    webhook_id: format!("msg_{job}_{seq}"),
                    url: r.try_get(2)?,
                    event: r.try_get(3)?,
                    attempts: r.try_get::<i32, _>(4)?.max(0) as u32,
                    last_status: r.try_get::<Option<i32>, _>(5)?.map(|s| s as u16),
                    last_error: r.try_get(6)?,
                    last_at: r.try_get(7)?,
                    status: WebhookDelivery::status_of(done.is_some(), delivered),
                    next_at: if done.is_none() { r.try_get(10)? } else { None },
                })
            })
            .collect()
    }

    /// Retention of done events, beside the jobs' (`prune`), in bounded batches.
    pub(super) async fn prune_hooks(&self, before: i64) -> Result<u64, StoreError> {
        let batch = self.inner.prune_batch;
        let mut total = 0;
        loop {
            let n = sqlx::query(PRUNE)
                .bind(before)
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
}
