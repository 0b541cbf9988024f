//! Reading a request body within a size cap and a time limit, and lingering on a refused
//! one so the client can read its 413.
//!
//! It must not interpret the bytes: the transport that asked for them does.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::envelope::CallError;

/// Most bytes read and dropped after a body is refused as too large, before the connection
/// closes anyway.
const LINGER_BYTES: usize = 64 << 20;

/// Reads a body of at most `max` bytes within `timeout`. A larger one is read on (and
/// dropped, up to [`LINGER_BYTES`]) so the client can read the 413.
pub async fn read_body(body: Incoming, max: usize, timeout: Duration) -> Result<Bytes, CallError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut body = body;
    let mut buf = bytes::BytesMut::new();
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(CallError::RequestTimeout),
            Ok(None) => return Ok(buf.freeze()),
            Ok(Some(Err(e))) => {
                return Err(CallError::MalformedJson(format!(
                    "could not read the request body: {e}"
                )))
            }
            Ok(Some(Ok(f))) => f,
        };
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > max {
                linger_until(body, deadline, LINGER_BYTES.saturating_sub(buf.len())).await;
                return Err(CallError::BodyTooLarge(max));
            }
            buf.extend_from_slice(&data);
        }
    }
}

pub async fn linger(body: Incoming, timeout: Duration) {
    linger_until(body, tokio::time::Instant::now() + timeout, LINGER_BYTES).await
}

async fn linger_until(mut body: Incoming, deadline: tokio::time::Instant, mut budget: usize) {
    while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline, body.frame()).await {
        if let Ok(data) = frame.into_data() {
            budget = budget.saturating_sub(data.len());
            if budget == 0 {
                return;
            }
        }
    }
}
