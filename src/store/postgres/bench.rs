//! Benchmark set-up and progress queries for `mcpq bench drain` on PostgreSQL. Never used by
//! the daemon or workers.

use super::PgStore;
use crate::store::bench::{DrainBench, FillShape};
use crate::store::{BoxFuture, StoreError};

/// Inserts `n` no-op jobs in multi-row statements, then `ANALYZE` and `CHECKPOINT` (when the
/// role may), so the drain starts from a quiet database.
async fn fill_noop(store: &PgStore, n: usize, shape: FillShape) -> Result<(), StoreError> {
    let now = crate::clock::Clock::now_ms(&crate::clock::SystemClock);
    let mut left = n;
    while left > 0 {
        let k = left.min(10_000);
        let ids: Vec<String> = (0..k).map(|_| crate::jobs::JobId::generate().0).collect();
        let rows: Vec<_> = (n - left..n - left + k).map(|i| shape.row(i)).collect();
        sqlx::query(
            "INSERT INTO jobs (id, client_id, tool, args, state, max_attempts, run_at, created_at,
                               def, capped, priority, boost, ckey)
             SELECT id, 'bench', tool, args, 'queued', 3, $2, $2, $3, capped, priority::int2, boost, ckey
             FROM unnest($1::text[], $4::text[], $5::text[], $6::bool[], $7::int8[], $8::int8[],
                         $9::text[]) AS t(id, tool, args, capped, priority, boost, ckey)",
        )
        .bind(ids)
        .bind(now)
        .bind(crate::store::BUILTIN_DEFINITION)
        .bind(rows.iter().map(|r| r.tool).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.args.clone()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.capped).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.priority).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.boost).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.ckey.clone()).collect::<Vec<_>>())
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

async fn first_seq(store: &PgStore) -> Result<i64, StoreError> {
    Ok(
        sqlx::query_scalar::<_, Option<i64>>("SELECT min(seq) FROM jobs")
            .fetch_one(store.pool())
            .await?
            .unwrap_or(0),
    )
}

async fn succeeded_in_range(store: &PgStore, first: i64, last: i64) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM jobs WHERE seq BETWEEN $1 AND $2 AND state = 'succeeded'",
    )
    .bind(first)
    .bind(last)
    .fetch_one(store.pool())
    .await?)
}

async fn any_unfinished(store: &PgStore) -> Result<bool, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM jobs WHERE state = 'queued') \
         OR EXISTS (SELECT 1 FROM jobs WHERE state = 'running')",
    )
    .fetch_one(store.pool())
    .await?)
}

/// The head of the queue in the claim's order (`jobs_queued`'s key): ordered any other way
/// this probe sorts every queued row, and took the database's CPU from the drain it measures.
async fn queue_head_seq(store: &PgStore) -> Result<Option<i64>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT seq FROM (\
         (SELECT seq, run_at - boost AS k FROM jobs WHERE state = 'queued' AND NOT capped \
          ORDER BY run_at - boost, seq LIMIT 1) \
         UNION ALL (SELECT seq, run_at - boost AS k FROM jobs WHERE state = 'queued' AND capped \
          ORDER BY run_at - boost, seq LIMIT 1)) AS h ORDER BY k, seq LIMIT 1",
    )
    .fetch_optional(store.pool())
    .await?)
}

impl DrainBench for PgStore {
    fn bench_fill_noop(&self, n: usize, shape: FillShape) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(fill_noop(self, n, shape))
    }

    fn first_seq(&self) -> BoxFuture<'_, Result<i64, StoreError>> {
        Box::pin(first_seq(self))
    }

    fn succeeded_in_range(&self, first: i64, last: i64) -> BoxFuture<'_, Result<i64, StoreError>> {
        Box::pin(succeeded_in_range(self, first, last))
    }

    fn queue_head_seq(&self) -> BoxFuture<'_, Result<Option<i64>, StoreError>> {
        Box::pin(queue_head_seq(self))
    }

    fn any_unfinished(&self) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(any_unfinished(self))
    }
}
