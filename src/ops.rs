//! The operator's commands: `mcpq jobs list|show|cancel|retry|fail|purge|pause|resume|paused`
//! and `mcpq stats`.
//!
//! They open the store directly (safe while the daemon and workers run: every change is one
//! write transaction, serialized with theirs), print tables for people (comfy-table) or
//! JSON for scripts (`--json`), and exit with documented codes ([`EXIT_NOT_FOUND`],
//! [`EXIT_WRONG_STATE`]). Every change is recorded in the job's history with who made it.
//!
//! It must not decide what a change does to a job: the store's SQL does.

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use serde_json::{json, Value};

use crate::config::schedules::ScheduleDef;
use crate::jobs::{JobId, JobState};
use crate::store::admin::{record_action, Action, AdminStore, Change, JobFilter, JobSummary};
use crate::store::outbox::WebhookDelivery;
use crate::store::{CancelOutcome, JobRecord, Store, StoreError};

/// No job with that id.
pub const EXIT_NOT_FOUND: u8 = 3;
/// The job is not in a state the command applies to (e.g. retrying a succeeded job).
pub const EXIT_WRONG_STATE: u8 = 4;

#[derive(Subcommand)]
pub enum JobsCommand {
    /// Jobs, newest first.
    List {
        /// queued | running | succeeded | failed | cancelled | in_doubt
        #[arg(long, value_parser = parse_state)]
        state: Option<JobState>,
        #[arg(long)]
        client: Option<String>,
        #[arg(long)]
        tool: Option<String>,
        /// Created within this long (e.g. 30m, 2h, 7d).
        #[arg(long, value_parser = parse_age)]
        since: Option<Duration>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[command(flatten)]
        out: Output,
    },
    /// One job: state, attempts, lease, definition, progress, and its whole history.
    Show {
        id: String,
        #[command(flatten)]
        out: Output,
    },
    /// Cancel a queued job, or ask the worker of a running one to stop it.
    Cancel {
        id: String,
        #[command(flatten)]
        out: Output,
    },
    /// Send a failed or in-doubt job back to the queue. Attempts are not reset (the history
    /// stays whole): the job gets --attempts more on top of those it used.
    Retry {
        id: String,
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
        attempts: u32,
        #[command(flatten)]
        out: Output,
    },
    /// Fail an in-doubt job for good.
    Fail {
        id: String,
        #[command(flatten)]
        out: Output,
    },
    /// Stop every worker on the store from starting TOOL's jobs: queued jobs stay queued
    /// (new calls are still accepted), running ones finish. Durable until `resume`.
    Pause {
        tool: String,
        #[command(flatten)]
        out: Output,
    },
    /// Let workers start TOOL's jobs again.
    Resume {
        tool: String,
        #[command(flatten)]
        out: Output,
    },
    /// The paused tools, since when and by whom.
    Paused {
        #[command(flatten)]
        out: Output,
    },
    /// Delete finished jobs older than the given age (e.g. 7d), whatever the retention.
    Purge {
        #[arg(long, value_parser = parse_age)]
        older_than: Duration,
        #[command(flatten)]
        out: Output,
    },
}

#[derive(Args, Clone, Copy)]
pub struct Output {
    /// JSON instead of a table.
    #[arg(long)]
    json: bool,
}

fn parse_state(s: &str) -> Result<JobState, String> {
    JobState::parse(s).ok_or_else(|| {
        format!("unknown state {s:?}: queued, running, succeeded, failed, cancelled or in_doubt")
    })
}

fn parse_age(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e} (e.g. 90s, 30m, 2h, 7d)"))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn ago(d: Duration) -> i64 {
    now_ms() - d.as_millis().min(i64::MAX as u128) as i64
}

fn time(ms: Option<i64>) -> String {
    match ms {
        Some(ms) if ms >= 0 => {
            humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms as u64))
                .to_string()
        }
        _ => "-".into(),
    }
}

