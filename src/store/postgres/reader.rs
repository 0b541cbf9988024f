//! PostgreSQL group reads: `get_job` lookups answered in groups, one `id = ANY($1)` statement
//! per group, on pooled connections.
//!
//! It must not write.

use std::collections::HashMap;
use std::sync::Arc;

use sqlx::postgres::PgPool;
use tokio::sync::{mpsc, oneshot, Mutex};

use super::rows::record_from_row;
use super::sql;
use crate::jobs::JobId;
use crate::protocol::ClientId;
use crate::store::{take_batch, JobRecord, StoreError};

/// One `get_job` waiting for the next group read.
pub(super) struct Lookup {
    pub(super) id: JobId,
    pub(super) client: ClientId,
    pub(super) reply: oneshot::Sender<Result<Option<JobRecord>, StoreError>>,
}

/// Tasks answering polls in groups (each one statement per group, on a pooled connection).
pub(super) const POLL_READERS: usize = 2;
const MAX_READ_BATCH: usize = 512;

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
        for l in batch.drain(..) {
            let answer = match &found {
                Ok(found) => Ok(found
                    .get(&l.id.0)
                    .filter(|rec| rec.client_id == l.client)
                    .cloned()),
                Err(e) => Err(StoreError::Read(e.to_string())),
            };
            let _ = l.reply.send(answer);
        }
    }
}
