//! Connection pressure: what keeps the daemon answering when connections run out.
//!
//! Three defences, applied by the accept loop in `server`: a cap on the connections one
//! source address holds (beyond it a connection is closed before a byte is read); under
//! pressure (three quarters of `server.max_connections` taken) a short head timeout for new
//! connections; and, under pressure or while every slot is taken, closing connections that
//! sit idle between requests (as Envoy's overload manager does), so a peer holding idle or
//! slow sockets cannot lock legitimate callers out until the head timeout reaps them.
//!
//! It must not read or answer requests: it only counts and times connections.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How often idle connections are asked to make room while under pressure.
pub const SHED_EVERY: Duration = Duration::from_millis(100);
/// A connection idle at least this long (no request in progress) may be closed under
/// pressure. Long enough that a client that just connected sends its head first.
pub const SHED_MIN_IDLE: Duration = Duration::from_millis(500);
/// The head timeout of connections accepted under pressure.
pub const PRESSURE_HEAD_TIMEOUT: Duration = Duration::from_secs(1);

/// Three quarters of the slots taken.
pub fn under_pressure(in_use: usize, max: usize) -> bool {
    in_use * 4 >= max * 3
}

/// Connections per source address, capped.
#[derive(Clone)]
pub struct PerAddress {
    cap: usize,
    held: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One connection's place in its address's count; given back on drop.
pub struct AddressSlot {
    ip: IpAddr,
    held: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl PerAddress {
    /// `cap` 0: no cap.
    pub fn new(cap: usize) -> PerAddress {
        PerAddress {
            cap: if cap == 0 { usize::MAX } else { cap },
            held: Arc::default(),
        }
    }

    pub fn admit(&self, ip: IpAddr) -> Option<AddressSlot> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let n = held.entry(ip).or_insert(0);
        if *n >= self.cap {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            ip,
            held: self.held.clone(),
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = held.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.ip);
            }
        }
    }
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64
}

/// Whether a connection is in a request, and since when it is not.
pub struct Activity {
    in_flight: AtomicU32,
    last_ms: AtomicU64,
}

/// Marks a request in progress until dropped: when its handler returns, or, for a
/// streaming answer, when the stream ends (the body holds it).
pub struct InRequest(Arc<Activity>);

impl Activity {
    pub fn new() -> Activity {
        Activity {
            in_flight: AtomicU32::new(0),
            last_ms: AtomicU64::new(now_ms()),
        }
    }

    pub fn begin(self: &Arc<Self>) -> InRequest {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InRequest(self.clone())
    }

    /// No request in progress, and none for `at_least`.
    pub fn idle_for(&self, at_least: Duration) -> bool {
        self.in_flight.load(Ordering::SeqCst) == 0
            && now_ms().saturating_sub(self.last_ms.load(Ordering::SeqCst))
                >= at_least.as_millis() as u64
    }
}

impl Default for Activity {
    fn default() -> Self {
        Activity::new()
    }
}

impl Drop for InRequest {
    fn drop(&mut self) {
        self.0.last_ms.store(now_ms(), Ordering::SeqCst);
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_holds_at_most_its_cap_and_gets_slots_back() {
        let p = PerAddress::new(2);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let s1 = p.admit(a).unwrap();
        let _s2 = p.admit(a).unwrap();
        assert!(p.admit(a).is_none());
        assert!(p.admit(b).is_some());
        drop(s1);
        assert!(p.admit(a).is_some());
    }

    #[test]
    fn pressure_starts_at_three_quarters() {
        assert!(!under_pressure(74, 100));
        assert!(under_pressure(75, 100));
    }

    #[test]
    fn a_connection_in_a_request_is_never_idle() {
        let a = Arc::new(Activity::new());
        let r = a.begin();
        assert!(!a.idle_for(Duration::ZERO));
        drop(r);
        assert!(a.idle_for(Duration::ZERO));
        assert!(!a.idle_for(Duration::from_secs(3600)));
    }
}
