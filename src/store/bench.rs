//! What `mcpq bench drain` needs from a store beyond [`Store`](super::Store): filling the
//! queue with no-op jobs directly (bypassing the wire and nonces) and following its progress.
//! Each driver implements it in its own `bench.rs`; [`AnyStore`] picks the configured one.
//!
//! Only the benchmark code imports [`DrainBench`]; the daemon, the workers and every request
//! handler hold an `Arc<dyn Store>` and cannot reach it. It must not grow anything the
//! daemon needs.

use super::open::AnyStore;
use super::{BoxFuture, StoreError};

/// What the filled queue looks like: plain `noop` jobs of one priority (the default), or
/// mixed priorities, or `noop_keyed` jobs spread over keys with a per-key limit.
#[derive(Debug, Clone, Copy, Default)]
pub struct FillShape {
    /// Priorities 0..=9, each with its aging boost (`priority × aging_ms`, as
    /// `jobs::plan_flow` gives a call), in runs of [`PRIORITY_RUN`] jobs of one priority (a
    /// caller's bulk enqueue), the runs' priorities in a fixed pseudo-random order.
    pub mixed_priorities: bool,
    pub aging_ms: i64,
    /// `Some(k)`: `noop_keyed` jobs, job `i` under key `k{i % k}`.
    pub keys: Option<u32>,
}

/// Jobs per run of one priority in a mixed fill. One priority per job instead (no two
/// neighbours in the table claimed together) drained at 0.57× the plain rate on SQLite:
/// each claim and completion then writes about one table page per job.
pub const PRIORITY_RUN: usize = 100;

/// One filled job's flow columns.
pub struct FillRow {
    pub tool: &'static str,
    pub args: String,
    pub capped: bool,
    pub priority: i64,
    pub boost: i64,
    pub ckey: Option<String>,
}

impl FillShape {
    /// Job `i`'s tool, arguments and flow columns.
    pub fn row(&self, i: usize) -> FillRow {
        let priority = if self.mixed_priorities {
            // A multiplicative hash of the run: every priority about equally often.
            (((i / PRIORITY_RUN) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as i64 % 10
        } else {
            0
        };
        let (tool, args, capped, ckey) = match self.keys {
            None => ("noop", "{}".to_string(), false, None),
            Some(k) => {
                let key = format!("k{}", i as u64 % u64::from(k.max(1)));
                let args = format!("{{\"key\":\"{key}\"}}");
                ("noop_keyed", args, true, Some(key))
            }
        };
        FillRow {
            tool,
            args,
            capped,
            priority,
            boost: priority * self.aging_ms,
            ckey,
        }
    }
}

pub trait DrainBench {
    /// Inserts `n` jobs shaped by `shape`, then leaves the database as quiet as it can
    /// (SQLite: WAL checkpointed; PostgreSQL: analyzed and checkpointed), so the measured run
    /// does not pay for the fill.
    fn bench_fill_noop(&self, n: usize, shape: FillShape) -> BoxFuture<'_, Result<(), StoreError>>;

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
    fn bench_fill_noop(&self, n: usize, shape: FillShape) -> BoxFuture<'_, Result<(), StoreError>> {
        self.bench().bench_fill_noop(n, shape)
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
