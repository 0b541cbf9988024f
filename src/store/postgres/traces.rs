//! The jobs that carry a trace context (docs/TRACING.md), read only while traces are on.
//!
//! It must not write: the context is written with the job, by the enqueue batch (`writer`).

use sqlx::postgres::PgPool;
use sqlx::Row;

use super::sql;
use crate::jobs::JobId;
use crate::store::{StoreError, TracedJob};

pub(super) async fn traced_jobs(
    pool: &PgPool,
    ids: &[JobId],
) -> Result<Vec<TracedJob>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<String> = ids.iter().map(|i| i.0.clone()).collect();
    let rows = sqlx::query(sql::TRACED_JOBS)
        .bind(ids)
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(TracedJob {
                id: JobId(r.try_get(0)?),
                tool: r.try_get(1)?,
                context: r.try_get(2)?,
                lease_expires_at: r.try_get(3)?,
            })
        })
        .collect()
}
