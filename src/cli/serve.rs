//! `mcpq serve`: builds the daemon, hooks it to signals, reload and systemd, announces
//! where it listens, and runs it until a shutdown signal.
//!
//! It must not assemble the server itself: `Server::build` does.

use std::path::PathBuf;

use super::lifecycle::{reload_on_sighup, service_lifecycle, shutdown_on_signals};
use super::{AnyError, Loader};
use crate::config::Settings;
use crate::server::Server;

pub(super) async fn serve(
    settings: Settings,
    config: Option<PathBuf>,
    loader: Loader,
) -> Result<(), AnyError> {
    let settings_metrics = settings.metrics.clone();
    if settings.console.enabled && settings_metrics.listen.is_none() {
        return Err("console.enabled: the console is served on metrics.listen, which is off (\"\"); set it, or run `mcpq ui --listen ADDR`".into());
    }
    let server = Server::build(settings).await?;
    let stop = shutdown_on_signals()?;
    let reloader = server.reloader();
    let addr = server.local_addr();
    reload_on_sighup(config.clone(), loader, move |s| match s {
        Ok(s) => reloader.reload(&s).map_err(|e| e.to_string()),
        Err(e) => {
            reloader.refused(&e);
            Err(e)
        }
    })?;
    if let Some(at) = settings_metrics.listen {
        let (bound, _) = crate::telemetry::serve(
            at,
            server.scrape(),
            settings_metrics.max_connections,
            stop.clone(),
        )
        .await?;
        // Before "listening on": tests and scripts read that line last.
        println!("metrics on {bound}");
    }
    service_lifecycle(&stop, server.health_check(), format!("serving on {addr}"));
    // Tests and scripts read this line to find the port when listening on port 0.
    println!("listening on {addr}");
    server.run_until_stopped(stop).await?;
    Ok(())
}
