//! Maintenance, run once per process beside its workers (`mcpq worker`, and `mcpq serve`
//! whether or not it embeds workers): lease rescue (jobs whose worker vanished become
//! retries, failures or held jobs by their crash policy) and retention (finished jobs and
//! expired nonces pruned).
//!
//! It must not run jobs nor touch a job a live worker holds: rescue only takes leases that
//! expired, and writes fenced.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::retry_policy;
use super::run::outcome_label;
use crate::clock::Clock;
use crate::config::JobSettings;
use crate::jobs::{AfterWorkerLost, CrashPolicy, JobId, RetryPolicy};
use crate::otel::spans::JobTrace;
use crate::otel::TraceHeaders;
use crate::store::{Completion, ExpiredLease, Outcome, Store, StoreError};

/// Rescues jobs whose worker vanished, prunes finished jobs past retention and expired nonces.
///
/// `audit_retain_ms`: the audit trail's retention (`[audit] retention_secs`), for the daemon's
/// pass only (`None` in worker processes and with audit retention off).
pub async fn maintenance(
    store: Arc<dyn Store>,
    prune_hook: Arc<dyn Fn(i64) + Send + Sync>,
    jobs: JobSettings,
    audit_retain_ms: Option<i64>,
    clock: Arc<dyn Clock>,
    stop: CancellationToken,
) {
    let policy = retry_policy(&jobs);
    let mut tick = tokio::time::interval(Duration::from_millis(jobs.rescue_interval_ms.max(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let prune_every = Duration::from_millis(jobs.prune_interval_ms.max(10));
    let mut last_prune = tokio::time::Instant::now() - prune_every;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = rescue_once(store.as_ref(), policy, clock.now_ms()).await {
            store.status().fault("lease rescue", &e);
        }
        if jobs.input_wait_secs > 0 {
            expire_waiting(store.as_ref(), jobs.input_wait_secs, clock.now_ms()).await;
        }
        if last_prune.elapsed() >= prune_every {
            last_prune = tokio::time::Instant::now();
            let now = clock.now_ms();
            prune_hook(now);
            match store
                .prune(now - (jobs.retention_secs as i64) * 1000, now)
                .await
            {
                Ok(0) => {}
                Ok(n) => tracing::info!(jobs = n, "pruned finished jobs past retention"),
                Err(e) => {
                    store.status().fault("prune", &e);
                }
            }
            if let Some(keep) = audit_retain_ms {
                prune_audit(store.as_ref(), now - keep, now).await;
            }
        }
    }
}

/// The most audit records one retention pass deletes (the rest wait for the next pass).
const AUDIT_PRUNE_LIMIT: i64 = 50_000;

/// Deletes audit records written before `before`, keeping the chain verifiable
/// (docs/AUDIT.md).
async fn prune_audit(store: &dyn Store, before: i64, now: i64) {
    match store.prune_audit(before, AUDIT_PRUNE_LIMIT, now).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(records = n, "pruned audit records past retention"),
        Err(e) => {
            store.status().fault("audit prune", &e);
        }
    }
}

/// Jobs that waited for their client's input longer than `wait_secs` fail with a reason
/// that says so: a client that never answers must not hold a place in its queue forever.
async fn expire_waiting(store: &dyn Store, wait_secs: u64, now: i64) {
    let since = now.saturating_sub((wait_secs as i64).saturating_mul(1000));
    let reason = format!("input_expired: no answer to its input requests within {wait_secs} s");
    match store.expire_waiting(since, now, &reason).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(jobs = n, "jobs waiting for input expired"),
        Err(e) => {
            store.status().fault("input expiry", &e);
        }
    }
}

/// One rescue pass: expired leases become retries (the attempt counts) or failures.
pub async fn rescue_once(
    store: &dyn Store,
    policy: RetryPolicy,
    now: i64,
) -> Result<usize, StoreError> {
    let expired = store.expired_leases(now, 1000).await?;
    if expired.is_empty() {
        return Ok(0);
    }
    // Read before the rescue clears the leases: which of these jobs are traced.
    let traced = if crate::otel::enabled() {
        let ids: Vec<JobId> = expired.iter().map(|e| e.id.clone()).collect();
        let attempts: HashMap<JobId, u32> =
            expired.iter().map(|e| (e.id.clone(), e.attempt)).collect();
        match store.traced_jobs(&ids).await {
            Ok(t) => t
                .into_iter()
                .filter_map(|t| attempts.get(&t.id).map(|a| (t, *a)))
                .collect(),
            Err(e) => {
                tracing::debug!(error = %e, "trace contexts of rescued jobs");
                Vec::new()
            }
        }
    } else {
        Vec::new()
    };
    let decisions: Vec<Completion> = expired
        .into_iter()
        .map(|e| rescue(e, &policy, now))
        .collect();
    let kinds: HashMap<JobId, &'static str> = decisions
        .iter()
        .map(|d| (d.id.clone(), outcome_label(&d.outcome)))
        .collect();
    let applied = store.rescue(decisions, now).await?;
    for id in &applied {
        let what = kinds.get(id).copied().unwrap_or("retry");
        metrics::counter!(crate::telemetry::names::RESCUES, "outcome" => what).increment(1);
    }
    if !applied.is_empty() {
        tracing::info!(jobs = applied.len(), "rescued jobs with expired leases");
    }
    for (t, attempt) in traced {
        let Some(context) = TraceHeaders::from_stored(&t.context) else {
            continue;
        };
        if !applied.contains(&t.id) {
            continue;
        }
        let outcome = kinds.get(&t.id).copied().unwrap_or("retry");
        let job = JobTrace {
            context: &context,
            job_id: &t.id.0,
            tool: &t.tool,
        };
        job.rescued(attempt, t.lease_expires_at.unwrap_or(now), now, outcome);
    }
    Ok(applied.len())
}

/// What becomes of one job whose lease expired, by its tool's crash policy.
fn rescue(e: ExpiredLease, policy: &RetryPolicy, now: i64) -> Completion {
    let lost = "the worker stopped heartbeating (crashed or partitioned)";
    let outcome =
        match e
            .on_crash
            .after_worker_lost(policy, e.attempt, e.max_attempts, now, rand::random())
        {
            AfterWorkerLost::RetryAt(run_at) => Outcome::Retry {
                run_at,
                error: format!("lease_expired: {lost}"),
            },
            AfterWorkerLost::Fail if e.on_crash == CrashPolicy::Retry => Outcome::Failed {
                error: format!("lease_expired: {lost}"),
            },
            AfterWorkerLost::Fail => Outcome::Failed {
                error: format!(
                    "worker_lost: {lost}; the tool must not run twice (on_worker_crash = \"fail\")"
                ),
            },
            AfterWorkerLost::Hold => Outcome::InDoubt {
                error: format!(
                    "worker_lost: {lost}; held for an operator (on_worker_crash = \"hold\")"
                ),
            },
        };
    Completion {
        id: e.id,
        fence: e.fence,
        outcome,
        // The lease does not say whether the job has a webhook.
        hooked: true,
    }
}
