//! Keep-alive HTTP/1.1 connections to one upstream for [`super::direct`]'s calls, each
//! driven by the call that holds it.
//!
//! Why not hyper-util's pooled client: it runs every connection as a task of its own, so
//! each call hands its request to that task and its answer back across tasks (and often
//! threads: two wake-ups a call). Here the call's own task polls the connection while it
//! sends and reads, and gives the connection back to the idle list when the answer is
//! read (BENCHMARKS.md, session 22).
//!
//! It owns connecting, reuse and retiring connections, and the one retry a request may
//! get: on a fresh connection, and only when hyper says the request was never written
//! (an idle connection the upstream had closed). It must not read what an answer means.

use std::future::{poll_fn, Future};
use std::sync::Mutex;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::{http1, TrySendError};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// How long a connection may sit idle before it is closed rather than reused (hyper-util's
/// default too): servers close theirs after a while, and a socket closed on the far side
/// should not linger here.
const IDLE: Duration = Duration::from_secs(90);

/// A connection idle for longer is looked at before it is used again ([`Conn::is_closed`]).
/// Under load connections come back within microseconds and the look (a syscall) would be
/// a tenth of a call's own syscalls; a close in the last few milliseconds is the race every
/// keep-alive client has.
const LOOK_AFTER: Duration = Duration::from_millis(10);

/// Idle connections kept at most; a burst wider than this opens and closes the rest.
const MAX_IDLE: usize = 256;

type Io = TokioIo<TcpStream>;

/// One connection: the handle requests go through, the connection state machine that
/// must be polled for them to move (gone once the connection ended), and a second handle
/// on its socket to look at it while it is idle. Kept boxed: it moves between the idle
/// list and calls, and inline it is most of a call's future.
struct Conn {
    send: http1::SendRequest<Full<Bytes>>,
    conn: Option<http1::Connection<Io, Full<Bytes>>>,
    socket: std::net::TcpStream,
}

impl Conn {
    /// Whether the upstream closed it (or sent something unasked) while it was idle. The
    /// kernel's view, not the runtime's: nothing polls an idle connection, so the runtime
    /// may not have seen the close yet, and a request written into a closed connection
    /// cannot be retried (it may have been read).
    fn is_closed(&self) -> bool {
        match self.socket.peek(&mut [0u8; 1]) {
            Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
            Ok(_) => true,
        }
    }
}

/// Polls the connection until it ends (never, once it is gone).
async fn drive(conn: &mut Option<http1::Connection<Io, Full<Bytes>>>) -> hyper::Result<()> {
    poll_fn(|cx| match conn.as_mut() {
        Some(c) => c.poll_without_shutdown(cx),
        None => Poll::Pending,
    })
    .await
}

/// Why a request got no answer.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be made: nothing was sent.
    Connect(String),
    /// The connection failed or closed with the request sent, or maybe sent.
    Lost(String),
}

/// How the first half of an exchange (the request handed to the connection, its response
/// head read) failed.
enum Failed {
    /// The connection could not take a request; `req` is back.
    NotReady(hyper::Error, Request),
    /// hyper's error, with the request if it was never written.
    Send(TrySendError<Request>),
    /// The connection ended first.
    Ended(hyper::Result<()>),
}

type Request = hyper::Request<Full<Bytes>>;

/// The connections to one `host:port`.
pub struct Connections {
    authority: String,
    connect_timeout: Duration,
    look_after: Duration,
    idle: Mutex<Vec<(Box<Conn>, Instant)>>,
}

