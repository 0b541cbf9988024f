//! systemd integration: readiness and status notifications, the watchdog, and socket
//! activation (`sd-notify`).
//!
//! Owns what `mcpq serve` and `mcpq worker` tell their supervisor (`READY=1` only once they
//! can do their work, `STATUS=` lines a person can read, `STOPPING=1`, `RELOADING=1`, and
//! `WATCHDOG=1` only while a health check passes) and taking a listening socket the
//! supervisor holds (`LISTEN_FDS`). Without systemd (no `NOTIFY_SOCKET`, no `LISTEN_FDS`)
//! every function here does nothing.
//!
//! It must not decide health itself: callers pass the check.

use std::os::fd::FromRawFd;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

use crate::store::BoxFuture;

/// Sends one notification datagram, never blocking: `sd_notify::notify` sends on a
/// blocking socket, and a manager that reads slowly (a full queue) would then stall a
/// runtime thread, and with it shutdown. A notification that finds the queue full is
/// dropped (the next status or watchdog ping follows shortly).
fn notify(states: &[NotifyState<'_>]) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let mut msg = String::new();
    for s in states {
        msg.push_str(&s.to_string());
        msg.push('\n');
    }
    if let Err(e) = send_nonblocking(&path, msg.as_bytes()) {
        if e.kind() == std::io::ErrorKind::WouldBlock {
            tracing::debug!("service manager's notification queue is full; dropped one");
        } else {
            tracing::warn!(error = %e, "cannot notify the service manager");
        }
    }
}

fn send_nonblocking(path: &std::ffi::OsStr, msg: &[u8]) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let bytes = path.as_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        // An abstract socket (systemd's usual NOTIFY_SOCKET).
        Some(name) => SocketAddr::from_abstract_name(name)?,
        None => SocketAddr::from_pathname(std::path::Path::new(path))?,
    };
    let sock = UnixDatagram::unbound()?;
    sock.set_nonblocking(true)?;
    sock.send_to_addr(msg, &addr)?;
    Ok(())
}

/// `READY=1` with a status line.
pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A status line only.
pub fn status(status: &str) {
    notify(&[NotifyState::Status(status)]);
}

/// `STOPPING=1`: shutting down, draining.
pub fn stopping() {
    notify(&[
        NotifyState::Stopping,
        NotifyState::Status("stopping: draining"),
    ]);
}

/// `RELOADING=1` (with the monotonic time newer systemd asks for); `ready` ends it.
pub fn reloading() {
    let mut states = vec![
        NotifyState::Reloading,
        NotifyState::Status("reloading the configuration"),
    ];
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    notify(&states);
}

/// The listening socket passed by socket activation (`LISTEN_FDS`/`LISTEN_PID`), if any.
/// More than one socket is an error: the daemon serves one address.
pub fn inherited_listener() -> Result<Option<std::net::TcpListener>, String> {
    let fds = sd_notify::listen_fds().map_err(|e| format!("socket activation: {e}"))?;
    let fds: Vec<_> = fds.collect();
    match fds.as_slice() {
        [] => Ok(None),
        [fd] => {
            // SAFETY: systemd passed this descriptor to this process (LISTEN_PID checked by
            // listen_fds) and nothing else in the process owns it.
            let l = unsafe { std::net::TcpListener::from_raw_fd(*fd) };
            l.set_nonblocking(true)
                .map_err(|e| format!("socket activation: {e}"))?;
            l.local_addr()
                .map_err(|e| format!("socket activation: fd {fd} is not a TCP listener: {e}"))?;
            Ok(Some(l))
        }
        more => Err(format!(
            "socket activation passed {} sockets; mcpq serves exactly one",
            more.len()
        )),
    }
}

/// A health check: a status line when healthy, the reason when not.
pub type Check = Box<dyn Fn() -> BoxFuture<'static, Result<String, String>> + Send + Sync>;

/// How often the status line is refreshed when no watchdog sets the pace.
const STATUS_EVERY: Duration = Duration::from_secs(10);

/// Under a service manager, runs `check` periodically: its line becomes `STATUS=` (queue
/// depth, jobs running). When the manager also asks for a watchdog (`WATCHDOG_USEC`), the
/// check runs at half the watchdog period and the process pings only when it passes within
/// that time: a wedged writer or a stalled database stops the pings, and systemd restarts
/// the process.
pub async fn watchdog(check: Check, stop: CancellationToken) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let watchdog = sd_notify::watchdog_enabled();
    let every = watchdog
        .map(|period| (period / 2).max(Duration::from_millis(10)))
        .unwrap_or(STATUS_EVERY);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match tokio::time::timeout(every, check()).await {
            Ok(Ok(line)) if watchdog.is_some() => {
                notify(&[NotifyState::Watchdog, NotifyState::Status(&line)])
            }
            Ok(Ok(line)) => status(&line),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "health check failed; withholding the watchdog ping");
                status(&format!("unhealthy: {e}"));
            }
            Err(_) => {
                tracing::warn!("health check timed out; withholding the watchdog ping");
                status("unhealthy: health check timed out");
            }
        }
    }
}
