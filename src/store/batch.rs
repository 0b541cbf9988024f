//! The batching plumbing both drivers share: the receive loop behind every group commit and
//! group read ([`take_batch`]), and group reads of `get_job` ([`Lookup`]: queued by
//! [`lookup`], answered in groups by [`answer_lookups`] from whatever one statement found).
//!
//! It must not know a database: each driver's `writer.rs` and `reader.rs` run the statements.

use std::collections::HashMap;

use tokio::sync::{mpsc, oneshot};

use super::{JobRecord, StoreError};
use crate::envelope::ClientId;
use crate::jobs::JobId;

/// The most lookups one group read answers.
pub(crate) const MAX_READ_BATCH: usize = 512;

/// Waits for one item on a queue several tasks share, then takes whatever else is waiting,
/// up to `max` in all: the batch behind every group commit and group read. While one task
/// holds the receiver the others are busy with their batches, so each batch forms while
/// the previous ones run. False once every sender is gone.
pub(crate) async fn take_batch<T>(
    rx: &tokio::sync::Mutex<mpsc::Receiver<T>>,
    into: &mut Vec<T>,
    max: usize,
) -> bool {
    let mut rx = rx.lock().await;
    match rx.recv().await {
        Some(item) => into.push(item),
        None => return false,
    }
    while into.len() < max {
        match rx.try_recv() {
            Ok(item) => into.push(item),
            Err(_) => break,
        }
    }
    true
}

/// One `get_job` waiting for the next group read.
pub(crate) struct Lookup {
    pub(crate) id: JobId,
    client: ClientId,
    reply: oneshot::Sender<Result<Option<JobRecord>, StoreError>>,
}

/// Queues a client's lookup for the group readers and waits for its answer.
pub(crate) async fn lookup(
    readers: &mpsc::Sender<Lookup>,
    client: &ClientId,
    id: &JobId,
) -> Result<Option<JobRecord>, StoreError> {
    let (reply, answer) = oneshot::channel();
    let lookup = Lookup {
        id: id.clone(),
        client: client.clone(),
        reply,
    };
    readers.send(lookup).await.map_err(|_| StoreError::Closed)?;
    answer.await.map_err(|_| StoreError::Closed)?
}

/// Answers (and empties) a group of lookups from the records its statement `found`, keyed
/// by id: another client's job is `None`, exactly as a missing one. When the statement
/// failed, every caller of the group gets [`StoreError::Read`] with its message.
pub(crate) fn answer_lookups(
    batch: &mut Vec<Lookup>,
    found: Result<&HashMap<String, JobRecord>, &str>,
) {
    for l in batch.drain(..) {
        let answer = match found {
            Ok(found) => Ok(found
                .get(&l.id.0)
                .filter(|rec| rec.client_id == l.client)
                .cloned()),
            Err(e) => Err(StoreError::Read(e.to_string())),
        };
        let _ = l.reply.send(answer);
    }
}
