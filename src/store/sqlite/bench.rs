//! Benchmark set-up and progress queries for `mcpq bench drain` on SQLite. Never used by the
//! daemon or workers.

use sqlx::Connection;

use super::rows::Rows;
use super::{sql, SqliteStore};
use crate::jobs::{CrashPolicy, JobId};
use crate::store::bench::{DrainBench, FillShape};
use crate::store::{BoxFuture, StoreError};

impl DrainBench for SqliteStore {
    fn bench_fill_noop(&self, n: usize, shape: FillShape) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            fill_noop(self, n, shape).await?;
            self.checkpoint_truncate().await
        })
    }

    /// Jobs not yet finished (queued or running); for `mcpq bench drain`.
    fn any_unfinished(&self) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            // EXISTS over the partial indexes: cheap at any backlog, unlike count(*).
            let q = "SELECT EXISTS (SELECT 1 FROM jobs WHERE state = 'queued') \
                 OR EXISTS (SELECT 1 FROM jobs WHERE state = 'running')";
            Ok(sqlx::query_scalar::<_, i64>(q)
                .fetch_one(&self.inner.read)
                .await?
                != 0)
        })
    }

    /// How many of the jobs with `seq` in `first..=last` have succeeded (a rowid range scan).
    fn succeeded_in_range(&self, first: i64, last: i64) -> BoxFuture<'_, Result<i64, StoreError>> {
        Box::pin(async move {
            let q = "SELECT count(*) FROM jobs WHERE seq BETWEEN ?1 AND ?2 AND state = 'succeeded'";
            Ok(sqlx::query_scalar(q)
                .bind(first)
                .bind(last)
                .fetch_one(&self.inner.read)
                .await?)
        })
    }

    /// The sequence number of the queue's head: the first of jobs_queued's two ranges
    /// (uncapped and capped jobs), each read from its head.
    fn queue_head_seq(&self) -> BoxFuture<'_, Result<Option<i64>, StoreError>> {
        Box::pin(async move {
            Ok(sqlx::query_scalar(
                "SELECT seq FROM (\
                 SELECT * FROM (SELECT seq, run_at - boost AS k FROM jobs \
                   WHERE state = 'queued' AND capped = 0 ORDER BY k, seq LIMIT 1) \
                 UNION ALL SELECT * FROM (SELECT seq, run_at - boost AS k FROM jobs \
                   WHERE state = 'queued' AND capped = 1 ORDER BY k, seq LIMIT 1)) \
                 ORDER BY k, seq LIMIT 1",
            )
            .fetch_optional(&self.inner.read)
            .await?)
        })
    }

    /// The smallest job sequence number (benchmarks use it to follow the first jobs).
    fn first_seq(&self) -> BoxFuture<'_, Result<i64, StoreError>> {
        Box::pin(async move {
            Ok(
                sqlx::query_scalar::<_, Option<i64>>("SELECT min(seq) FROM jobs")
                    .fetch_one(&self.inner.read)
                    .await?
                    .unwrap_or(0),
            )
        })
    }
}

/// Inserts `n` no-op jobs directly (benchmark set-up only; bypasses the wire and nonces).
async fn fill_noop(store: &SqliteStore, n: usize, shape: FillShape) -> Result<(), StoreError> {
    let client = "bench";
    let now = crate::clock::Clock::now_ms(&crate::clock::SystemClock);
    let mut conn = store.inner.writer.lock().await;
    let mut left = n;
    while left > 0 {
        let k = left.min(10_000);
        let mut rows = Rows::new();
        for i in n - left..n - left + k {
            let f = shape.row(i);
            rows.row()
                .str(&JobId::generate().0)
                .str(client)
                .str(f.tool)
                .str(&f.args)
                .int(3)
                .int(now)
                .opt_str(None)
                .str(crate::store::BUILTIN_DEFINITION)
                .int(CrashPolicy::Retry.code())
                .int(i64::from(f.capped))
                // input_responses, priority, boost, run_at, ckey (insert_jobs.sql's order)
                .opt_str(None)
                .int(f.priority)
                .int(f.boost)
                .int(now)
                .opt_str(f.ckey.as_deref());
        }
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(sql::INSERT_JOBS)
            .bind(rows.finish())
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        left -= k;
    }
    Ok(())
}

impl SqliteStore {
    /// Checkpoints the whole WAL into the database file and truncates it (benchmark set-up,
    /// so a fill does not leave checkpoint work to the measured run).
    async fn checkpoint_truncate(&self) -> Result<(), StoreError> {
        let mut conn = self.inner.writer.lock().await;
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
}
