//! The daemon assembled: binds the listener (or takes systemd's), opens the store, builds
//! the core (`app`) and its two transports (`v1`, `mcp`) behind one router, and runs them
//! with the embedded worker, the maintenance task and the scheduler until the shutdown token fires.
//!
//! Built and run apart (`Server::build` → `local_addr` → `run_until_stopped`) so tests
//! can bind port 0.
//!
//! It must not answer requests itself (`router` hands them on) nor contain tool logic or SQL.

pub mod router;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app::App;
use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::http::listener::{self, ConnectionLimits};
use crate::mcp::Mcp;
use crate::store::{Store, StoreError};
use crate::v1::V1;
use crate::webhooks::Deliverer;
use crate::worker::{self, WorkerOptions, WorkerParts};

use self::router::Router;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Activation(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A built, bound, not yet running daemon.
pub struct Server {
    listener: TcpListener,
    router: Arc<Router>,
    app: Arc<App>,
    store: Arc<dyn Store>,
    admin: Arc<dyn crate::store::admin::AdminStore>,
    settings: Settings,
}

impl Server {
    /// Opens the database (applying migrations), restores live nonces and binds the listener.
    pub async fn build(settings: Settings) -> Result<Server, ServerError> {
        Server::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> Result<Server, ServerError> {
        let listener = bind(&settings).await?;
        let served = listener.local_addr().unwrap_or(settings.server.listen);
        settings.check_safe_to_serve_on(served)?;
        let opened = crate::store::open::open(&settings).await?;
        let (store, admin) = (opened.store(), opened.admin());
        let app = Arc::new(App::new(&settings, store.clone(), clock)?);
        app.restore_nonces().await?;
        app.start_upstreams(UPSTREAM_START_WAIT).await;
        let oauth = if settings.oauth.enabled() {
            let o = Arc::new(
                crate::oauth::OAuth::new(&settings.oauth)
                    .map_err(crate::config::ConfigError::Invalid)?,
            );
            // Keys fetched ahead of the first token, without holding up the start: a
            // failure is retried when a token needs them.
            let warm = o.clone();
            tokio::spawn(async move { warm.warm_up().await });
            Some(o)
        } else {
            None
        };
        let router = Arc::new(Router {
            app: app.clone(),
            v1: V1::new(app.clone(), &settings),
            mcp: Arc::new(Mcp::new(app.clone(), &settings, served, oauth)),
        });
        Ok(Server {
            listener,
            router,
            app,
            store,
            admin,
            settings,
        })
    }

    /// The watchdog's health check: a read through the pool and a round trip through the
    /// writer thread (`flush`), so a stalled database or a wedged writer fails it.
    pub fn health_check(&self) -> crate::systemd::Check {
        let serving = format!("serving on {}", self.local_addr());
        let app = self.app.clone();
        worker::store_health(
            self.store.clone(),
            self.app.clock().clone(),
            move || match app.upstreams().describe_down() {
                Some(down) => format!("{serving}; {down}"),
                None => serving.clone(),
            },
        )
    }

    /// What the metrics endpoint reads at each scrape (this server's store and clock).
    pub fn scrape(&self) -> crate::telemetry::Scrape {
        crate::telemetry::Scrape {
            store: self.store.clone(),
            clock: self.app.clock().clone(),
            lease_ms: self.settings.jobs.lease_ms,
            console: self.console(),
            upstreams: Some(self.app.upstreams().clone()),
        }
    }

    /// The operator's console for the metrics listener, when `[console]` is enabled.
    fn console(&self) -> Option<crate::http::Handler> {
        let at = self.settings.metrics.listen?;
        let console = crate::console::Console::new(
            &self.settings,
            self.admin.clone(),
            self.store.clone(),
            self.app.clock().clone(),
            at,
        )?;
        Some(crate::console::handler(console))
    }

    /// A handle that applies a new configuration's client keys and tools to this server.
    pub fn reloader(&self) -> Reloader {
        Reloader {
            app: self.app.clone(),
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.settings.server.listen)
    }

    /// Serves until `shutdown` fires, then drains connections, stops embedded workers
    /// (releasing their jobs) and flushes pending nonce writes.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), ServerError> {
        let Server {
            listener,
            router,
            app,
            store,
            settings,
            ..
        } = self;
        tracing::info!(addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            server_id = %settings.server.id, db = %settings.database.display(), "serving");

        let background = TaskTracker::new();
        let workers_stop = CancellationToken::new();
        let pruner = app.clone();
        background.spawn(crate::store::status::watch(
            store.clone(),
            workers_stop.clone(),
        ));
        background.spawn(worker::maintenance(
            store.clone(),
            Arc::new(move |now| pruner.prune_nonces(now)),
            settings.jobs.clone(),
            (settings.audit.enabled && settings.audit.retention_secs > 0)
                .then(|| (settings.audit.retention_secs as i64).saturating_mul(1000)),
            app.clock().clone(),
            workers_stop.clone(),
        ));
        background.spawn(app.audit().clone().run(workers_stop.clone()));
        background.spawn(
            crate::scheduler::Scheduler::new(app.clone(), settings.schedules.clone())
                .run(workers_stop.clone()),
        );
        if settings.server.embedded_workers > 0 {
            let opts = WorkerOptions::from_settings(&settings, settings.server.embedded_workers);
            let parts = WorkerParts {
                store: store.clone(),
                registry: app.shared_registry(),
                opts,
                clock: app.clock().clone(),
                wake: Some(app.job_added()),
            };
            background.spawn(worker::run(parts, workers_stop.clone()));
            // The embedded worker delivers webhooks too (docs/WEBHOOKS.md).
            let owner = format!("{}:{}:webhooks", settings.server.id, std::process::id());
            match Deliverer::new(
                &settings.webhooks,
                store.clone(),
                owner,
                app.clock().clone(),
            ) {
                Ok(Some(d)) => {
                    background.spawn(d.run(workers_stop.clone()));
                }
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, "webhooks are not delivered by this daemon"),
            }
        }

        let limits = ConnectionLimits {
            max_connections: settings.server.max_connections,
            header_timeout: Duration::from_millis(settings.server.header_timeout_ms),
            max_connections_per_ip: settings.limits.max_connections_per_ip,
        };
        let handler = move |req| router.clone().route(req);
        listener::serve(listener, limits, handler, shutdown).await;
        workers_stop.cancel();
        background.close();
        background.wait().await;
        app.upstreams().stop();
        store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// How long a start waits for the upstreams' first tool listings (docs/UPSTREAMS.md):
/// one that is down by then is listed once it answers.
const UPSTREAM_START_WAIT: Duration = Duration::from_secs(10);

/// A socket held by systemd (socket activation), else our own.
async fn bind(settings: &Settings) -> Result<TcpListener, ServerError> {
    let addr = settings.server.listen;
    match crate::systemd::inherited_listener().map_err(ServerError::Activation)? {
        Some(l) => TcpListener::from_std(l).map_err(|source| ServerError::Bind { addr, source }),
        None => TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source }),
    }
}

/// Applies a reloaded configuration (SIGHUP) to a running server: its client keys and its
/// tools. Open connections, running jobs and the nonce set are untouched; other settings
/// (addresses, database, limits) need a restart.
#[derive(Clone)]
pub struct Reloader {
    app: Arc<App>,
}

impl Reloader {
    /// Validates `settings` completely first; on any error nothing changes.
    pub fn reload(&self, settings: &Settings) -> Result<String, ServerError> {
        Ok(self.app.reload(settings)?)
    }

    /// A reload whose configuration did not load: recorded in the audit trail.
    pub fn refused(&self, why: &str) {
        self.app.audit().reload(self.app.now_ms(), "refused", why);
    }
}
