//! The capped part of a PostgreSQL claim: tools with a concurrency limit, a limit per key
//! or a start rate, each claimed under a transaction-scoped advisory lock, after the
//! uncapped tools' jobs in the same transaction.
//!
//! It must not decide which tools are capped (the registry does) nor touch jobs it did not
//! claim.

use sqlx::postgres::PgRow;
use sqlx::PgConnection;

use super::{sql, PgStore};
use crate::store::keyed::{self, KeyedStep};
use crate::store::{CappedTool, ClaimFilter, StoreError};

impl PgStore {
    /// Claims up to `limit` jobs in one transaction: the uncapped tools' first, then each
    /// capped tool's within its limits, which hold across every process.
    pub(super) async fn claim_capped(
        &self,
        worker: &str,
        limit: usize,
        now: i64,
        lease_ms: i64,
        filter: &ClaimFilter,
    ) -> Result<Vec<PgRow>, StoreError> {
        let mut tx = self.inner.pool.begin().await?;
        let mut rows = if filter.defs.is_empty() {
            Vec::new()
        } else {
            sqlx::query(sql::CLAIM)
                .bind(worker)
                .bind(now)
                .bind(limit as i64)
                .bind(lease_ms)
                .bind(&filter.defs)
                .fetch_all(&mut *tx)
                .await?
        };
        // Locks in name order, so two claimers never wait on each other in a cycle.
        let mut capped: Vec<&CappedTool> = filter.capped.iter().collect();
        capped.sort_by(|a, b| a.tool.cmp(&b.tool));
        for c in capped {
            let left = limit.saturating_sub(rows.len());
            if left == 0 {
                break;
            }
            // Held until commit: counting the tool's running jobs and claiming up to its
            // limit see no other claimer in between.
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('mcpq-capped:' || $1, 0))")
                .bind(&c.tool)
                .execute(&mut *tx)
                .await?;
            let mut take = left;
            let mut bucket = None;
            if let Some(rate) = c.rate {
                let stored: Option<(f64, i64)> = sqlx::query_as(sql::RATE_READ)
                    .bind(&c.tool)
                    .fetch_optional(&mut *tx)
                    .await?;
                let tokens = crate::jobs::rate_tokens(rate, stored, now);
                take = take.min(tokens.floor().max(0.0) as usize);
                bucket = Some(tokens);
            }
            if take == 0 {
                continue;
            }
            let got = match c.per_key {
                None => {
                    sqlx::query(sql::CLAIM_TOOL)
                        .bind(worker)
                        .bind(now)
                        .bind(i64::from(c.limit))
                        .bind(lease_ms)
                        .bind(&c.tool)
                        .bind(&c.defs)
                        .bind(take as i64)
                        .fetch_all(&mut *tx)
                        .await?
                }
                Some(per_key) => {
                    let share = KeyedShare {
                        worker,
                        now,
                        lease_ms,
                        per_key,
                        take,
                    };
                    claim_keyed(&mut tx, c, share).await?
                }
            };
            if let Some(tokens) = bucket {
                sqlx::query(sql::RATE_WRITE)
                    .bind(&c.tool)
                    .bind(tokens - got.len() as f64)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            rows.extend(got);
        }
        tx.commit().await?;
        Ok(rows)
    }
}

/// One keyed tool's share of a claim.
struct KeyedShare<'a> {
    worker: &'a str,
    now: i64,
    lease_ms: i64,
    per_key: u32,
    take: usize,
}

/// A keyed tool's claim under its advisory lock, as on SQLite (`store::sqlite::claim`):
/// its running jobs per key and its queue's head are read, the jobs to start chosen by
/// `jobs::keyed_picks`, and those claimed by `seq` (`store::keyed`: how deep to read).
async fn claim_keyed(
    tx: &mut PgConnection,
    c: &CappedTool,
    k: KeyedShare<'_>,
) -> Result<Vec<PgRow>, sqlx::Error> {
    let mut look = keyed::first_look(k.take);
    let picks = loop {
        let (running, head): (String, String) = sqlx::query_as(sql::KEYED_HEAD)
            .bind(k.now)
            .bind(&c.tool)
            .bind(&c.defs)
            .bind(look)
            .fetch_one(&mut *tx)
            .await?;
        match keyed::after_read(c, k.per_key, k.take, look, &running, &head).map_err(decode)? {
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
        .bind(&picks)
        .fetch_all(&mut *tx)
        .await
}

fn decode(e: serde_json::Error) -> sqlx::Error {
    sqlx::Error::Decode(Box::new(e))
}
