//! Upstream MCP servers in this process (`[upstreams.NAME]`, docs/UPSTREAMS.md): for each,
//! a pool of initialized sessions kept up (a session that ends is reconnected with
//! back-off: a stdio server that died is started again), its tool list (listed at
//! connect, on `notifications/tools/list_changed` and on reload, every page), and whether
//! it is up.
//!
//! Every process that runs upstream tools has its own set: the daemon (sync tools,
//! and the listing clients see) and each worker (job tools). A change of any list bumps
//! [`Upstreams::changes`], on which the owner rebuilds its registry; tool definitions
//! carry the listed schemas, so a worker whose listing differs from the daemon's does not
//! claim the daemon's jobs (`JobPolicy::definition`).
//!
//! It must not build tools or touch the store: `tools::Registry` turns listings into
//! tools, [`call`] runs one call.

pub mod asking;
pub mod call;
mod connections;
pub mod direct;
pub mod session;
pub mod task;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use rmcp::model::Tool as UpstreamTool;
use rmcp::service::Peer;
use rmcp::RoleClient;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use crate::config::upstreams::UpstreamDef;
use crate::telemetry::names;
use session::{Calls, Handler, Session};

/// How long one connect and initialize may take before it counts as failed.
const CONNECT_LIMIT: Duration = Duration::from_secs(20);
/// Back-off between reconnects: from the first to the last, doubling.
const BACKOFF_FIRST: Duration = Duration::from_millis(200);
const BACKOFF_LAST: Duration = Duration::from_secs(10);
/// A session that lived this long resets the back-off.
const HEALTHY_AFTER: Duration = Duration::from_secs(30);

/// Whether an upstream answers, as `mcpq stats`, the metrics and readiness report it.
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    pub name: String,
    /// Sessions up out of `pool`.
    pub up: usize,
    pub pool: usize,
    /// Tools published from its last listing (`None`: never listed).
    pub tools: Option<usize>,
    /// The last connect or listing failure.
    pub last_error: Option<String>,
}

/// One upstream: its sessions and its listing.
pub struct Upstream {
    pub def: UpstreamDef,
    slots: Vec<ArcSwapOption<Slot>>,
    next: AtomicUsize,
    listing: ArcSwapOption<Vec<UpstreamTool>>,
    last_error: Mutex<Option<String>>,
    relist: Arc<Notify>,
    stop: CancellationToken,
    /// Calls parked while mcpq's client answers their upstream's question.
    asking: Arc<asking::Asking>,
}

/// A live session as calls see it.
pub struct Slot {
    pub peer: Peer<RoleClient>,
    pub calls: Arc<Calls>,
    /// How calls are sent when mcpq makes them itself (a stateless HTTP upstream); else
    /// through `peer`.
    pub direct: Option<Arc<direct::Direct>>,
    /// Ends the session (a stdio server that stopped answering is killed by it).
    pub kill: CancellationToken,
}

