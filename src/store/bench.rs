//! What `mcpq bench drain` needs from a store beyond [`Store`](super::Store): filling the
//! queue with no-op jobs directly (bypassing the wire and nonces) and following its progress.
//! Each driver implements it in its own `bench.rs`; [`AnyStore`] picks the configured one.
//!
//! Only the benchmark code imports [`DrainBench`]; the daemon, the workers and every request
//! handler hold an `Arc<dyn Store>` and cannot reach it. It must not grow anything the
//! daemon needs.

use super::open::AnyStore;
use super::{BoxFuture, StoreError};

pub trait DrainBench {
    /// Inserts `n` no-op jobs, then leaves the database as quiet as it can (SQLite: WAL
    /// checkpointed; PostgreSQL: analyzed and checkpointed), so the measured run does not pay
    /// for the fill.
    fn bench_fill_noop(&self, n: usize) -> BoxFuture<'_, Result<(), StoreError>>;

    /// The smallest job sequence number (to follow the first jobs).
    fn first_seq(&self) -> BoxFuture<'_, Result<i64, StoreError>>;

    /// How many jobs with `seq` in `first..=last` have succeeded.
    fn succeeded_in_range(&self, first: i64, last: i64) -> BoxFuture<'_, Result<i64, StoreError>>;

    /// The sequence number of the queue's head (the next job a claim takes), if any.
    fn queue_head_seq(&self) -> BoxFuture<'_, Result<Option<i64>, StoreError>>;

    /// Jobs not yet finished (queued or running).
    fn any_unfinished(&self) -> BoxFuture<'_, Result<bool, StoreError>>;
}

impl AnyStore {
    fn bench(&self) -> &dyn DrainBench {
        match self {
            AnyStore::Sqlite(s) => s,
            AnyStore::Postgres(s) => s,
        }
    }
}

impl DrainBench for AnyStore {
    fn bench_fill_noop(&self, n: usize) -> BoxFuture<'_, Result<(), StoreError>> {
        self.bench().bench_fill_noop(n)
    }

    fn first_seq(&self) -> BoxFuture<'_, Result<i64, StoreError>> {
        self.bench().first_seq()
    }

    fn succeeded_in_range(&self, first: i64, last: i64) -> BoxFuture<'_, Result<i64, StoreError>> {
        self.bench().succeeded_in_range(first, last)
    }

    fn queue_head_seq(&self) -> BoxFuture<'_, Result<Option<i64>, StoreError>> {
        self.bench().queue_head_seq()
    }

    fn any_unfinished(&self) -> BoxFuture<'_, Result<bool, StoreError>> {
        self.bench().any_unfinished()
    }
}
