//! The keyed claim's reading, shared by both drivers: how deep to read a keyed tool's
//! queue, and what one read (its running jobs per key and its head, as the drivers'
//! `keyed_head.sql` return them) lets the claim take.
//!
//! It must not run statements (each driver reads and claims in its own transaction), and
//! the rule of which jobs may start is `jobs::keyed_picks`, not here.

use std::collections::HashMap;

use super::{CappedTool, KEYED_CLAIM_WINDOW};

/// What one read of a keyed tool's queue decided.
pub(crate) enum KeyedStep {
    /// Claim these jobs (by `seq`; maybe none).
    Claim(Vec<i64>),
    /// Too few of the jobs read have room and the queue goes deeper: read this many.
    ReadDeeper(i64),
}

/// How many queued jobs the first read of a claim of `take` looks at: twice the claim's
/// size (reading 1,000 jobs' keys for a claim of 256 cost 0.3-0.7 ms more on SQLite), at
/// most the window.
pub(crate) fn first_look(take: usize) -> i64 {
    (take as i64).saturating_mul(2).min(KEYED_CLAIM_WINDOW)
}

/// The step after a read of `look` jobs: `running` is `[[key, n], ...]` and `head`
/// `[[seq, key], ...]` in claim order. Takes at most `take`, and no more than the tool's
/// own limit leaves room for.
pub(crate) fn after_read(
    c: &CappedTool,
    per_key: u32,
    take: usize,
    look: i64,
    running: &str,
    head: &str,
) -> Result<KeyedStep, serde_json::Error> {
    let running: Vec<(Option<String>, u32)> = serde_json::from_str(running)?;
    let running: HashMap<Option<String>, u32> = running.into_iter().collect();
    let total: u64 = running.values().map(|n| u64::from(*n)).sum();
    let take = take.min(u64::from(c.limit).saturating_sub(total) as usize);
    let head: Vec<(i64, Option<String>)> = serde_json::from_str(head)?;
    let picks = crate::jobs::keyed_picks(&head, &running, per_key, take);
    if picks.len() < take && head.len() as i64 == look && look < KEYED_CLAIM_WINDOW {
        return Ok(KeyedStep::ReadDeeper(KEYED_CLAIM_WINDOW));
    }
    Ok(KeyedStep::Claim(picks))
}
