//! `mcpq ui --listen ADDR`: the operator's console alone, for a host that runs only workers
//! (or an operator's laptop with a tunnel to the database): opens the store and serves
//! `/ui/` until a shutdown signal.
//!
//! It must not serve anything else (no calls, no metrics) nor build pages itself.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::Request;

use super::lifecycle::shutdown_on_signals;
use super::AnyError;
use crate::clock::SystemClock;
use crate::config::Settings;
use crate::console::Console;
use crate::http::listener::{self, ConnectionLimits};

pub(super) async fn ui(settings: Settings, listen: SocketAddr) -> Result<(), AnyError> {
    if !settings.console.enabled {
        return Err("the console is off: set [console] enabled = true and add an [operators.NAME] (docs/CONSOLE.md)".into());
    }
    let opened = crate::store::open::open(&settings).await?;
    let tcp = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let bound = tcp.local_addr()?;
    let console = Console::new(
        &settings,
        opened.admin(),
        opened.store(),
        Arc::new(SystemClock),
        bound,
    )
    .ok_or("the console is off")?;
    let stop = shutdown_on_signals()?;
    let limits = ConnectionLimits {
        max_connections: settings.metrics.max_connections.max(1),
        header_timeout: Duration::from_secs(5),
        max_connections_per_ip: 0,
    };
    // Tests and scripts read this line to find the port when listening on port 0.
    println!("console on http://{bound}/ui/");
    let handler = move |req: Request<Incoming>| {
        let console = console.clone();
        async move {
            let path = req.uri().path();
            if !crate::http::host_allowed(bound, req.headers()) {
                return crate::http::plain(403, "Host not allowed\n");
            }
            if path == "/ui" || path.starts_with("/ui/") {
                console.handle(req).await
            } else if path == "/" {
                crate::http::plain(404, "the console is at /ui/\n")
            } else {
                crate::http::plain(404, "not found\n")
            }
        }
    };
    listener::serve(tcp, limits, handler, stop).await;
    opened.store().close().await;
    Ok(())
}
