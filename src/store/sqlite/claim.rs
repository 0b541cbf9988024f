//! The capped part of an SQLite claim: one tool with a concurrency limit, a limit per key
//! or a start rate, claimed inside the claim's `BEGIN IMMEDIATE` transaction.
//!
//! It must not open or end the transaction (`Store::claim` in mod.rs does), nor claim the
//! uncapped tools' jobs (one statement there).

use sqlx::SqliteConnection;

use super::rows::json_strings;
use super::sql;
use crate::store::{CappedTool, KEYED_CLAIM_WINDOW};

/// One capped tool's share of a claim: who claims, when, and how many more it may take.
pub(super) struct CappedClaim<'a> {
    pub(super) worker: &'a str,
    pub(super) now: i64,
    pub(super) lease_ms: i64,
    pub(super) left: usize,
}

/// Claims up to `left` jobs of one capped tool inside the claim's write transaction: its
/// own limit, its limit per key and its start rate (token bucket) all hold across every
/// process, since no other claim commits in between.
pub(super) async fn claim_capped(
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
    let q = match c.per_key {
        None => sqlx::query(sql::CLAIM_TOOL),
        Some(_) => sqlx::query(sql::CLAIM_TOOL_KEYED),
    };
    let mut q = q
        .bind(k.worker)
        .bind(k.now)
        .bind(i64::from(c.limit))
        .bind(k.lease_ms)
        .bind(&c.tool)
        .bind(json_strings(&c.defs))
        .bind(take as i64);
    if let Some(per_key) = c.per_key {
        q = q.bind(i64::from(per_key)).bind(KEYED_CLAIM_WINDOW);
    }
    let rows = q.fetch_all(&mut *tx).await?;
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
