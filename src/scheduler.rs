//! Recurring jobs (`[schedules.NAME]`, docs/FLOW.md): the loop every daemon runs that turns
//! each schedule's due ticks into jobs.
//!
//! There is no leader. Every daemon enqueues every due tick as a job whose idempotency key
//! is `schedule:NAME:TICK_MS` under the schedule's client, so the jobs' unique index keeps
//! exactly one job per tick however many daemons race for it; then it records the tick
//! (`schedule_ticks`, which only moves forward) so a restart resumes there and the missed
//! policy knows which ticks fell due while nothing ran. Enqueue first, record second: a
//! daemon killed between the two leaves a tick another pass re-enqueues harmlessly.
//!
//! It must not decide which ticks are due (`config::schedules` does) nor touch the request
//! or claim paths: it wakes once a second and reads the store only when a tick fell due.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::app::{App, JobCall};
use crate::config::schedules::ScheduleDef;
use crate::envelope::{CallError, ClientId};
use crate::json::Json;
use crate::store::Enqueued;

/// How often the loop looks: ticks are at most one second late.
pub const PASS_MS: i64 = 1000;

/// The idempotency key of a schedule's tick (one job per key and client).
pub fn tick_key(schedule: &str, tick_ms: i64) -> String {
    format!("schedule:{schedule}:{tick_ms}")
}

/// One daemon's scheduler: what it needs between passes is when its last successful pass
/// over each schedule was (ticks after that are on time, older ones were missed).
pub struct Scheduler {
    app: Arc<App>,
    schedules: Vec<ScheduleDef>,
    passed: HashMap<String, i64>,
}

impl Scheduler {
    pub fn new(app: Arc<App>, schedules: Vec<ScheduleDef>) -> Scheduler {
        Scheduler {
            app,
            schedules,
            passed: HashMap::new(),
        }
    }

    /// Runs passes until `stop` fires (returns at once without schedules).
    pub async fn run(mut self, stop: CancellationToken) {
        if self.schedules.is_empty() {
            return;
        }
        loop {
            self.pass().await;
            // Just after the next second starts, when second-resolution ticks fall due.
            let now = self.app.now_ms();
            let wait = PASS_MS - now.rem_euclid(PASS_MS) + 5;
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(wait as u64)) => {}
            }
        }
    }

    /// One pass at the clock's now: every schedule with a tick due since its last recorded
    /// one gets its jobs. Returns how many jobs this pass created (not found existing).
    pub async fn pass(&mut self) -> usize {
        let now = self.app.now_ms();
        let first_look = now - PASS_MS;
        let any_due = self.schedules.iter().any(|s| {
            let since = self.passed.get(&s.name).copied().unwrap_or(first_look);
            s.next_after(since).is_some_and(|t| t <= now)
        });
        if !any_due {
            return 0;
        }
        let recorded: HashMap<String, i64> = match self.app.store().schedule_ticks().await {
            Ok(rows) => rows.into_iter().collect(),
            Err(e) => {
                // Once, then counted per window: passes run every second through an outage.
                crate::logging::repeats::fault(
                    "schedules: cannot read the last ticks (next pass retries)",
                    &e,
                );
                return 0;
            }
        };
        let mut created = 0;
        for s in &self.schedules {
            // A schedule never ticked starts now: a new cron line does not catch up.
            let last = recorded.get(&s.name).copied().unwrap_or(first_look);
            let on_time_after = self.passed.get(&s.name).copied().unwrap_or(first_look);
            let due = s.due(last, on_time_after, now);
            match enqueue_ticks(&self.app, s, &due, now).await {
                Ok(n) => {
                    created += n;
                    self.passed.insert(s.name.clone(), now);
                }
                // Once, then counted per window: a tool not listed yet (an upstream down) or
                // a store outage fails every pass, a second apart.
                Err(e) => crate::logging::repeats::fault(
                    "schedules: tick not enqueued (next pass retries)",
                    &format!("{}: {e}", s.name),
                ),
            }
        }
        created
    }
}

/// Enqueues `due` (oldest first), then records the newest; stops at the first failure
/// that the next pass may cure (the store), records nothing then.
async fn enqueue_ticks(
    app: &App,
    s: &ScheduleDef,
    due: &[i64],
    now: i64,
) -> Result<usize, CallError> {
    let Some(&newest) = due.last() else {
        return Ok(0);
    };
    let tools = app.tools();
    let Some(tool) = tools.job_tool(&s.tool) else {
        return Err(CallError::UnknownTool(s.tool.clone()));
    };
    let Json::Object(args) = Json::from_serde(&s.arguments) else {
        return Err(CallError::InvalidArgs("arguments must be an object".into()));
    };
    let client = ClientId(s.client.clone());
    let mut created = 0;
    for &tick in due {
        let call = JobCall {
            key: Some(tick_key(&s.name, tick)),
            ..JobCall::default()
        };
        match app.enqueue(tool, &client, &args, now, call).await {
            Ok(Enqueued::Created(id)) => {
                created += 1;
                metrics::counter!(crate::telemetry::names::SCHEDULE_JOBS, "schedule" => s.name.clone())
                    .increment(1);
                tracing::info!(schedule = %s.name, tick_ms = tick, job_id = %id.0, "schedules: tick enqueued");
            }
            Ok(Enqueued::Existing(_)) => {}
            // The client's queue is full: this tick is dropped (and said so), later ones
            // still run; retrying it would only pile up behind the same cap.
            Err(CallError::QueueFull(..)) => {
                tracing::warn!(schedule = %s.name, tick_ms = tick, "schedules: the client's queue is full; tick dropped")
            }
            Err(e) => return Err(e),
        }
    }
    app.store()
        .record_tick(&s.name, newest)
        .await
        .map_err(|e| app.store_error("record tick", e))?;
    Ok(created)
}
