//! The console's browsing queries ([`crate::store::browse`]) on SQLite: binding the built
//! SQL and reading its rows, on the read pool (never the writer).
//!
//! It must not build SQL: `store::browse` does, for both drivers.

use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Arguments, Row};

use super::SqliteStore;
use crate::jobs::{JobId, JobState};
use crate::store::admin::{JobQuery, JobRow, JobSummary};
use crate::store::browse::{self, Dialect, Param};
use crate::store::{state_of, StoreError};

fn args(params: Vec<Param>) -> Result<SqliteArguments<'static>, StoreError> {
    let mut a = SqliteArguments::default();
    for p in params {
        match p {
            Param::Text(t) => a.add(t),
            Param::Int(i) => a.add(i),
        }
        .map_err(|e| StoreError::Corrupt(format!("bind: {e}")))?;
    }
    Ok(a)
}

fn row(r: &SqliteRow) -> Result<JobRow, StoreError> {
    Ok(JobRow {
        job: JobSummary {
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
        },
        seq: r.try_get(11)?,
        key: r.try_get(12)?,
    })
}

fn triples(rows: &[SqliteRow]) -> Result<Vec<(String, JobState, u64)>, StoreError> {
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get(0)?,
                state_of(&r.try_get::<String, _>(1)?)?,
                r.try_get::<i64, _>(2)?.max(0) as u64,
            ))
        })
        .collect()
}

impl SqliteStore {
    pub(super) async fn browse_rows(&self, q: &JobQuery) -> Result<Vec<JobRow>, StoreError> {
        let (sql, params) = browse::list_sql(Dialect::Sqlite, q);
        let rows = sqlx::query_with(&sql, args(params)?)
            .fetch_all(&self.inner.read)
            .await?;
        rows.iter().map(row).collect()
    }

    pub(super) async fn browse_count_rows(&self, q: &JobQuery) -> Result<u64, StoreError> {
        let (sql, params) = browse::count_sql(Dialect::Sqlite, q);
        let n: i64 = sqlx::query_scalar_with(&sql, args(params)?)
            .fetch_one(&self.inner.read)
            .await?;
        Ok(n.max(0) as u64)
    }

    pub(super) async fn newest_seq_row(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(browse::NEWEST_SEQ_SQL)
            .fetch_one(&self.inner.read)
            .await?)
    }

    pub(super) async fn count_rows(&self) -> Result<Vec<(String, JobState, u64)>, StoreError> {
        let rows = sqlx::query(browse::COUNTS_SQL)
            .fetch_all(&self.inner.read)
            .await?;
        triples(&rows)
    }

    pub(super) async fn series_rows(
        &self,
        since: i64,
        width: i64,
        until: i64,
    ) -> Result<browse::SeriesRows, StoreError> {
        let rows = sqlx::query(&browse::series_sql(Dialect::Sqlite))
            .bind(since)
            .bind(width.max(1))
            .bind(until)
            .fetch_all(&self.inner.read)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)))
            .collect()
    }

    pub(super) async fn recent_rows(
        &self,
        since: i64,
    ) -> Result<Vec<(String, JobState, u64)>, StoreError> {
        let rows = sqlx::query(&browse::recent_sql(Dialect::Sqlite))
            .bind(since)
            .fetch_all(&self.inner.read)
            .await?;
        triples(&rows)
    }
}
