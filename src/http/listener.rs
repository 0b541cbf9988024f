//! The accept loop: one task per connection, served by hyper (HTTP/1.1) under the
//! connection limits of `overload` (total and per-address caps, short head timeouts and
//! idle shedding under pressure), drained gracefully at shutdown.
//!
//! It must not route or answer requests: it hands each one to the handler it was given.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::overload::{self, Activity, PerAddress};
use super::HttpResponse;

/// How long, at shutdown, a connection that has sent no request yet gets to send it.
const FIRST_REQUEST_GRACE: Duration = Duration::from_millis(500);

/// How long in-flight requests get to finish once the listener stops accepting.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The connection limits of one listener (`server.*`, `limits.max_connections_per_ip`).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub max_connections_per_ip: usize,
}

/// Whether a connection's first request has arrived (see the shutdown path).
#[derive(Default)]
struct FirstRequest {
    arrived: std::sync::atomic::AtomicBool,
    notify: Notify,
}

impl FirstRequest {
    fn arrived(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        if !self.arrived.load(Relaxed) {
            self.arrived.store(true, Relaxed);
            // Keeps a permit if nobody waits yet.
            self.notify.notify_one();
        }
    }

    fn has_arrived(&self) -> bool {
        self.arrived.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Serves `listener` with `handler` until `shutdown` fires, then stops accepting and lets
/// in-flight requests finish (idle keep-alive connections close at once).
pub async fn serve<H, F>(
    listener: TcpListener,
    limits: ConnectionLimits,
    handler: H,
    shutdown: CancellationToken,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = HttpResponse> + Send + 'static,
{
    let conns = TaskTracker::new();
    let max_conns = limits.max_connections;
    let slots = Arc::new(Semaphore::new(max_conns));
    let per_ip = PerAddress::new(limits.max_connections_per_ip);
    let shed = Arc::new(Notify::new());
    let mut last_shed = tokio::time::Instant::now();
    'accept: loop {
        // Every connection slot taken: while waiting for one, keep asking idle
        // connections to make room.
        let permit = loop {
            tokio::select! {
                _ = shutdown.cancelled() => break 'accept,
                p = slots.clone().acquire_owned() => match p { Ok(p) => break p, Err(_) => break 'accept },
                _ = tokio::time::sleep(overload::SHED_EVERY) => {
                    shed.notify_waiters();
                    last_shed = tokio::time::Instant::now();
                }
            }
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let Some(address_slot) = per_ip.admit(peer.ip()) else {
            // Over its address's cap: closed before a byte is read, so one peer cannot
            // hold the slots every other client needs.
            metrics::counter!("mcpq_connections_refused_total", "reason" => "per_address")
                .increment(1);
            drop(stream);
            continue;
        };
        // Under pressure (three quarters of the slots taken), as Envoy's overload
        // manager does: new connections get a short head timeout, and connections idle
        // between requests are closed to make room.
        let in_use = max_conns - slots.available_permits();
        let pressure = overload::under_pressure(in_use, max_conns);
        if pressure && last_shed.elapsed() >= overload::SHED_EVERY {
            shed.notify_waiters();
            last_shed = tokio::time::Instant::now();
        }
        let head_timeout = if pressure {
            limits.header_timeout.min(overload::PRESSURE_HEAD_TIMEOUT)
        } else {
            limits.header_timeout
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let shutdown = shutdown.clone();
        let shed = shed.clone();
        conns.spawn(async move {
            let _permit = permit;
            let _address_slot = address_slot;
            connection(stream, head_timeout, handler, shed, shutdown).await;
        });
    }
    drop(listener);
    conns.close();
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, conns.wait()).await;
}

/// Serves one connection until it ends, is shed while idle, or shutdown drains it.
async fn connection<H, F>(
    stream: TcpStream,
    head_timeout: Duration,
    handler: H,
    shed: Arc<Notify>,
    shutdown: CancellationToken,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = HttpResponse> + Send + 'static,
{
    let first = Arc::new(FirstRequest::default());
    let activity = Arc::new(Activity::new());
    let seen = first.clone();
    let busy = activity.clone();
    let service = hyper::service::service_fn(move |req| {
        seen.arrived();
        let handler = handler.clone();
        let busy = busy.clone();
        async move {
            let in_request = busy.begin();
            let mut response = handler(req).await;
            if let super::Body::Sse(stream) = response.body_mut() {
                // A streaming answer is still the request: busy until the stream ends.
                stream.hold(in_request);
            }
            Ok::<_, Infallible>(response)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(head_timeout)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r { tracing::debug!(error = %e, "connection ended with error"); }
                return;
            }
            _ = shed.notified() => {
                if activity.idle_for(overload::SHED_MIN_IDLE) {
                    metrics::counter!("mcpq_connections_shed_total").increment(1);
                    return;
                }
            }
            _ = shutdown.cancelled() => {
                // A connection accepted just before the stop has not sent its request yet,
                // or it is not parsed yet: closing it now would fail a request a restart
                // under socket activation must not lose. Let its first request in
                // (briefly), then drain.
                if !first.has_arrived() {
                    tokio::select! {
                        r = conn.as_mut() => {
                            if let Err(e) = r { tracing::debug!(error = %e, "connection ended with error"); }
                            return;
                        }
                        _ = first.notify.notified() => {}
                        _ = tokio::time::sleep(FIRST_REQUEST_GRACE) => {}
                    }
                }
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
                return;
            }
        }
    }
}
