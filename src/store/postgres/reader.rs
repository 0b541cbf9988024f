//! PostgreSQL group reads: `get_job` lookups answered in groups, one `id = ANY($1)` statement
//! per group, on pooled connections.
//!
//! It must not write.

use std::collections::HashMap;
use std::sync::Arc;

use sqlx::postgres::PgPool;
use tokio::sync::{mpsc, Mutex};

use super::rows::record_from_row;
use super::sql;
use crate::store::batch::{answer_lookups, take_batch, Lookup, MAX_READ_BATCH};
use crate::store::{JobRecord, StoreError};

/// Tasks answering polls in groups (each one statement per group, on a pooled connection).
pub(super) const POLL_READERS: usize = 2;

/// Answers `get_job` calls in groups: whatever lookups are waiting, with one statement.
/// Polls are the most frequent call of a job's life; one query each made a poll cost a
/// round trip and a pooled connection (BENCHMARKS.md). The tasks end with the store.
pub(super) async fn group_read(pool: PgPool, rx: Arc<Mutex<mpsc::Receiver<Lookup>>>) {
    let mut batch = Vec::with_capacity(MAX_READ_BATCH);
    loop {
        if !take_batch(&rx, &mut batch, MAX_READ_BATCH).await {
            return;
        }
        let ids: Vec<&str> = batch.iter().map(|l| l.id.0.as_str()).collect();
        let found: Result<HashMap<String, JobRecord>, StoreError> = async {
            let rows = sqlx::query(sql::GET_JOBS)
                .bind(&ids)
                .fetch_all(&pool)
                .await?;
            rows.iter()
                .map(|r| record_from_row(r).map(|rec| (rec.id.0.clone(), rec)))
                .collect()
        }
        .await;
        let found = found.map_err(|e| e.to_string());
        answer_lookups(&mut batch, found.as_ref().map_err(String::as_str));
    }
}
