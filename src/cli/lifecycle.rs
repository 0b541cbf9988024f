//! What the long-running commands (`mcpq serve`, `mcpq worker`) share with their
//! supervisor: shutdown on SIGINT/SIGTERM, reload on SIGHUP, and systemd's readiness,
//! watchdog and stopping notifications.
//!
//! It must not build a server or a worker: the commands pass what to check and apply.

use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

use super::{AnyError, Loader};
use crate::config::Settings;

/// Cancels the token on SIGINT or SIGTERM.
///
/// Both handlers are registered before this returns, so callers must call it before they
/// announce readiness: a SIGTERM that lands between "listening on" and a lazily spawned
/// registration would take the default action and kill the process mid-write.
pub(super) fn shutdown_on_signals() -> Result<CancellationToken, AnyError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term =
        signal(SignalKind::terminate()).map_err(|e| format!("cannot handle SIGTERM: {e}"))?;
    let mut int =
        signal(SignalKind::interrupt()).map_err(|e| format!("cannot handle SIGINT: {e}"))?;
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutdown requested");
        t.cancel();
    });
    Ok(token)
}

/// Tells systemd (when it supervises us) that we are ready, keeps its watchdog fed while
/// `check` passes, and says STOPPING once `stop` fires.
pub(super) fn service_lifecycle(
    stop: &CancellationToken,
    check: crate::systemd::Check,
    status: String,
) {
    crate::systemd::ready(&status);
    let watchdog_stop = stop.child_token();
    tokio::spawn(crate::systemd::watchdog(check, watchdog_stop));
    let stop = stop.clone();
    tokio::spawn(async move {
        stop.cancelled().await;
        crate::systemd::stopping();
    });
}

/// On SIGHUP, re-reads the configuration and hands it (or why it did not load) to `apply`;
/// a configuration that does not load or apply is refused and the running one stays.
///
/// Registered before the caller announces readiness: SIGHUP's default action ends the
/// process.
pub(super) fn reload_on_sighup(
    config: Option<PathBuf>,
    loader: Loader,
    apply: impl Fn(Result<Settings, String>) -> Result<String, String> + Send + 'static,
) -> Result<(), AnyError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).map_err(|e| format!("cannot handle SIGHUP: {e}"))?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            crate::systemd::reloading();
            let outcome = apply(loader(config.as_deref()).map_err(|e| e.to_string()));
            match outcome {
                Ok(summary) => {
                    tracing::info!(%summary, "configuration reloaded");
                    crate::systemd::ready(&format!("configuration reloaded: {summary}"));
                }
                Err(e) => {
                    tracing::error!(
                        error = %e,
                        "reload refused: the new configuration is invalid; the running one stays"
                    );
                    crate::systemd::ready(&format!(
                        "reload refused (running configuration kept): {e}"
                    ));
                }
            }
        }
    });
    Ok(())
}