impl Connections {
    pub fn new(authority: String, connect_timeout: Duration) -> Self {
        Self {
            authority,
            connect_timeout,
            look_after: LOOK_AFTER,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Sends `req` and runs `read` on its response while the connection moves; `read`'s
    /// output once it has read what it needs. The connection goes back to the idle list
    /// when `read` finished and the connection can take another request.
    pub async fn exchange<T, F, Fut>(&self, req: Request, read: F) -> Result<T, SendError>
    where
        F: FnOnce(hyper::Response<hyper::body::Incoming>) -> Fut,
        Fut: Future<Output = T>,
    {
        let mut req = req;
        let mut fresh = false;
        loop {
            let mut c = match self.checkout() {
                Some(c) => c,
                None => {
                    fresh = true;
                    Box::pin(self.connect()).await?
                }
            };
            let Conn { send, conn, .. } = &mut *c;
            let outcome = {
                let sent = async {
                    match poll_fn(|cx| send.poll_ready(cx)).await {
                        Ok(()) => send.try_send_request(req).await.map_err(Failed::Send),
                        Err(e) => Err(Failed::NotReady(e, req)),
                    }
                };
                tokio::pin!(sent);
                let ended = tokio::select! {
                    biased;
                    r = &mut sent => Err(r),
                    r = drive(conn) => Ok(r),
                };
                match ended {
                    Err(r) => r,
                    Ok(r) => {
                        // The connection ended first: dropping it settles the request
                        // (answered, or handed back if it was never written).
                        *conn = None;
                        match sent.await {
                            Ok(resp) => Ok(resp),
                            Err(Failed::Send(e)) if e.message().is_some() => Err(Failed::Send(e)),
                            Err(_) => Err(Failed::Ended(r)),
                        }
                    }
                }
            };
            let resp = match outcome {
                Ok(resp) => resp,
                // Never written (an idle connection the upstream had closed): one more
                // try, on a new connection, which gets no further try.
                Err(Failed::Send(mut e)) => match e.take_message() {
                    Some(back) if !fresh => {
                        req = back;
                        fresh = true;
                        continue;
                    }
                    _ => return Err(SendError::Lost(e.into_error().to_string())),
                },
                Err(Failed::NotReady(_, back)) if !fresh => {
                    req = back;
                    fresh = true;
                    continue;
                }
                Err(Failed::NotReady(e, _)) | Err(Failed::Ended(Err(e))) => {
                    return Err(SendError::Lost(e.to_string()))
                }
                Err(Failed::Ended(Ok(()))) => {
                    return Err(SendError::Lost(
                        "the connection closed before the request was answered".into(),
                    ))
                }
            };
            let read = read(resp);
            tokio::pin!(read);
            let out = tokio::select! {
                biased;
                out = &mut read => out,
                _ = drive(conn) => {
                    // The connection ended: what it had read of the answer is in the
                    // body already, and the body ends where the connection did.
                    *conn = None;
                    read.await
                }
            };
            if c.conn.is_some() {
                self.checkin(c);
            }
            return Ok(out);
        }
    }

    fn checkout(&self) -> Option<Box<Conn>> {
        loop {
            let (c, at) = self.idle.lock().ok()?.pop()?;
            let idle = at.elapsed();
            if idle < IDLE && (idle < self.look_after || !c.is_closed()) {
                return Some(c);
            }
        }
    }

    /// Back to the idle list, if it can take another request once the end of the last
    /// answer has gone through it.
    fn checkin(&self, c: Box<Conn>) {
        if !c.send.is_ready() {
            return;
        }
        let Ok(mut idle) = self.idle.lock() else {
            return;
        };
        let now = Instant::now();
        idle.retain(|(_, at)| now.duration_since(*at) < IDLE);
        if idle.len() < MAX_IDLE {
            idle.push((c, now));
        }
    }

    async fn connect(&self) -> Result<Box<Conn>, SendError> {
        let stream = tokio::time::timeout(
            self.connect_timeout,
            TcpStream::connect(self.authority.as_str()),
        )
        .await
        .map_err(|_| {
            SendError::Connect(format!(
                "connect timed out after {:?}",
                self.connect_timeout
            ))
        })?
        .map_err(|e| SendError::Connect(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let failed = |e: std::io::Error| SendError::Connect(e.to_string());
        let std = stream.into_std().map_err(failed)?;
        let socket = std.try_clone().map_err(failed)?;
        let stream = TcpStream::from_std(std).map_err(failed)?;
        let (send, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| SendError::Connect(e.to_string()))?;
        Ok(Box::new(Conn {
            send,
            conn: Some(conn),
            socket,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A test server: answers each request on a connection with "ok"; after `close_after`
    /// answers on a connection it waits for `close` and closes that connection. Also the
    /// count of connections it accepted, and a message each time it closed one.
    struct Server {
        addr: String,
        accepted: Arc<AtomicUsize>,
        close: Arc<tokio::sync::Notify>,
        closed: tokio::sync::mpsc::UnboundedReceiver<()>,
    }

    async fn server(close_after: usize) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let close = Arc::new(tokio::sync::Notify::new());
        let (count, notify) = (accepted.clone(), close.clone());
        let (closed_tx, closed) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let (closed_tx, notify) = (closed_tx.clone(), notify.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    for _ in 0..close_after {
                        let mut got = Vec::new();
                        // One request: a head and the 2-byte body the tests send.
                        while !got.windows(4).any(|w| w == b"\r\n\r\n") || !got.ends_with(b"hi") {
                            match s.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => got.extend_from_slice(&buf[..n]),
                            }
                        }
                        let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if s.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                    notify.notified().await;
                    let _ = s.shutdown().await;
                    drop(s);
                    let _ = closed_tx.send(());
                });
            }
        });
        Server {
            addr,
            accepted,
            close,
            closed,
        }
    }

    async fn call(c: &Connections, addr: &str) -> Result<Bytes, SendError> {
        let req = hyper::Request::post("/")
            .header(hyper::header::HOST, addr)
            .body(Full::new(Bytes::from_static(b"hi")))
            .unwrap();
        c.exchange(req, |resp| async move {
            resp.into_body().collect().await.unwrap().to_bytes()
        })
        .await
    }

    #[tokio::test]
    async fn sequential_calls_share_one_kept_alive_connection() {
        let srv = server(usize::MAX).await;
        let c = Connections::new(srv.addr.clone(), Duration::from_secs(5));
        for _ in 0..5 {
            assert_eq!(call(&c, &srv.addr).await.unwrap(), "ok");
        }
        assert_eq!(srv.accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_connection_the_upstream_closed_while_idle_is_not_used_again() {
        let mut srv = server(1).await;
        let mut c = Connections::new(srv.addr.clone(), Duration::from_secs(5));
        // Looked at however short its idle time, as after LOOK_AFTER.
        c.look_after = Duration::ZERO;
        for _ in 0..3 {
            assert_eq!(call(&c, &srv.addr).await.unwrap(), "ok");
            // The server closes the connection now idle in the pool; the next call must
            // notice instead of writing its request into it.
            srv.close.notify_one();
            srv.closed.recv().await.unwrap();
        }
        assert_eq!(srv.accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn nothing_listening_is_a_connect_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let c = Connections::new(addr.clone(), Duration::from_secs(5));
        assert!(matches!(call(&c, &addr).await, Err(SendError::Connect(_))));
    }
}
