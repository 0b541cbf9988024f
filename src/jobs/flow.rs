//! Flow rules a claim applies, pure: the start-rate token bucket and which queued jobs of
//! a tool with a limit per key may start.
//!
//! It must not read or write anything: the stores fetch what a rule needs inside their
//! claim transaction and pass it here, so both drivers apply the same rule.

use std::collections::HashMap;

/// Tokens in a tool's start-rate bucket at `now`: `rate` per second, holding at most one
/// second's worth (at least 1). `stored`: (tokens, when) as last written; none: full.
pub fn rate_tokens(rate: f64, stored: Option<(f64, i64)>, now: i64) -> f64 {
    let burst = rate.max(1.0);
    match stored {
        None => burst,
        Some((tokens, at)) => (tokens + (now - at).max(0) as f64 * rate / 1000.0).min(burst),
    }
}

/// The jobs of a tool with a limit per key that one claim starts: walking `head` (the
/// queue's head in claim order, as `(seq, key)`), a job is taken while fewer than
/// `per_key` of its key run, counting those `running` and those taken before it; at most
/// `take` in all. Jobs without a key share one key, `None`. The store reads `head` and
/// `running` and claims the picks with no other claim in between.
pub fn keyed_picks(
    head: &[(i64, Option<String>)],
    running: &HashMap<Option<String>, u32>,
    per_key: u32,
    take: usize,
) -> Vec<i64> {
    // Running and taken so far, per key seen.
    let mut busy: HashMap<Option<&str>, u32> = HashMap::new();
    let mut picks = Vec::new();
    for (seq, key) in head {
        if picks.len() >= take {
            break;
        }
        let key = key.as_deref();
        let n = busy
            .entry(key)
            .or_insert_with(|| running.get(&key.map(str::to_owned)).copied().unwrap_or(0));
        if *n < per_key {
            *n += 1;
            picks.push(*seq);
        }
    }
    picks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(keys: &[Option<&str>]) -> Vec<(i64, Option<String>)> {
        keys.iter()
            .enumerate()
            .map(|(i, k)| (i as i64 + 1, k.map(str::to_owned)))
            .collect()
    }

    #[test]
    fn rate_bucket_refills_at_the_rate_up_to_one_second() {
        assert_eq!(rate_tokens(5.0, None, 0), 5.0);
        assert_eq!(rate_tokens(5.0, Some((0.0, 0)), 200), 1.0);
        assert_eq!(rate_tokens(5.0, Some((0.0, 0)), 10_000), 5.0);
        assert_eq!(rate_tokens(0.5, Some((0.0, 0)), 1000), 0.5);
        assert_eq!(rate_tokens(0.5, None, 0), 1.0);
    }

    #[test]
    fn a_key_takes_at_most_its_limit_in_queue_order() {
        let h = head(&[
            Some("a"),
            Some("a"),
            Some("a"),
            Some("b"),
            Some("a"),
            Some("b"),
        ]);
        assert_eq!(keyed_picks(&h, &HashMap::new(), 2, 10), vec![1, 2, 4, 6]);
    }

    #[test]
    fn running_jobs_use_up_their_keys_room() {
        let h = head(&[Some("a"), Some("b"), Some("a"), Some("c")]);
        let running = HashMap::from([(Some("a".to_owned()), 2), (Some("b".to_owned()), 1)]);
        assert_eq!(keyed_picks(&h, &running, 2, 10), vec![2, 4]);
    }

    #[test]
    fn jobs_without_a_key_share_one() {
        let h = head(&[None, None, Some("a"), None]);
        let running = HashMap::from([(None, 1)]);
        assert_eq!(keyed_picks(&h, &running, 2, 10), vec![1, 3]);
    }

    #[test]
    fn a_claim_takes_no_more_than_asked() {
        let h = head(&[Some("a"), Some("b"), Some("c"), Some("d")]);
        assert_eq!(keyed_picks(&h, &HashMap::new(), 2, 2), vec![1, 2]);
        assert!(keyed_picks(&h, &HashMap::new(), 2, 0).is_empty());
    }
}
