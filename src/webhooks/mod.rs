//! Completion webhooks delivered (docs/WEBHOOKS.md): the loop every worker process and
//! `mcpq serve` run beside their job loops when some client has `[clients.ID.webhooks]`.
//! It leases due outbox events (`Store::claim_webhooks`), POSTs each to its callback URL
//! signed the Standard Webhooks way ([`sign`]), and reports the outcome: delivered on a
//! 2xx answer; otherwise retried with exponential back-off until `webhooks.max_attempts`,
//! then given up. Delivery is at least once: a deliverer killed mid-send leaves its lease
//! to run out and the event is sent again, with the same `webhook-id`.
//!
//! Sending: the same HTTP client crate and rules as HTTP tools (`tools::runner::http`):
//! redirects are never followed (a 3xx is a failed attempt), proxies from the environment
//! are ignored, one timeout bounds the whole exchange, the answer's body is never read; and
//! only public addresses unless allowed ([`guard`]).
//!
//! It must not decide job transitions or write anything but delivery reports; the outbox is
//! filled by the store, with the state change.

pub mod guard;
pub mod sign;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::webhooks::{Delivery, WebhookSettings};
use crate::config::ConfigError;
use crate::store::outbox::{DeliveryFate, DeliveryReport, OutboxEvent};
use crate::store::{Store, StoreError};
use crate::telemetry::names::{WEBHOOK_BACKLOG, WEBHOOK_DELIVERIES};

/// How often the backlog gauge is refreshed.
const BACKLOG_EVERY: Duration = Duration::from_secs(5);

/// The wait before attempt `failed + 1` after `failed` failed attempts: the initial wait,
/// doubled after each further failure, at most the maximum.
pub fn backoff_ms(d: &Delivery, failed: u32) -> i64 {
    let doublings = failed.saturating_sub(1).min(62);
    d.backoff_initial_ms
        .saturating_mul(1i64 << doublings)
        .min(d.backoff_max_ms)
}

/// One process's deliverer.
pub struct Deliverer {
    store: Arc<dyn Store>,
    hooks: WebhookSettings,
    /// Recorded as the lease owner of the events in flight.
    owner: String,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
}

impl Deliverer {
    /// A deliverer for `settings`, or `None` when no client has webhooks configured (then
    /// nothing runs and nothing polls).
    pub fn new(
        settings: &WebhookSettings,
        store: Arc<dyn Store>,
        owner: String,
        clock: Arc<dyn Clock>,
    ) -> Result<Option<Deliverer>, ConfigError> {
        if settings.clients.values().all(|h| h.allow.is_empty()) {
            return Ok(None);
        }
        let d = &settings.delivery;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(d.timeout)
            .connect_timeout(d.timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!("mcpq/", env!("CARGO_PKG_VERSION"), " webhooks"))
            .dns_resolver(Arc::new(guard::GuardedResolver {
                allow_private: d.allow_private,
            }))
            .build()
            .map_err(|e| ConfigError::Invalid(format!("webhooks: HTTP client: {e}")))?;
        Ok(Some(Deliverer {
            store,
            hooks: settings.clone(),
            owner,
            http,
            clock,
        }))
    }

    /// Delivers due events until `stop` fires (a round in flight is finished first).
    pub async fn run(self, stop: CancellationToken) {
        let mut last_backlog: Option<tokio::time::Instant> = None;
        loop {
            let sent = match self.deliver_due().await {
                Ok(n) => n,
                Err(e) => {
                    self.store.status().fault("webhook delivery", &e);
                    0
                }
            };
            if last_backlog.is_none_or(|t| t.elapsed() >= BACKLOG_EVERY) {
                last_backlog = Some(tokio::time::Instant::now());
                if let Ok(n) = self.store.webhook_backlog().await {
                    metrics::gauge!(WEBHOOK_BACKLOG).set(n as f64);
                }
            }
            if sent > 0 && !stop.is_cancelled() {
                continue;
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(self.hooks.delivery.poll) => {}
            }
        }
    }

    /// One round: leases due events (up to `webhooks.concurrency`), sends them at once,
    /// reports the outcomes. Returns how many were sent.
    pub async fn deliver_due(&self) -> Result<usize, StoreError> {
        let d = &self.hooks.delivery;
        let lease_ms = (d.timeout.as_millis() as i64).saturating_mul(2) + 5000;
        let now = self.clock.now_ms();
        let events = self
            .store
            .claim_webhooks(&self.owner, now, lease_ms, d.concurrency)
            .await?;
        if events.is_empty() {
            return Ok(0);
        }
        let sends = events.iter().map(|e| self.deliver(e));
        let reports = futures_util::future::join_all(sends).await;
        let n = reports.len();
        self.store
            .report_webhooks(&self.owner, reports, self.clock.now_ms())
            .await?;
        Ok(n)
    }

    /// Sends one event and decides what becomes of it.
    async fn deliver(&self, e: &OutboxEvent) -> DeliveryReport {
        let d = &self.hooks.delivery;
        let (status, outcome) = self.send(e).await;
        let failed = e.attempts + 1;
        let (fate, label) = match &outcome {
            Ok(()) => (DeliveryFate::Delivered, "ok"),
            Err(_) if failed >= d.max_attempts => (DeliveryFate::GaveUp, "failed"),
            Err(_) => {
                let next_at = self.clock.now_ms() + backoff_ms(d, failed);
                (DeliveryFate::Retry { next_at }, "retrying")
            }
        };
        metrics::counter!(WEBHOOK_DELIVERIES, "outcome" => label).increment(1);
        if let Err(why) = &outcome {
            tracing::warn!(
                job_id = %e.job_id.0,
                webhook_id = %e.webhook_id(),
                attempt = failed,
                outcome = label,
                error = %why,
                "webhook delivery failed"
            );
        }
        DeliveryReport {
            seq: e.seq,
            fate,
            status,
            error: outcome.err(),
        }
    }

    /// POSTs the event: the receiver's status if one answered, and whether it was a 2xx.
    async fn send(&self, e: &OutboxEvent) -> (Option<u16>, Result<(), String>) {
        let keys = self.hooks.keys(&e.client_id.0);
        if keys.is_empty() {
            return (
                None,
                Err(format!(
                    "no signing secret for client {:?} ([clients.ID.webhooks] secret)",
                    e.client_id.0
                )),
            );
        }
        let url = match reqwest::Url::parse(&e.url) {
            Ok(u) => u,
            Err(err) => return (None, Err(format!("bad URL: {err}"))),
        };
        if !self.hooks.delivery.allow_private {
            let literal = url
                .host_str()
                .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
                .and_then(|h| h.parse::<IpAddr>().ok());
            if let Some(ip) = literal.filter(|ip| !guard::is_public(*ip)) {
                return (None, Err(guard::refused(ip)));
            }
        }
        let id = e.webhook_id();
        let ts = self.clock.now_ms().div_euclid(1000);
        let body = sign::payload(e);
        let sig = sign::signature(keys, &id, ts, &body);
        let sent = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", sig)
            .body(body)
            .send()
            .await;
        match sent {
            Ok(resp) => {
                let status = resp.status();
                let code = Some(status.as_u16());
                if status.is_success() {
                    (code, Ok(()))
                } else if status.is_redirection() {
                    (
                        code,
                        Err(format!("HTTP {status} (redirects are not followed)")),
                    )
                } else {
                    (code, Err(format!("HTTP {status}")))
                }
            }
            Err(err) => (None, Err(error_chain(&err))),
        }
    }
}

/// An error and its causes on one line (the resolver's refusal is a cause).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}
