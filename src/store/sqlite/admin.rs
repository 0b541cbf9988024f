//! [`AdminStore`] for SQLite: the operator's queries and state changes, each a single
//! statement on the writer connection (so a change and the workers' commits serialize),
//! durable before it returns, as every other write.
//!
//! It must not be reachable from a request: only `crate::admin` holds an `AdminStore`.

use sqlx::Row;

use super::rows::records_from_json;
use super::{sql, SqliteStore};
use crate::jobs::JobId;
use crate::store::admin::{
    add_activity_rows, cancel_outcome, fail_in_doubt, unchanged, Activity, AdminStore, ChainEnds,
    Change, JobFilter, JobQuery, JobRow, JobSummary, PausedTool, SeriesRows, ToolStateCounts,
};
use crate::store::audit::ends_from_row;
use crate::store::{state_of, BoxFuture, CancelOutcome, JobRecord, Store, StoreError};

impl AdminStore for SqliteStore {
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
                .fetch_all(&self.inner.read)
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(JobSummary {
                        id: JobId(r.try_get(0)?),
                        client_id: r.try_get(1)?,
                        tool: r.try_get(2)?,
                        state: state_of(&r.try_get::<String, _>(3)?)?,
                        attempt: r.try_get::<i64, _>(4)? as u32,
                        max_attempts: r.try_get::<i64, _>(5)? as u32,
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
            let ids = crate::json::Json::Array(vec![crate::json::Json::str(id.0.clone())]);
            let text: String = sqlx::query_scalar(sql::GET_JOBS)
                .bind(ids.to_canonical())
                .fetch_one(&self.inner.read)
                .await?;
            Ok(records_from_json(&text)?.remove(&id.0))
        })
    }

    fn admin_cancel<'a>(
        &'a self,
        id: &'a JobId,
        now: i64,
        by: &'a str,
    ) -> BoxFuture<'a, Result<CancelOutcome, StoreError>> {
        Box::pin(async move {
            let mut conn = self.inner.writer.lock().await;
            super::writer::begin_immediate(&mut conn).await?;
            let written = async {
                let row = sqlx::query(sql::ADMIN_CANCEL)
                    .bind(&id.0)
                    .bind(now)
                    .bind(format!("operator: cancelled by {by}"))
                    .fetch_optional(&mut *conn)
                    .await?;
                if row.is_some() {
                    super::webhooks::record_events(&mut conn, std::slice::from_ref(&id.0)).await?;
                }
                Ok::<_, StoreError>(row)
            }
            .await;
            let row = super::writer::finish(&mut conn, written).await?;
            drop(conn);
            let state = match row {
                Some(r) => {
                    self.inner.durability.wait().await?;
                    Some(r.try_get::<String, _>(0)?)
                }
                None => None,
            };
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
            let mut conn = self.inner.writer.lock().await;
            let row = sqlx::query(sql::ADMIN_RETRY)
                .bind(&id.0)
                .bind(now)
                .bind(format!(
                    "operator: retried by {by} ({more_attempts} more attempt(s))"
                ))
                .bind(more_attempts.max(1) as i64)
                .fetch_optional(&mut *conn)
                .await?;
            drop(conn);
            if row.is_none() {
                return unchanged(self, id).await;
            }
            self.inner.durability.wait().await?;
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
            let mut conn = self.inner.writer.lock().await;
            let done = q.execute(&mut *conn).await?;
            drop(conn);
            self.inner.durability.wait().await?;
            Ok(done.rows_affected() > 0)
        })
    }

    fn paused_tools(&self) -> BoxFuture<'_, Result<Vec<PausedTool>, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query(sql::PAUSED_TOOLS)
                .fetch_all(&self.inner.read)
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
            let mut conn = self.inner.writer.lock().await;
            let done = sqlx::query(sql::PRUNE_JOBS)
                .bind(before)
                .execute(&mut *conn)
                .await?;
            drop(conn);
            self.inner.durability.wait().await?;
            Ok(done.rows_affected())
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
                .fetch_all(&self.inner.read)
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

    fn audit_ends(&self) -> BoxFuture<'_, Result<ChainEnds, StoreError>> {
        Box::pin(async move {
            let row = sqlx::query(sql::AUDIT_HEAD)
                .fetch_one(&self.inner.read)
                .await?;
            ends_from_row(&row)
        })
    }

    fn audit_page(
        &self,
        after_seq: i64,
        since: i64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<crate::audit::Record>, StoreError>> {
        Box::pin(self.audit_records(after_seq, since, limit))
    }
}
