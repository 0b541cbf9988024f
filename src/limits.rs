//! Per-client limits: a token-bucket call rate (`rate_limited`, HTTP 429 with
//! `Retry-After`) and a cap on each client's queued jobs (`queue_full`), so one client can
//! neither monopolise the daemon nor fill the disk and starve the others.
//!
//! Both apply only after the signature is verified (a refused caller never creates state
//! here) and cost nothing when off. The queue cap is enforced without a query per call: each
//! client has an upper bound of its queued jobs (the last exact count plus every enqueue
//! admitted since; claims only lower the true count), and the exact count is read again
//! (at most once a second per client) only when that bound reaches the cap. So a client
//! never has more than the cap queued through this daemon, and may be refused up to a
//! second early while workers drain it.
//!
//! It must not know HTTP or wire codes: the server maps its refusals to `CallError`s.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::config::LimitSettings;
use crate::store::{Store, StoreError};

/// How long a refused client should wait before the next attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfterMs(pub u64);

/// Exact counts are read again at most this often per client.
const REFRESH_MS: i64 = 1000;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at_ms: i64,
}

#[derive(Debug)]
struct Queued {
    /// Upper bound of the client's queued jobs.
    bound: u64,
    counted_at: i64,
}

#[derive(Debug)]
pub struct ClientLimits {
    rate: f64,
    burst: f64,
    max_queued: u64,
    buckets: Mutex<HashMap<String, Bucket>>,
    queued: Mutex<HashMap<String, Queued>>,
}

impl ClientLimits {
    pub fn new(s: &LimitSettings) -> ClientLimits {
        ClientLimits {
            rate: s.rate_per_client.max(0.0),
            burst: if s.rate_burst > 0.0 {
                s.rate_burst
            } else {
                s.rate_per_client.max(1.0)
            },
            max_queued: s.max_queued_per_client,
            buckets: Mutex::default(),
            queued: Mutex::default(),
        }
    }

    pub fn max_queued(&self) -> u64 {
        self.max_queued
    }

    /// Takes one token from `client`'s bucket, or says how long until one is there.
    pub fn admit_call(&self, client: &str, now_ms: i64) -> Result<(), RetryAfterMs> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let b = buckets.entry(client.to_string()).or_insert(Bucket {
            tokens: self.burst,
            at_ms: now_ms,
        });
        let elapsed = (now_ms - b.at_ms).max(0) as f64 / 1000.0;
        b.tokens = (b.tokens + elapsed * self.rate).min(self.burst);
        b.at_ms = now_ms;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - b.tokens) / self.rate;
            Err(RetryAfterMs((wait * 1000.0).ceil() as u64))
        }
    }

    /// Admits one more queued job for `client`, or refuses while it has `max_queued`.
    pub async fn admit_job(
        &self,
        client: &str,
        now_ms: i64,
        store: &dyn Store,
    ) -> Result<Result<(), RetryAfterMs>, StoreError> {
        if self.max_queued == 0 {
            return Ok(Ok(()));
        }
        let stale = {
            let q = self.queued.lock().unwrap_or_else(|p| p.into_inner());
            match q.get(client) {
                None => true,
                Some(e) => e.bound >= self.max_queued && now_ms - e.counted_at >= REFRESH_MS,
            }
        };
        if stale {
            let exact = store.count_queued(client, self.max_queued).await?;
            let mut q = self.queued.lock().unwrap_or_else(|p| p.into_inner());
            q.insert(
                client.to_string(),
                Queued {
                    bound: exact,
                    counted_at: now_ms,
                },
            );
        }
        let mut q = self.queued.lock().unwrap_or_else(|p| p.into_inner());
        let Some(e) = q.get_mut(client) else {
            return Ok(Ok(()));
        };
        if e.bound >= self.max_queued {
            let wait = (e.counted_at + REFRESH_MS - now_ms).max(1) as u64;
            return Ok(Err(RetryAfterMs(wait)));
        }
        e.bound += 1;
        Ok(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rate: f64, burst: f64) -> ClientLimits {
        ClientLimits::new(&LimitSettings {
            rate_per_client: rate,
            rate_burst: burst,
            max_queued_per_client: 0,
            max_connections_per_ip: 0,
        })
    }

    #[test]
    fn a_bucket_allows_its_burst_then_the_rate_and_says_when_to_come_back() {
        let l = limits(10.0, 3.0);
        for _ in 0..3 {
            assert_eq!(l.admit_call("a", 1000), Ok(()));
        }
        assert_eq!(l.admit_call("a", 1000), Err(RetryAfterMs(100)));
        // Another client has its own bucket.
        assert_eq!(l.admit_call("b", 1000), Ok(()));
        // 100 ms later one token is back, and only one.
        assert_eq!(l.admit_call("a", 1100), Ok(()));
        assert!(l.admit_call("a", 1100).is_err());
        // Tokens never pile up past the burst.
        for _ in 0..3 {
            assert_eq!(l.admit_call("a", 60_000), Ok(()));
        }
        assert!(l.admit_call("a", 60_000).is_err());
    }

    #[test]
    fn a_zero_rate_is_off() {
        let l = limits(0.0, 0.0);
        for _ in 0..10_000 {
            assert_eq!(l.admit_call("a", 0), Ok(()));
        }
    }
}
