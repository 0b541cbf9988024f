//! Benchmark set-up and progress queries for `mcpq bench drain` on PostgreSQL. Never used by
//! the daemon or workers.

use super::PgStore;
use crate::store::StoreError;

/// Inserts `n` no-op jobs in multi-row statements, then `ANALYZE` and `CHECKPOINT` (when the
/// role may), so the drain starts from a quiet database.
pub async fn fill_noop(store: &PgStore, n: usize) -> Result<(), StoreError> {
    let now = crate::clock::Clock::now_ms(&crate::clock::SystemClock);
    let mut left = n;
    while left > 0 {
        let k = left.min(10_000);
        let ids: Vec<String> = (0..k).map(|_| crate::jobs::JobId::generate().0).collect();
        sqlx::query(
            "INSERT INTO jobs (id, client_id, tool, args, state, max_attempts, run_at, created_at, def)
             SELECT id, 'bench', 'noop', '{}', 'queued', 3, $2, $2, $3 FROM unnest($1::text[]) AS t(id)",
        )
        .bind(ids)
        .bind(now)
        .bind(crate::tools::BUILTIN_DEFINITION)
        .execute(store.pool())
        .await?;
        left -= k;
    }
    sqlx::query("ANALYZE jobs").execute(store.pool()).await?;
    if let Err(e) = sqlx::query("CHECKPOINT").execute(store.pool()).await {
        tracing::warn!(error = %e, "CHECKPOINT refused (grant pg_checkpoint to the role for steadier benchmarks)");
    }
    Ok(())
}

pub async fn first_seq(store: &PgStore) -> Result<i64, StoreError> {
    Ok(
        sqlx::query_scalar::<_, Option<i64>>("SELECT min(seq) FROM jobs")
            .fetch_one(store.pool())
            .await?
            .unwrap_or(0),
    )
}

pub async fn succeeded_in_range(store: &PgStore, first: i64, last: i64) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM jobs WHERE seq BETWEEN $1 AND $2 AND state = 'succeeded'",
    )
    .bind(first)
    .bind(last)
    .fetch_one(store.pool())
    .await?)
}

pub async fn any_unfinished(store: &PgStore) -> Result<bool, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM jobs WHERE state = 'queued') \
         OR EXISTS (SELECT 1 FROM jobs WHERE state = 'running')",
    )
    .fetch_one(store.pool())
    .await?)
}

pub async fn queue_head_seq(store: &PgStore) -> Result<Option<i64>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT seq FROM jobs WHERE state = 'queued' ORDER BY run_at, seq LIMIT 1",
    )
    .fetch_optional(store.pool())
    .await?)
}
