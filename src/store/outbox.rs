//! The webhook outbox's records (docs/WEBHOOKS.md): an event leased to a deliverer, what a
//! delivery attempt reports, and a job's deliveries as `mcpq jobs show` lists them.
//!
//! Both drivers write the outbox in the transaction of the state change: SQLite from each
//! statement that moves a job into an event state (`webhook_events.sql`; a row trigger on
//! `jobs` would cost every completion ~11% there, measured), PostgreSQL by a trigger on
//! `jobs` whose WHEN it checks before queuing anything (migration `0008_webhooks.sql`).
//! It must not deliver, sign or decide a retry schedule (`crate::webhooks` does).

use crate::envelope::ClientId;
use crate::jobs::JobId;

/// One event to deliver, as the job was at the event, leased to one deliverer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    /// The row's sequence number: with the job id it makes the stable `webhook-id`.
    pub seq: i64,
    pub job_id: JobId,
    pub client_id: ClientId,
    pub url: String,
    /// The state the job entered: `succeeded`, `failed`, `cancelled` or `input_required`.
    pub state: String,
    pub tool: String,
    pub attempt: u32,
    /// The job's result (JSON text) when it succeeded.
    pub result: Option<String>,
    /// The last error when it failed or was cancelled.
    pub error: Option<String>,
    /// The outstanding input requests (a JSON object) when it asks for input.
    pub input_requests: Option<String>,
    /// When the job entered the state (ms).
    pub at: i64,
    /// Delivery attempts made before this one.
    pub attempts: u32,
}

impl OutboxEvent {
    /// The Standard Webhooks `webhook-id`: the same on every retry of the event, unique
    /// across events (a receiver deduplicates on it).
    pub fn webhook_id(&self) -> String {
        format!("msg_{}_{}", self.job_id.0, self.seq)
    }
}

/// What became of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryFate {
    /// A 2xx answer: done.
    Delivered,
    /// Failed; try again at this instant (ms).
    Retry { next_at: i64 },
    /// Failed, and it was the last attempt allowed: done, undelivered.
    GaveUp,
}

/// A delivery attempt's report, applied only while the reporter still holds the row's lease.
#[derive(Debug, Clone)]
pub struct DeliveryReport {
    pub seq: i64,
    pub fate: DeliveryFate,
    /// The receiver's HTTP status, if one answered.
    pub status: Option<u16>,
    /// Why the attempt failed (`None` when delivered).
    pub error: Option<String>,
}

/// One event of a job and how its delivery went (`mcpq jobs show`, the console).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WebhookDelivery {
    pub webhook_id: String,
    pub url: String,
    /// The state that fired it.
    pub event: String,
    pub attempts: u32,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub last_at: Option<i64>,
    /// `pending`, `delivered` or `failed` (given up).
    pub status: &'static str,
    /// When the next attempt is due, while pending.
    pub next_at: Option<i64>,
}

impl WebhookDelivery {
    /// The delivery status of a row: done and delivered, done and given up, or pending.
    pub fn status_of(done: bool, delivered: bool) -> &'static str {
        match (done, delivered) {
            (true, true) => "delivered",
            (true, false) => "failed",
            _ => "pending",
        }
    }
}
