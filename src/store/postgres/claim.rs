//! The capped part of a PostgreSQL claim: tools with a concurrency limit, a limit per key
//! or a start rate, each claimed under a transaction-scoped advisory lock, after the
//! uncapped tools' jobs in the same transaction.
//!
//! It must not decide which tools are capped (the registry does) nor touch jobs it did not
//! claim.

use sqlx::postgres::PgRow;

use super::{sql, PgStore};
use crate::store::{CappedTool, ClaimFilter, StoreError, KEYED_CLAIM_WINDOW};

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
            let q = sqlx::query(match c.per_key {
                None => sql::CLAIM_TOOL,
                Some(_) => sql::CLAIM_TOOL_KEYED,
            })
            .bind(worker)
            .bind(now)
            .bind(i64::from(c.limit))
            .bind(lease_ms)
            .bind(&c.tool)
            .bind(&c.defs)
            .bind(take as i64);
            let q = match c.per_key {
                None => q,
                Some(per_key) => q.bind(i64::from(per_key)).bind(KEYED_CLAIM_WINDOW),
            };
            let got = q.fetch_all(&mut *tx).await?;
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
