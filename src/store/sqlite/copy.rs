//! `mcpq store copy` on SQLite: reading and writing whole job rows (see `store::copy`).

use sqlx::{Connection, QueryBuilder, Row, Sqlite};

use super::SqliteStore;
use crate::envelope::ClientId;
use crate::jobs::{CrashPolicy, JobId, JobState};
use crate::store::copy::{CopiedJob, COPY_INSERT};
use crate::store::{JobRecord, StoreError};

const COPY_READ: &str = include_str!("sql/copy_read.sql");

fn corrupt(what: String) -> StoreError {
    StoreError::Corrupt(what)
}

impl SqliteStore {
    pub(crate) async fn copy_read(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, CopiedJob)>, StoreError> {
        let rows = sqlx::query(COPY_READ)
            .bind(after)
            .bind(limit)
            .fetch_all(&self.inner.read)
            .await?;
        rows.iter()
            .map(|r| {
                let state: String = r.try_get(5)?;
                let on_crash: i64 = r.try_get(21)?;
                let rec = JobRecord {
                    id: JobId(r.try_get(1)?),
                    client_id: ClientId(r.try_get(2)?),
                    tool: r.try_get(3)?,
                    args: r.try_get(4)?,
                    state: JobState::parse(&state)
                        .ok_or_else(|| corrupt(format!("job state {state:?}")))?,
                    attempt: r.try_get::<i64, _>(6)? as u32,
                    max_attempts: r.try_get::<i64, _>(7)? as u32,
                    run_at: r.try_get(8)?,
                    lease_owner: r.try_get(9)?,
                    lease_expires_at: r.try_get(10)?,
                    fence: r.try_get(11)?,
                    cancel_requested: r.try_get::<i64, _>(12)? != 0,
                    progress: r.try_get(13)?,
                    result: r.try_get(14)?,
                    errors: r.try_get(15)?,
                    idempotency_key: r.try_get(16)?,
                    created_at: r.try_get(17)?,
                    started_at: r.try_get(18)?,
                    finished_at: r.try_get(19)?,
                    def: r.try_get(20)?,
                    on_crash: CrashPolicy::from_code(on_crash)
                        .ok_or_else(|| corrupt(format!("on_crash {on_crash}")))?,
                    input_requests: r.try_get(23)?,
                    input_responses: r.try_get(24)?,
                    request_state: r.try_get(25)?,
                };
                Ok((
                    r.try_get(0)?,
                    CopiedJob {
                        rec,
                        capped: r.try_get::<i64, _>(22)? != 0,
                        priority: r.try_get::<i64, _>(26)? as i16,
                        boost: r.try_get(27)?,
                        ckey: r.try_get(28)?,
                    },
                ))
            })
            .collect()
    }

    /// Inserts whole rows in one transaction, in the given order.
    pub(crate) async fn copy_write(&self, jobs: &[CopiedJob]) -> Result<(), StoreError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let mut conn = self.inner.writer.lock().await;
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        // 28 columns: SQLite allows 32766 bound values per statement.
        for chunk in jobs.chunks(1000) {
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(COPY_INSERT);
            q.push_values(chunk, |mut b, j| {
                let r = &j.rec;
                b.push_bind(r.id.0.clone())
                    .push_bind(r.client_id.0.clone())
                    .push_bind(r.tool.clone())
                    .push_bind(r.args.clone())
                    .push_bind(r.state.as_str())
                    .push_bind(i64::from(r.attempt))
                    .push_bind(i64::from(r.max_attempts))
                    .push_bind(r.run_at)
                    .push_bind(r.lease_owner.clone())
                    .push_bind(r.lease_expires_at)
                    .push_bind(r.fence)
                    .push_bind(r.cancel_requested as i64)
                    .push_bind(r.progress.clone())
                    .push_bind(r.result.clone())
                    .push_bind(r.errors.clone())
                    .push_bind(r.idempotency_key.clone())
                    .push_bind(r.created_at)
                    .push_bind(r.started_at)
                    .push_bind(r.finished_at)
                    .push_bind(r.def.clone())
                    .push_bind(r.on_crash.code())
                    .push_bind(j.capped as i64)
                    .push_bind(r.input_requests.clone())
                    .push_bind(r.input_responses.clone())
                    .push_bind(r.request_state.clone())
                    .push_bind(i64::from(j.priority))
                    .push_bind(j.boost)
                    .push_bind(j.ckey.clone());
            });
            q.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        drop(conn);
        self.inner.durability.wait().await
    }

    pub(crate) async fn job_count(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
            .fetch_one(&self.inner.read)
            .await?;
        Ok(n as u64)
    }
}
