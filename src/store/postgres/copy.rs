//! `mcpq store copy` on PostgreSQL: reading and writing whole job rows, and nonces in bulk
//! (see `store::copy`).

use sqlx::{Postgres, QueryBuilder, Row};

use super::rows::{count, state_of};
use super::PgStore;
use crate::auth::NonceRecord;
use crate::envelope::ClientId;
use crate::jobs::{CrashPolicy, JobId};
use crate::store::copy::{CopiedJob, COPY_INSERT};
use crate::store::{JobRecord, StoreError};

const COPY_READ: &str = include_str!("sql/copy_read.sql");

impl PgStore {
    pub(crate) async fn copy_read(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, CopiedJob)>, StoreError> {
        let rows = sqlx::query(COPY_READ)
            .bind(after)
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| {
                let on_crash: i16 = r.try_get(21)?;
                let rec = JobRecord {
                    id: JobId(r.try_get(1)?),
                    client_id: ClientId(r.try_get(2)?),
                    tool: r.try_get(3)?,
                    args: r.try_get(4)?,
                    state: state_of(&r.try_get::<String, _>(5)?)?,
                    attempt: count(r.try_get(6)?, "attempt")?,
                    max_attempts: count(r.try_get(7)?, "max_attempts")?,
                    run_at: r.try_get(8)?,
                    lease_owner: r.try_get(9)?,
                    lease_expires_at: r.try_get(10)?,
                    fence: r.try_get(11)?,
                    cancel_requested: r.try_get(12)?,
                    progress: r.try_get(13)?,
                    result: r.try_get(14)?,
                    errors: r.try_get(15)?,
                    idempotency_key: r.try_get(16)?,
                    created_at: r.try_get(17)?,
                    started_at: r.try_get(18)?,
                    finished_at: r.try_get(19)?,
                    def: r.try_get(20)?,
                    on_crash: CrashPolicy::from_code(i64::from(on_crash))
                        .ok_or_else(|| StoreError::Corrupt(format!("on_crash {on_crash}")))?,
                    input_requests: r.try_get(23)?,
                    input_responses: r.try_get(24)?,
                    request_state: r.try_get(25)?,
                };
                Ok((
                    r.try_get(0)?,
                    CopiedJob {
                        rec,
                        capped: r.try_get(22)?,
                        priority: r.try_get(26)?,
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
        let mut tx = self.pool().begin().await?;
        for chunk in jobs.chunks(1000) {
            let mut q: QueryBuilder<Postgres> = QueryBuilder::new(COPY_INSERT);
            q.push_values(chunk, |mut b, j| {
                let r = &j.rec;
                b.push_bind(r.id.0.clone())
                    .push_bind(r.client_id.0.clone())
                    .push_bind(r.tool.clone())
                    .push_bind(r.args.clone())
                    .push_bind(r.state.as_str())
                    .push_bind(r.attempt as i32)
                    .push_bind(r.max_attempts as i32)
                    .push_bind(r.run_at)
                    .push_bind(r.lease_owner.clone())
                    .push_bind(r.lease_expires_at)
                    .push_bind(r.fence)
                    .push_bind(r.cancel_requested)
                    .push_bind(r.progress.clone())
                    .push_bind(r.result.clone())
                    .push_bind(r.errors.clone())
                    .push_unseparated("::jsonb")
                    .push_bind(r.idempotency_key.clone())
                    .push_bind(r.created_at)
                    .push_bind(r.started_at)
                    .push_bind(r.finished_at)
                    .push_bind(r.def.clone())
                    .push_bind(r.on_crash.code() as i16)
                    .push_bind(j.capped)
                    .push_bind(r.input_requests.clone())
                    .push_bind(r.input_responses.clone())
                    .push_bind(r.request_state.clone())
                    .push_bind(j.priority)
                    .push_bind(j.boost)
                    .push_bind(j.ckey.clone());
            });
            q.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Live nonces in bulk (an existing copy is kept).
    pub(crate) async fn copy_nonces(&self, nonces: &[NonceRecord]) -> Result<(), StoreError> {
        for chunk in nonces.chunks(10_000) {
            let keys: Vec<Vec<u8>> = chunk.iter().map(|n| n.key.0.to_vec()).collect();
            let exp: Vec<i64> = chunk.iter().map(|n| n.expires_ms).collect();
            sqlx::query(
                "INSERT INTO nonces (key, expires_ms) SELECT * FROM unnest($1::bytea[], $2::int8[]) \
                 ON CONFLICT (key) DO NOTHING",
            )
            .bind(keys)
            .bind(exp)
            .execute(self.pool())
            .await?;
        }
        Ok(())
    }

    pub(crate) async fn job_count(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
            .fetch_one(self.pool())
            .await?;
        Ok(n as u64)
    }
}
