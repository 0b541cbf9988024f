//! [`AdminStore`] for PostgreSQL: the operator's queries and state changes, each a single
//! statement (autocommit, so durable under `synchronous_commit = on` before it returns).
//!
//! It must not be reachable from a request: only `crate::admin` holds an `AdminStore`.

use sqlx::Row;

use super::rows::{count, record_from_row, state_of};
use super::{sql, PgStore};
use crate::jobs::JobId;
use crate::store::admin::{
    add_activity_rows, cancel_outcome, fail_in_doubt, unchanged, Activity, AdminStore, Change,
    JobFilter, JobQuery, JobRow, JobSummary, PausedTool, SeriesRows, ToolStateCounts,
};
use crate::store::{BoxFuture, CancelOutcome, JobRecord, Store, StoreError};

impl AdminStore for PgStore {
    fn list_jobs<'a>(
        &'a self,
        f: &'a JobFilter,
    ) -> BoxFuture<'a, Result<Vec<JobSummary>, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query(sql::ADMIN_LIST)
                .bind(f.state.map(|s| s.as_str()))
                .bind(f.client.as_deref())
                .bind(f.tool.as_deref())
                .bind(f.since)
                .bind(f.limit as i64)
                .fetch_all(self.pool())
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(JobSummary {
                        id: JobId(r.try_get(0)?),
                        client_id: r.try_get(1)?,
                        tool: r.try_get(2)?,
                        state: state_of(&r.try_get::<String, _>(3)?)?,
                        attempt: count(r.try_get(4)?, "attempt")?,
                        max_attempts: count(r.try_get(5)?, "max_attempts")?,
                        created_at: r.try_get(6)?,
                        started_at: r.try_get(7)?,
                        finished_at: r.try_get(8)?,
                        lease_owner: r.try_get(9)?,
                        run_at: r.try_get(10)?,
                    })
                })
                .collect()
        })
    }

    fn job<'a>(&'a self, id: &'a JobId) -> BoxFuture<'a, Result<Option<JobRecord>, StoreError>> {
        Box::pin(async move {
            let row = sqlx::query(sql::GET_JOB)
                .bind(&id.0)
                .fetch_optional(self.pool())
                .await?;
            row.as_ref().map(record_from_row).transpose()
        })
    }

    fn admin_cancel<'a>(
        &'a self,
        id: &'a JobId,
        now: i64,
        by: &'a str,
    ) -> BoxFuture<'a, Result<CancelOutcome, StoreError>> {
        Box::pin(async move {
            let row = sqlx::query(sql::ADMIN_CANCEL)
                .bind(&id.0)
                .bind(now)
                .bind(format!("operator: cancelled by {by}"))
                .fetch_optional(self.pool())
                .await?;
            let state = row.map(|r| r.try_get::<String, _>(0)).transpose()?;
            cancel_outcome(self, id, state).await
        })
    }

    fn retry_job<'a>(
        &'a self,
        id: &'a JobId,
        more_attempts: u32,
        now: i64,
        by: &'a str,
    ) -> BoxFuture<'a, Result<Change, StoreError>> {
        Box::pin(async move {
            let row = sqlx::query(sql::ADMIN_RETRY)
                .bind(&id.0)
                .bind(now)
                .bind(format!(
                    "operator: retried by {by} ({more_attempts} more attempt(s))"
                ))
                .bind(more_attempts.max(1) as i32)
                .fetch_optional(self.pool())
                .await?;
            if row.is_none() {
                return unchanged(self, id).await;
            }
            Ok(Change::Done)
        })
    }

    fn fail_job<'a>(
        &'a self,
        id: &'a JobId,
        now: i64,
        by: &'a str,
    ) -> BoxFuture<'a, Result<Change, StoreError>> {
        Box::pin(async move { fail_in_doubt(self, id, now, by).await })
    }

    fn set_paused<'a>(
        &'a self,
        tool: &'a str,
        paused: bool,
        now: i64,
        by: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let q = if paused {
                sqlx::query(sql::PAUSE_TOOL).bind(tool).bind(now).bind(by)
            } else {
                sqlx::query(sql::RESUME_TOOL).bind(tool)
            };
            Ok(q.execute(self.pool()).await?.rows_affected() > 0)
        })
    }

    fn paused_tools(&self) -> BoxFuture<'_, Result<Vec<PausedTool>, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query(sql::PAUSED_TOOLS)
                .fetch_all(self.pool())
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(PausedTool {
                        tool: r.try_get(0)?,
                        paused_at: r.try_get(1)?,
                        paused_by: r.try_get(2)?,
                    })
                })
                .collect()
        })
    }

    fn purge(&self, before: i64) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let batch = self.inner.prune_batch;
            let mut total = 0;
            loop {
                let n = sqlx::query(sql::PRUNE_JOBS)
                    .bind(before)
                    .bind(batch)
                    .execute(self.pool())
                    .await?
                    .rows_affected();
                total += n;
                if (n as i64) < batch {
                    return Ok(total);
                }
            }
        })
    }

    fn activity(&self, now: i64, since: i64) -> BoxFuture<'_, Result<Activity, StoreError>> {
        Box::pin(async move {
            let mut out = Activity {
                queue: self.queue_stats(now).await?,
                ..Activity::default()
            };
            let rows = sqlx::query(sql::ADMIN_ACTIVITY)
                .bind(since)
                .fetch_all(self.pool())
                .await?;
            add_activity_rows(&mut out, &rows)?;
            Ok(out)
        })
    }

    fn browse<'a>(&'a self, q: &'a JobQuery) -> BoxFuture<'a, Result<Vec<JobRow>, StoreError>> {
        Box::pin(self.browse_rows(q))
    }

    fn browse_count<'a>(&'a self, q: &'a JobQuery) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(self.browse_count_rows(q))
    }

    fn newest_seq(&self) -> BoxFuture<'_, Result<i64, StoreError>> {
        Box::pin(self.newest_seq_row())
    }

    fn counts(&self) -> BoxFuture<'_, Result<ToolStateCounts, StoreError>> {
        Box::pin(self.count_rows())
    }

    fn series(
        &self,
        since: i64,
        width: i64,
        until: i64,
    ) -> BoxFuture<'_, Result<SeriesRows, StoreError>> {
        Box::pin(self.series_rows(since, width, until))
    }

    fn recent(&self, since: i64) -> BoxFuture<'_, Result<ToolStateCounts, StoreError>> {
        Box::pin(self.recent_rows(since))
    }

    fn webhook_deliveries<'a>(
        &'a self,
        job: &'a JobId,
    ) -> BoxFuture<'a, Result<Vec<crate::store::outbox::WebhookDelivery>, StoreError>> {
        Box::pin(self.hook_deliveries(job))
    }

    fn append_audit(
        &self,
        entries: Vec<crate::audit::Entry>,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.append_now(entries))
    }

    fn audit_ends(&self) -> BoxFuture<'_, Result<crate::store::admin::ChainEnds, StoreError>> {
        Box::pin(async move {
            let row = sqlx::query(sql::AUDIT_HEAD).fetch_one(self.pool()).await?;
            crate::store::audit::ends_from_row(&row)
        })
    }

    fn audit_page(
        &self,
        after_seq: i64,
        since: i64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<crate::audit::Record>, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query(sql::AUDIT_PAGE)
                .bind(after_seq)
                .bind(since)
                .bind(limit as i64)
                .fetch_all(self.pool())
                .await?;
            rows.iter()
                .map(crate::store::audit::record_from_row)
                .collect()
        })
    }
}
