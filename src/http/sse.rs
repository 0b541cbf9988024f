//! A response body fed event by event from a task (server-sent events), and the one way a
//! JSON-RPC message becomes an event.
//!
//! It must not decide what is sent: the transport feeding the channel does.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame};
use tokio::sync::mpsc;

use super::overload::InRequest;

/// A response body fed event by event from a task (server-sent events). Ends when the
/// sender is dropped; if the client goes away, the sender sees a closed channel.
pub struct SseBody {
    rx: mpsc::Receiver<Bytes>,
    /// Keeps the connection counted as busy while the stream runs, so idle-connection
    /// shedding never cuts a live stream.
    busy: Option<InRequest>,
}

impl SseBody {
    pub fn channel() -> (mpsc::Sender<Bytes>, SseBody) {
        let (tx, rx) = mpsc::channel(16);
        (tx, SseBody { rx, busy: None })
    }

    /// Marks the connection busy until this body is dropped (the stream ended or the
    /// client left).
    pub fn hold(&mut self, busy: InRequest) {
        self.busy = Some(busy);
    }
}

impl Body for SseBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

/// One SSE event carrying a JSON-RPC message.
pub fn sse_event(message: &serde_json::Value) -> Bytes {
    Bytes::from(format!("event: message\ndata: {message}\n\n"))
}