impl Upstream {
    /// A live session, round robin over the pool; `None` while every one is down.
    pub fn session(&self) -> Option<Arc<Slot>> {
        let n = self.slots.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n).find_map(|i| self.slots[(start + i) % n].load_full())
    }

    /// Waits up to `limit` for a live session (a server restarting after a crash).
    pub async fn session_within(&self, limit: Duration) -> Option<Arc<Slot>> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(s) = self.session() {
                return Some(s);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The tools it listed last (`None`: not listed yet).
    pub fn listing(&self) -> Option<Arc<Vec<UpstreamTool>>> {
        self.listing.load_full()
    }

    /// Publishes this upstream's gauges (sessions up, tools listed).
    fn report(&self) {
        let h = self.health();
        let name = self.def.name.clone();
        metrics::gauge!(names::UPSTREAM_SESSIONS, "upstream" => name.clone()).set(h.up as f64);
        if let Some(n) = h.tools {
            metrics::gauge!(names::UPSTREAM_TOOLS, "upstream" => name).set(n as f64);
        }
    }

    fn set_error(&self, e: Option<String>) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = e;
    }

    pub fn health(&self) -> Health {
        Health {
            name: self.def.name.clone(),
            up: self.slots.iter().filter(|s| s.load().is_some()).count(),
            pool: self.slots.len(),
            tools: self
                .listing()
                .map(|l| l.iter().filter(|t| self.def.publishes(&t.name)).count()),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}

/// The upstreams of this process.
#[derive(Clone)]
pub struct Upstreams {
    inner: Arc<Shared>,
}

struct Shared {
    all: ArcSwap<BTreeMap<String, Arc<Upstream>>>,
    changed: watch::Sender<u64>,
    shutdown: CancellationToken,
}

impl Upstreams {
    /// None yet; [`Upstreams::apply`] starts them. Everything stops with `shutdown`.
    pub fn new(shutdown: CancellationToken) -> Upstreams {
        Upstreams {
            inner: Arc::new(Shared {
                all: ArcSwap::from_pointee(BTreeMap::new()),
                changed: watch::channel(0).0,
                shutdown,
            }),
        }
    }

    /// Stops every session (the process is stopping).
    pub fn stop(&self) {
        self.inner.shutdown.cancel();
    }

    /// Calls `on_change` after each change of a listing, until [`Upstreams::stop`].
    pub async fn follow(self, on_change: impl Fn() + Send) {
        let mut rx = self.changes();
        rx.mark_unchanged();
        loop {
            tokio::select! {
                _ = self.inner.shutdown.cancelled() => return,
                r = rx.changed() => {
                    if r.is_err() {
                        return;
                    }
                    on_change();
                }
            }
        }
    }

    /// Bumped whenever a listing changes.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changed.subscribe()
    }

    pub fn get(&self, name: &str) -> Option<Arc<Upstream>> {
        self.inner.all.load().get(name).cloned()
    }

    pub fn all(&self) -> Vec<Arc<Upstream>> {
        self.inner.all.load().values().cloned().collect()
    }

    pub fn health(&self) -> Vec<Health> {
        self.all().iter().map(|u| u.health()).collect()
    }

    /// Sets every upstream's gauges (at a scrape: the recorder may be installed after
    /// the upstreams started).
    pub fn report(&self) {
        for u in self.all() {
            u.report();
        }
    }

    /// For a status line: the upstreams with no live session, e.g. `upstreams down: fx
    /// (spawn …: not found)`; `None` while every one is up.
    pub fn describe_down(&self) -> Option<String> {
        let down: Vec<String> = self
            .health()
            .into_iter()
            .filter(|h| h.up == 0)
            .map(|h| match h.last_error {
                Some(e) => format!("{} ({})", h.name, e.chars().take(120).collect::<String>()),
                None => h.name,
            })
            .collect();
        (!down.is_empty()).then(|| format!("upstreams down: {}", down.join(", ")))
    }

    /// Makes the running set match `defs`: new or changed upstreams start, removed ones
    /// stop, unchanged ones list their tools again. Waits up to `wait` for the new ones'
    /// first listing (an upstream that is down does not hold anything up: its tools
    /// appear once it answers).
    pub async fn apply(&self, defs: &[UpstreamDef], wait: Duration) {
        let old = self.inner.all.load_full();
        let mut next = BTreeMap::new();
        let mut started = Vec::new();
        for def in defs {
            match old.get(&def.name) {
                Some(u) if u.def.fingerprint == def.fingerprint => {
                    u.relist.notify_one();
                    next.insert(def.name.clone(), u.clone());
                }
                _ => {
                    let u = self.start(def.clone());
                    started.push(u.clone());
                    next.insert(def.name.clone(), u);
                }
            }
        }
        for (name, u) in old.iter() {
            if next.get(name).is_none_or(|n| !Arc::ptr_eq(n, u)) {
                u.stop.cancel();
            }
        }
        self.inner.all.store(Arc::new(next));
        self.inner.changed.send_modify(|g| *g += 1);
        let listed = async {
            for u in &started {
                while u.listing().is_none()
                    && u.last_error.lock().map(|e| e.is_none()).unwrap_or(true)
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        let _ = tokio::time::timeout(wait, listed).await;
    }

    fn start(&self, def: UpstreamDef) -> Arc<Upstream> {
        let stop = self.inner.shutdown.child_token();
        let u = Arc::new(Upstream {
            slots: (0..def.pool).map(|_| ArcSwapOption::empty()).collect(),
            def,
            next: AtomicUsize::new(0),
            listing: ArcSwapOption::empty(),
            last_error: Mutex::new(None),
            relist: Arc::new(Notify::new()),
            stop,
            asking: Arc::default(),
        });
        for i in 0..u.slots.len() {
            tokio::spawn(keep_up(u.clone(), i));
        }
        tokio::spawn(keep_listed(u.clone(), self.inner.changed.clone()));
        u
    }
}

/// Keeps slot `i` of `u` connected until the upstream stops.
async fn keep_up(u: Arc<Upstream>, i: usize) {
    let mut backoff = BACKOFF_FIRST;
    while !u.stop.is_cancelled() {
        let calls = Arc::new(Calls::default());
        let handler = Handler {
            upstream: u.def.name.clone(),
            calls: calls.clone(),
            relist: u.relist.clone(),
            revision: u.def.revision,
        };
        let began = tokio::time::Instant::now();
        match session::connect(&u.def, handler, CONNECT_LIMIT).await {
            Ok(Session { service, child }) => {
                let kill = u.stop.child_token();
                u.slots[i].store(Some(Arc::new(Slot {
                    peer: service.peer().clone(),
                    calls,
                    direct: direct::Direct::for_session(
                        &u.def,
                        service
                            .peer()
                            .peer_info()
                            .map(|i| i.protocol_version.clone())
                            .as_ref(),
                    )
                    .await,
                    kill: kill.clone(),
                })));
                if i == 0 {
                    session::listen_for_changes(
                        service.peer().clone(),
                        u.def.name.clone(),
                        u.relist.clone(),
                        kill.clone(),
                    );
                }
                tracing::info!(upstream = %u.def.name, slot = i, "upstream session up");
                u.report();
                u.relist.notify_one();
                // Dropping the service (when `kill` wins) cancels it.
                tokio::select! {
                    _ = kill.cancelled() => {}
                    _ = service.waiting() => {}
                }
                u.slots[i].store(None);
                drop(child);
                u.report();
                metrics::counter!(names::UPSTREAM_FAILURES, "upstream" => u.def.name.clone())
                    .increment(1);
                if !u.stop.is_cancelled() {
                    tracing::warn!(upstream = %u.def.name, slot = i, "upstream session ended; reconnecting");
                }
            }
            Err(e) => {
                tracing::warn!(upstream = %u.def.name, slot = i, error = %e, "upstream connect failed");
                u.set_error(Some(e));
                u.report();
                metrics::counter!(names::UPSTREAM_FAILURES, "upstream" => u.def.name.clone())
                    .increment(1);
            }
        }
        if began.elapsed() >= HEALTHY_AFTER {
            backoff = BACKOFF_FIRST;
        }
        tokio::select! {
            _ = u.stop.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_LAST);
    }
}

/// Lists `u`'s tools whenever asked (a session came up, the server said its list changed,
/// a reload), and bumps `changed` when the listing differs.
async fn keep_listed(u: Arc<Upstream>, changed: watch::Sender<u64>) {
    loop {
        tokio::select! {
            _ = u.stop.cancelled() => return,
            _ = u.relist.notified() => {}
        }
        let Some(slot) = u.session() else { continue };
        match tokio::time::timeout(CONNECT_LIMIT, slot.peer.list_all_tools()).await {
            Ok(Ok(tools)) => {
                u.set_error(None);
                let same = u.listing().is_some_and(|old| *old == tools);
                if !same {
                    tracing::info!(upstream = %u.def.name, tools = tools.len(), "upstream tools listed");
                    u.listing.store(Some(Arc::new(tools)));
                    u.report();
                    changed.send_modify(|g| *g += 1);
                }
            }
            Ok(Err(e)) => u.set_error(Some(format!("tools/list: {e}"))),
            Err(_) => u.set_error(Some("tools/list: no answer in time".into())),
        }
    }
}
