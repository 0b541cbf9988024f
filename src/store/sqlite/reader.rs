//! SQLite group reads: `get_job` lookups answered in groups, one statement per group, on
//! connections of their own.
//!
//! It must not write.

use std::sync::Arc;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, SqliteConnection};
use tokio::sync::{mpsc, Mutex};

use super::rows::records_from_json;
use super::sql;
use crate::store::batch::{answer_lookups, take_batch, Lookup, MAX_READ_BATCH};

/// Answers `get_job` calls in groups: each of `database.poll_readers` tasks takes whatever
/// lookups are waiting and answers them with one statement. Polls are the most frequent
/// call of a job's life; one statement per poll made each pay a round trip to SQLite's
/// thread (BENCHMARKS.md has the before/after). The tasks end when the store is dropped.
pub(super) async fn group_read(
    mut conn: SqliteConnection,
    opts: SqliteConnectOptions,
    rx: Arc<Mutex<mpsc::Receiver<Lookup>>>,
) {
    let mut batch = Vec::with_capacity(MAX_READ_BATCH);
    loop {
        if !take_batch(&rx, &mut batch, MAX_READ_BATCH).await {
            return;
        }
        let mut ids = String::from("[");
        for (i, l) in batch.iter().enumerate() {
            if i > 0 {
                ids.push(',');
            }
            crate::json::write_str(&l.id.0, &mut ids);
        }
        ids.push(']');
        let started = std::time::Instant::now();
        let rows: Result<String, sqlx::Error> = sqlx::query_scalar(sql::GET_JOBS)
            .bind(ids)
            .fetch_one(&mut conn)
            .await;
        tracing::trace!(
            lookups = batch.len(),
            took_us = started.elapsed().as_micros() as u64,
            "group read"
        );
        if let Err(e) = &rows {
            // This group's callers get an internal error; the next group gets a fresh
            // connection, so a broken one cannot fail every later poll.
            crate::logging::repeats::fault("group read", &e);
            match SqliteConnection::connect_with(&opts).await {
                Ok(fresh) => conn = fresh,
                Err(e) => crate::logging::repeats::fault("group read: reconnect", &e),
            }
        }
        let found = rows
            .map_err(|e| e.to_string())
            .and_then(|text| records_from_json(&text).map_err(|e| e.to_string()));
        answer_lookups(&mut batch, found.as_ref().map_err(String::as_str));
    }
}