/// Run as root on a database owned by the service user, takes that user's uid and gid
/// first: a file root creates beside the database (`-wal`, `-shm`, a backup's journal)
/// would otherwise lock the service out of its own database.
pub fn run_as_owner_of(db: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: plain syscalls on our own credentials.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(());
    }
    let dir = db.parent().filter(|p| !p.as_os_str().is_empty());
    let meta = match std::fs::metadata(db).or_else(|e| match dir {
        Some(d) => std::fs::metadata(d),
        None => Err(e),
    }) {
        Ok(m) => m,
        Err(_) => return Ok(()),
    };
    let (uid, gid) = (meta.uid(), meta.gid());
    if uid == 0 {
        return Ok(());
    }
    // SAFETY: as above; order matters (groups and gid while still root).
    unsafe {
        if libc::setgroups(0, std::ptr::null()) != 0
            || libc::setgid(gid) != 0
            || libc::setuid(uid) != 0
        {
            return Err(format!(
                "cannot switch to uid {uid} (the owner of {}): {}",
                db.display(),
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

/// Who made a change, for the job's history: the person behind `sudo` when there is one.
pub fn operator() -> String {
    let user = ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        // SAFETY: getuid cannot fail.
        .unwrap_or_else(|| format!("uid {}", unsafe { libc::getuid() }));
    format!("{user} (mcpq jobs)")
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED);
    t.set_header(header.to_vec());
    t
}

fn summary_json(j: &JobSummary) -> Value {
    json!({
        "id": j.id.0, "client_id": j.client_id, "tool": j.tool, "state": j.state.as_str(),
        "attempt": j.attempt, "max_attempts": j.max_attempts, "created_at": j.created_at,
        "started_at": j.started_at, "finished_at": j.finished_at,
        "lease_owner": j.lease_owner, "run_at": j.run_at,
    })
}

fn history(r: &JobRecord) -> Vec<Value> {
    match serde_json::from_str::<Value>(&r.errors) {
        Ok(Value::Array(v)) => v,
        _ => Vec::new(),
    }
}

fn parsed(text: &Option<String>) -> Value {
    text.as_deref()
        .map(|t| serde_json::from_str(t).unwrap_or_else(|_| Value::String(t.to_string())))
        .unwrap_or(Value::Null)
}

fn record_json(r: &JobRecord) -> Value {
    json!({
        "id": r.id.0, "client_id": r.client_id.0, "tool": r.tool, "definition": r.def,
        "on_worker_crash": r.on_crash.as_str(), "state": r.state.as_str(),
        "attempt": r.attempt, "max_attempts": r.max_attempts, "run_at": r.run_at,
        "lease_owner": r.lease_owner, "lease_expires_at": r.lease_expires_at,
        "fence": r.fence, "cancel_requested": r.cancel_requested,
        "progress": parsed(&r.progress), "result": parsed(&r.result),
        "input_requests": parsed(&r.input_requests),
        "idempotency_key": r.idempotency_key, "created_at": r.created_at,
        "started_at": r.started_at, "finished_at": r.finished_at,
        "args": parsed(&Some(r.args.clone())), "history": history(r),
    })
}

fn print_record(r: &JobRecord) {
    let mut t = table(&["field", "value"]);
    let rows: Vec<(&str, String)> = vec![
        ("id", r.id.0.clone()),
        ("client", r.client_id.0.clone()),
        ("tool", format!("{} (definition {})", r.tool, r.def)),
        ("on worker crash", r.on_crash.as_str().to_string()),
        ("state", r.state.as_str().to_string()),
        ("attempts", format!("{} of {}", r.attempt, r.max_attempts)),
        ("created", time(Some(r.created_at))),
        ("due", time(Some(r.run_at))),
        ("started", time(r.started_at)),
        ("finished", time(r.finished_at)),
        (
            "lease",
            match (&r.lease_owner, r.lease_expires_at) {
                (Some(o), Some(at)) => format!("{o} until {} (fence {})", time(Some(at)), r.fence),
                _ => "-".into(),
            },
        ),
        ("cancel requested", r.cancel_requested.to_string()),
        ("progress", r.progress.clone().unwrap_or_else(|| "-".into())),
        (
            "waiting for input",
            r.input_requests.clone().unwrap_or_else(|| "-".into()),
        ),
        (
            "idempotency key",
            r.idempotency_key.clone().unwrap_or_else(|| "-".into()),
        ),
    ];
    for (k, v) in rows {
        t.add_row(vec![k.to_string(), v]);
    }
    println!("{t}");
    let mut h = table(&["attempt", "at", "event"]);
    for e in history(r) {
        h.add_row(vec![
            e["attempt"].to_string(),
            time(e["at"].as_i64()),
            e["error"].as_str().unwrap_or_default().to_string(),
        ]);
    }
    println!("history:\n{h}");
}

/// A job's webhook events and their delivery (docs/WEBHOOKS.md), if it has any.
fn print_webhooks(hooks: &[WebhookDelivery]) {
    if hooks.is_empty() {
        return;
    }
    let mut t = table(&[
        "webhook id",
        "event",
        "delivery",
        "attempts",
        "last",
        "last error",
    ]);
    for h in hooks {
        let last = match (h.last_status, h.last_at) {
            (Some(s), at) => format!("HTTP {s} at {}", time(at)),
            (None, Some(at)) => format!("no answer at {}", time(Some(at))),
            (None, None) => "-".into(),
        };
        let delivery = match h.next_at {
            Some(at) if h.status == "pending" => format!("pending (next {})", time(Some(at))),
            _ => h.status.to_string(),
        };
        t.add_row(vec![
            h.webhook_id.clone(),
            h.event.clone(),
            delivery,
            h.attempts.to_string(),
            last,
            h.last_error.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    println!("webhooks ({}):\n{t}", hooks[0].url);
}

/// Prints `value` as JSON or `text`, and returns `code`.
fn report(out: Output, value: Value, text: &str, code: u8) -> ExitCode {
    if out.json {
        println!("{value}");
    } else if code == 0 {
        println!("{text}");
    } else {
        eprintln!("{text}");
    }
    ExitCode::from(code)
}

fn change_report(out: Output, id: &str, change: Change, done: &str) -> ExitCode {
    match change {
        Change::Done => report(
            out,
            json!({"id": id, "outcome": done}),
            &format!("{id}: {done}"),
            0,
        ),
        Change::WrongState(s) => report(
            out,
            json!({"id": id, "outcome": "wrong_state", "state": s.as_str()}),
            &format!("{id}: not changed: the job is {}", s.as_str()),
            EXIT_WRONG_STATE,
        ),
        Change::NotFound => not_found(out, id),
    }
}

fn not_found(out: Output, id: &str) -> ExitCode {
    report(
        out,
        json!({"id": id, "outcome": "not_found"}),
        &format!("{id}: no such job"),
        EXIT_NOT_FOUND,
    )
}

/// `mcpq jobs list`'s filter.
fn filter_of(
    state: Option<JobState>,
    client: Option<String>,
    tool: Option<String>,
    since: Option<Duration>,
    limit: usize,
) -> JobFilter {
    JobFilter {
        state,
        client,
        tool,
        since: since.map(ago).unwrap_or(i64::MIN),
        limit: limit.max(1),
    }
}

/// `mcpq jobs list`: a table, or a JSON array.
async fn list(
    store: &dyn AdminStore,
    filter: JobFilter,
    out: Output,
) -> Result<ExitCode, StoreError> {
    let jobs = store.list_jobs(&filter).await?;
    if out.json {
        println!("{}", Value::Array(jobs.iter().map(summary_json).collect()));
    } else {
        let mut t = table(&[
            "id", "client", "tool", "state", "attempts", "created", "finished", "worker",
        ]);
        for j in &jobs {
            t.add_row(vec![
                j.id.0.clone(),
                j.client_id.clone(),
                j.tool.clone(),
                j.state.as_str().to_string(),
                format!("{}/{}", j.attempt, j.max_attempts),
                time(Some(j.created_at)),
                time(j.finished_at),
                j.lease_owner.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        println!("{t}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn paused(store: &dyn AdminStore, out: Output) -> Result<ExitCode, StoreError> {
    let paused = store.paused_tools().await?;
    if out.json {
        let v: Vec<Value> = paused
            .iter()
            .map(|p| json!({"tool": p.tool, "paused_at": p.paused_at, "paused_by": p.paused_by}))
            .collect();
        println!("{}", Value::Array(v));
    } else {
        let mut t = table(&["tool", "paused at", "by"]);
        for p in &paused {
            t.add_row(vec![
                p.tool.clone(),
                time(Some(p.paused_at)),
                p.paused_by.clone(),
            ]);
        }
        println!("{t}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs one `mcpq jobs` command.
/// What an operator's change did, as an audit outcome.
fn change_outcome(c: &Change, done: &'static str) -> &'static str {
    match c {
        Change::Done => done,
        Change::WrongState(_) => "wrong_state",
        Change::NotFound => "not_found",
    }
}

/// `mcpq jobs …`. Every change is recorded in the audit trail when `audit` is on
/// (docs/AUDIT.md), after it is made ([`change`]).
pub async fn jobs(
    store: &dyn AdminStore,
    cmd: JobsCommand,
    audit: bool,
) -> Result<ExitCode, StoreError> {
    Ok(match cmd {
        JobsCommand::List {
            state,
            client,
            tool,
            since,
            limit,
            out,
        } => list(store, filter_of(state, client, tool, since, limit), out).await?,
        JobsCommand::Show { id, out } => match store.job(&JobId(id.clone())).await? {
            None => not_found(out, &id),
            Some(r) => {
                let hooks = store.webhook_deliveries(&r.id).await?;
                if out.json {
                    let mut v = record_json(&r);
                    v["webhooks"] = json!(hooks);
                    println!("{v}");
                } else {
                    print_record(&r);
                    print_webhooks(&hooks);
                }
                ExitCode::SUCCESS
            }
        },
        JobsCommand::Paused { out } => paused(store, out).await?,
        cmd => change(store, cmd, audit).await?,
    })
}

/// `mcpq jobs pause|resume TOOL`, recorded (`audit`: on, and by whom).
async fn pause(
    store: &dyn AdminStore,
    tool: &str,
    paused: bool,
    out: Output,
    (audit, by): (bool, &str),
) -> Result<ExitCode, StoreError> {
    let changed = store.set_paused(tool, paused, now_ms(), by).await?;
    let (verb, outcome, text) = match (paused, changed) {
        (true, true) => ("jobs.pause", "paused", "paused"),
        (true, false) => ("jobs.pause", "unchanged", "was already paused"),
        (false, true) => ("jobs.resume", "resumed", "resumed"),
        (false, false) => ("jobs.resume", "unchanged", "was not paused"),
    };
    let a = Action {
        by,
        verb,
        job: None,
        target: Some(tool.to_string()),
        outcome,
    };
    record_action(store, audit, now_ms(), a).await?;
    Ok(report(
        out,
        json!({"tool": tool, "paused": paused, "changed": changed}),
        &format!("{tool}: {text}"),
        0,
    ))
}

/// The commands of `mcpq jobs` that change something, each recorded.
async fn change(
    store: &dyn AdminStore,
    cmd: JobsCommand,
    audit: bool,
) -> Result<ExitCode, StoreError> {
    let by = operator();
    let record = |verb: &'static str, job: Option<String>, target: Option<String>, outcome| {
        let by = by.clone();
        async move {
            let a = Action {
                by: &by,
                verb,
                job: job.as_deref(),
                target,
                outcome,
            };
            record_action(store, audit, now_ms(), a).await
        }
    };
    Ok(match cmd {
        JobsCommand::Cancel { id, out } => {
            let c = store
                .admin_cancel(&JobId(id.clone()), now_ms(), &by)
                .await?;
            let outcome = match &c {
                CancelOutcome::Cancelled => "cancelled",
                CancelOutcome::Requested => "cancel_requested",
                CancelOutcome::AlreadyFinished(_) => "wrong_state",
                CancelOutcome::NotFound => "not_found",
            };
            record("jobs.cancel", Some(id.clone()), None, outcome).await?;
            match c {
                CancelOutcome::Cancelled => change_report(out, &id, Change::Done, "cancelled"),
                CancelOutcome::Requested => {
                    change_report(out, &id, Change::Done, "cancel_requested")
                }
                CancelOutcome::AlreadyFinished(s) => {
                    change_report(out, &id, Change::WrongState(s), "")
                }
                CancelOutcome::NotFound => not_found(out, &id),
            }
        }
        JobsCommand::Retry { id, attempts, out } => {
            let c = store
                .retry_job(&JobId(id.clone()), attempts, now_ms(), &by)
                .await?;
            let target = Some(format!("{attempts} more attempt(s)"));
            record(
                "jobs.retry",
                Some(id.clone()),
                target,
                change_outcome(&c, "queued"),
            )
            .await?;
            change_report(out, &id, c, "queued")
        }
        JobsCommand::Fail { id, out } => {
            let c = store.fail_job(&JobId(id.clone()), now_ms(), &by).await?;
            record(
                "jobs.fail",
                Some(id.clone()),
                None,
                change_outcome(&c, "failed"),
            )
            .await?;
            change_report(out, &id, c, "failed")
        }
        JobsCommand::Pause { tool, out } => pause(store, &tool, true, out, (audit, &by)).await?,
        JobsCommand::Resume { tool, out } => pause(store, &tool, false, out, (audit, &by)).await?,
        JobsCommand::Purge { older_than, out } => {
            let n = store.purge(ago(older_than)).await?;
            let age = humantime::format_duration(older_than).to_string();
            let target = Some(format!("finished before {age} ago: {n} deleted"));
            record("jobs.purge", None, target, "purged").await?;
            report(
                out,
                json!({"purged": n}),
                &format!("purged {n} finished job(s) older than {age}"),
                0,
            )
        }
        JobsCommand::List { .. } | JobsCommand::Show { .. } | JobsCommand::Paused { .. } => {
            ExitCode::SUCCESS
        }
    })
}

/// The daemon's view of its `[upstreams]`, read from its metrics endpoint (the database
/// does not hold it): each upstream's live sessions and published tools, or why it could
/// not be read. `None` when no upstream is configured.
pub async fn upstream_status(
    settings: &crate::config::Settings,
) -> Option<Result<Vec<Value>, String>> {
    if settings.upstreams.is_empty() {
        return None;
    }
    let Some(at) = settings.metrics.listen else {
        return Some(Err(
            "metrics.listen is off: the daemon's view of its upstreams is on its metrics endpoint"
                .into(),
        ));
    };
    let host = if at.ip().is_unspecified() {
        std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), at.port())
    } else {
        at
    };
    let body = async {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(3))
            .build()
            .map_err(|e| e.to_string())?;
        let r = client
            .get(format!("http://{host}/metrics"))
            .send()
            .await
            .map_err(|e| format!("the daemon's metrics at {host}: {e}"))?;
        r.text().await.map_err(|e| e.to_string())
    };
    Some(body.await.map(|text| {
        settings
            .upstreams
            .iter()
            .map(|u| {
                let gauge = |metric: &str| {
                    let key = format!("{metric}{{upstream=\"{}\"}} ", u.name);
                    text.lines()
                        .find_map(|l| l.strip_prefix(key.as_str()))
                        .and_then(|v| v.trim().parse::<f64>().ok())
                };
                json!({
                    "upstream": u.name,
                    "sessions_up": gauge(crate::telemetry::names::UPSTREAM_SESSIONS),
                    "pool": u.pool,
                    "tools": gauge(crate::telemetry::names::UPSTREAM_TOOLS),
                })
            })
            .collect()
    }))
}

/// `mcpq stats`: depth by state and tool, oldest wait, running per worker, and the last
/// minute's throughput; with `upstreams` ([`upstream_status`]), whether each is up.
pub async fn stats(
    store: &dyn AdminStore,
    json_out: bool,
    upstreams: Option<Result<Vec<Value>, String>>,
) -> Result<ExitCode, StoreError> {
    let now = now_ms();
    let a = store.activity(now, now - 60_000).await?;
    let oldest_wait_ms = a.queue.oldest_due_at.map(|at| (now - at).max(0));
    let finished_last_minute: u64 = a.finished.iter().map(|(_, n)| n).sum();
    if json_out {
        let depth: Vec<Value> = a
            .queue
            .active
            .iter()
            .map(|(s, t, n)| json!({"state": s.as_str(), "tool": t, "jobs": n}))
            .collect();
        let finished: serde_json::Map<String, Value> = a
            .finished
            .iter()
            .map(|(s, n)| (s.as_str().to_string(), json!(n)))
            .collect();
        let workers: serde_json::Map<String, Value> = a
            .running_per_worker
            .iter()
            .map(|(w, n)| (w.clone(), json!(n)))
            .collect();
        println!(
            "{}",
            json!({
                "depth": depth, "oldest_queued_wait_ms": oldest_wait_ms,
                "paused_tools": a.queue.paused,
                "running_per_worker": workers,
                "finished_last_minute": finished, "throughput_per_s": finished_last_minute as f64 / 60.0,
                "upstreams": match &upstreams {
                    None => Value::Null,
                    Some(Ok(list)) => json!(list),
                    Some(Err(e)) => json!({"error": e}),
                },
            })
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = table(&["state", "tool", "jobs"]);
    for (s, tool, n) in &a.queue.active {
        t.add_row(vec![s.as_str().to_string(), tool.clone(), n.to_string()]);
    }
    println!("unfinished jobs:\n{t}");
    if !a.queue.paused.is_empty() {
        println!("paused tools: {}", a.queue.paused.join(", "));
    }
    println!(
        "oldest queued job waiting: {}",
        oldest_wait_ms.map_or("-".into(), |ms| format!("{:.1} s", ms as f64 / 1000.0))
    );
    let mut w = table(&["worker", "running"]);
    for (worker, n) in &a.running_per_worker {
        w.add_row(vec![worker.clone(), n.to_string()]);
    }
    println!("running per worker:\n{w}");
    let mut f = table(&["finished in the last minute", "jobs"]);
    for (s, n) in &a.finished {
        f.add_row(vec![s.as_str().to_string(), n.to_string()]);
    }
    println!("{f}");
    println!(
        "throughput: {:.1} jobs/s over the last minute",
        finished_last_minute as f64 / 60.0
    );
    match upstreams {
        None => {}
        Some(Err(e)) => println!("upstreams: unknown ({e})"),
        Some(Ok(list)) => {
            let mut u = table(&["upstream", "sessions up", "tools"]);
            for l in &list {
                let n = |v: &Value| v.as_f64().map_or("-".into(), |n| format!("{n}"));
                let up = match l["sessions_up"].as_f64() {
                    Some(0.0) => "0 (down)".to_string(),
                    _ => format!("{} of {}", n(&l["sessions_up"]), l["pool"]),
                };
                u.add_row(vec![
                    l["upstream"].as_str().unwrap_or("").to_string(),
                    up,
                    n(&l["tools"]),
                ]);
            }
            println!("upstreams (the daemon's view):\n{u}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A tick as `mcpq schedules list` shows it: in the schedule's zone, with its offset.
fn zoned(s: &ScheduleDef, ms: i64) -> String {
    use chrono::TimeZone;
    s.zone
        .timestamp_millis_opt(ms)
        .single()
        .map_or_else(|| "-".into(), |t| t.to_rfc3339())
}

/// `mcpq schedules list`: each `[schedules.NAME]`, its cron and zone, the last tick a daemon
/// enqueued (from the store) and the next `next` runs.
pub async fn schedules(
    store: &dyn Store,
    schedules: &[ScheduleDef],
    next: usize,
    json_out: bool,
) -> Result<ExitCode, StoreError> {
    let recorded: std::collections::HashMap<String, i64> =
        store.schedule_ticks().await?.into_iter().collect();
    let now = now_ms();
    if json_out {
        let v: Vec<Value> = schedules
            .iter()
            .map(|s| {
                let last = recorded.get(&s.name).copied();
                json!({
                    "name": s.name, "cron": s.cron_text, "timezone": s.zone.name(),
                    "tool": s.tool, "client": s.client,
                    "last_tick_ms": last, "last_tick": last.map(|t| zoned(s, t)),
                    "next_ms": s.upcoming(now, next),
                    "next": s.upcoming(now, next).iter().map(|&t| zoned(s, t)).collect::<Vec<_>>(),
                })
            })
            .collect();
        println!("{}", Value::Array(v));
    } else {
        let mut t = table(&[
            "schedule",
            "cron",
            "timezone",
            "tool",
            "last tick",
            "next runs",
        ]);
        for s in schedules {
            let last = recorded
                .get(&s.name)
                .map_or_else(|| "-".into(), |&t| zoned(s, t));
            let upcoming: Vec<String> =
                s.upcoming(now, next).iter().map(|&t| zoned(s, t)).collect();
            t.add_row(vec![
                s.name.clone(),
                s.cron_text.clone(),
                s.zone.name().to_string(),
                s.tool.clone(),
                last,
                upcoming.join("\n"),
            ]);
        }
        println!("{t}");
    }
    Ok(ExitCode::SUCCESS)
}
