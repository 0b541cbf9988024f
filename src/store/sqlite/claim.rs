//! The statements of an SQLite claim: the uncapped tools' jobs in one statement, then each
//! tool with a concurrency limit, a limit per key or a start rate, inside the claim's
//! `BEGIN IMMEDIATE` transaction.
//!
//! It must not open or end the transaction (`Store::claim` in mod.rs does).

use sqlx::SqliteConnection;

use super::rows::json_strings;
use super::sql;
use crate::store::keyed::{self, KeyedStep};
use crate::store::{CappedTool, ClaimFilter, StoreError};

/// One claim of up to `limit` jobs for a worker with `filter`'s tools.
pub(super) struct Claim<'a> {
    pub(super) worker: &'a str,
    pub(super) limit: usize,
    pub(super) now: i64,
    pub(super) lease_ms: i64,
    pub(super) filter: &'a ClaimFilter,
}

impl Claim<'_> {
    /// The uncapped tools' jobs (one statement), then each capped tool's while room is left.
    pub(super) async fn run(
        &self,
        conn: &mut SqliteConnection,
    ) -> Result<Vec<sqlx::sqlite::SqliteRow>, StoreError> {
        let f = self.filter;
        let mut rows = if f.defs.is_empty() && !f.capped.is_empty() {
            Vec::new()
        } else {
            sqlx::query(sql::CLAIM)
                .bind(self.worker)
                .bind(self.now)
                .bind(self.limit as i64)
                .bind(self.lease_ms)
                .bind(json_strings(&f.defs))
                .fetch_all(&mut *conn)
                .await?
        };
        for c in &f.capped {
            let left = self.limit.saturating_sub(rows.len());
            if left == 0 {
                break;
            }
            let share = CappedClaim {
                worker: self.worker,
                now: self.now,
                lease_ms: self.lease_ms,
                left,
            };
            rows.extend(claim_capped(conn, c, share).await?);
        }
        Ok(rows)
    }
}

/// One capped tool's share of a claim: who claims, when, and how many more it may take.
struct CappedClaim<'a> {
    worker: &'a str,
    now: i64,
    lease_ms: i64,
    left: usize,
}

/// Claims up to `left` jobs of one capped tool inside the claim's write transaction: its
/// own limit, its limit per key and its start rate (token bucket) all hold across every
/// process, since no other claim commits in between.
async fn claim_capped(
    tx: &mut SqliteConnection,
    c: &CappedTool,
    k: CappedClaim<'_>,
) -> Result<Vec<sqlx::sqlite::SqliteRow>, sqlx::Error> {
    let mut take = k.left;
    let mut bucket = None;
    if let Some(rate) = c.rate {
        let stored: Option<(f64, i64)> = sqlx::query_as(sql::RATE_READ)
            .bind(&c.tool)
            .fetch_optional(&mut *tx)
            .await?;
        let tokens = crate::jobs::rate_tokens(rate, stored, k.now);
        take = take.min(tokens.floor().max(0.0) as usize);
        bucket = Some(tokens);
    }
    if take == 0 {
        return Ok(Vec::new());
    }
    let rows = match c.per_key {
        None => {
            sqlx::query(sql::CLAIM_TOOL)
                .bind(k.worker)
                .bind(k.now)
                .bind(i64::from(c.limit))
                .bind(k.lease_ms)
                .bind(&c.tool)
                .bind(json_strings(&c.defs))
                .bind(take as i64)
                .fetch_all(&mut *tx)
                .await?
        }
        Some(per_key) => claim_keyed(tx, c, per_key, take, &k).await?,
    };
    if let Some(tokens) = bucket {
        sqlx::query(sql::RATE_WRITE)
            .bind(&c.tool)
            .bind(tokens - rows.len() as f64)
            .bind(k.now)
            .execute(&mut *tx)
            .await?;
    }
    Ok(rows)
}

/// A keyed tool's claim: its running jobs per key and its queue's head are read, the jobs
/// to start chosen by `jobs::keyed_picks`, and those claimed by `seq`.
///
/// The head read first is twice the claim's size; only when that finds too few jobs with
/// room is the whole window read (`store::keyed`). Reading from a reader before taking the write lock, and checking each pick
/// again in the write, measured 0.89x of this: two workers' reads picked the same jobs.
async fn claim_keyed(
    tx: &mut SqliteConnection,
    c: &CappedTool,
    per_key: u32,
    take: usize,
    k: &CappedClaim<'_>,
) -> Result<Vec<sqlx::sqlite::SqliteRow>, sqlx::Error> {
    let mut look = keyed::first_look(take);
    let picks = loop {
        let (running, head): (String, String) = sqlx::query_as(sql::KEYED_HEAD)
            .bind(k.now)
            .bind(&c.tool)
            .bind(json_strings(&c.defs))
            .bind(look)
            .fetch_one(&mut *tx)
            .await?;
        match keyed::after_read(c, per_key, take, look, &running, &head).map_err(decode)? {
            KeyedStep::Claim(picks) => break picks,
            KeyedStep::ReadDeeper(n) => look = n,
        }
    };
    if picks.is_empty() {
        return Ok(Vec::new());
    }
    sqlx::query(sql::CLAIM_SEQS)
        .bind(k.worker)
        .bind(k.now)
        .bind(k.lease_ms)
        .bind(serde_json::to_string(&picks).map_err(decode)?)
        .fetch_all(&mut *tx)
        .await
}

fn decode(e: serde_json::Error) -> sqlx::Error {
    sqlx::Error::Decode(Box::new(e))
}
