//! The console's jobs list (filters, selection, actions on a selection or on every match),
//! the job page (arguments, result, attempts and their stderr tails, progress, questions,
//! history with operators' changes), the confirmation of an action on every match, and the
//! tools page.
//!
//! It must not read the store; every value is escaped by maud.

use maud::{html, Markup};
use serde_json::Value;

use super::access::Who;
use super::query::{encode, filter_pairs};
use super::view::{self, badge, csrf, enc, page, time, STATES};
use crate::config::tool_table::{Mode, Target};
use crate::config::ToolDef;
use crate::store::admin::{JobQuery, JobRow, Sort};
use crate::store::outbox::WebhookDelivery;
use crate::store::JobRecord;

fn filter_form(q: &JobQuery) -> Markup {
    let v = |o: &Option<String>| o.clone().unwrap_or_default();
    html! {
        form.filter #filter method="get" action="/ui/jobs" {
            label { "state " select name="state" {
                option value="" { "any" }
                @for s in STATES { option value=(s.as_str()) selected[q.state == Some(s)] { (s.as_str()) } }
            } }
            label { "tool " input name="tool" value=(v(&q.tool)); }
            label { "client " input name="client" value=(v(&q.client)); }
            label { "created from " input name="from" value=(q.created_from.map(|t| t.to_string()).unwrap_or_default()) placeholder="2026-12-01T10:00"; }
            label { "to " input name="to" value=(q.created_to.map(|t| t.to_string()).unwrap_or_default()); }
            label { "text in args/errors " input name="q" value=(v(&q.text)); }
            label { "job id " input name="id" value=(v(&q.id)); }
            label { "sort " select name="sort" {
                option value="created" selected[q.sort == Sort::Created] { "created" }
                option value="updated" selected[q.sort == Sort::Updated] { "updated" }
            } }
            button type="submit" { "Filter" }
            a href="/ui/jobs" { "Clear" }
        }
    }
}

fn hidden_filter(q: &JobQuery) -> Markup {
    html! { @for (k, v) in filter_pairs(q) { input type="hidden" name=(k) value=(v); } }
}

fn action_buttons(scope: &str) -> Markup {
    html! {
        button name="action" value={ "retry:" (scope) } { "Retry" }
        button name="action" value={ "cancel:" (scope) } { "Cancel" }
        button name="action" value={ "fail:" (scope) } { "Fail (in doubt)" }
    }
}

/// A capped count as shown: "10000+" past the cap.
fn shown(total: u64) -> String {
    if total > crate::store::browse::COUNT_CAP {
        format!("{}+", crate::store::browse::COUNT_CAP)
    } else {
        total.to_string()
    }
}

/// What the list knows of the jobs its filter matches.
#[derive(Debug, Clone, Copy)]
pub enum Listed {
    /// How many (capped at `COUNT_CAP` + 1).
    Counted(u64),
    /// A text search's share: jobs below this sequence are not searched yet (`None`: the
    /// page is full, or no older job is left).
    Searched(Option<i64>),
}

pub fn jobs(who: &Who, q: &JobQuery, rows: &[JobRow], listed: Listed) -> Markup {
    let link = |key: i64, seq: i64| {
        let mut p = filter_pairs(q);
        p.push(("after", format!("{key}.{seq}")));
        encode(&p)
    };
    let next = rows
        .last()
        .filter(|_| rows.len() >= q.limit)
        .map(|r| link(r.key, r.seq));
    let (total, resume) = match listed {
        Listed::Counted(n) => (Some(n), None),
        Listed::Searched(below) => (None, below),
    };
    let older = resume.map(|below| link(below, below));
    let all = total.map(shown).unwrap_or_default();
    let body = html! {
        h1 { "Jobs" }
        (filter_form(q))
        @if let Some(n) = total {
            p #total { (shown(n)) " matching" }
        } @else {
            p #total {
                (rows.len()) " found on this page"
                @if let Some(below) = resume {
                    "; jobs older than #" (below) " are not searched yet"
                }
            }
        }
        form #jobs-form method="post" action="/ui/act" {
            @if who.can_write() {
                (csrf(who)) (hidden_filter(q))
                div.actions #selected-actions { "Selected: " (action_buttons("selected")) }
                div.actions #all-actions { "All " (all) " matching: " (action_buttons("all")) }
            }
            div.scroll { table #jobs { thead { tr {
                @if who.can_write() { th { input type="checkbox" data-select-all="id" aria-label="select all"; } }
                th { "id" } th { "tool" } th { "client" } th { "state" } th { "attempt" }
                th { "created" } th { "updated" }
            } } tbody { @for r in rows { tr data-id=(r.job.id.0) {
                @if who.can_write() { td { input type="checkbox" name="id" value=(r.job.id.0) aria-label="select"; } }
                td { a href={ "/ui/jobs/" (enc(&r.job.id.0)) } { code { (r.job.id.0) } } }
                td { (r.job.tool) } td { (r.job.client_id) } td { (badge(r.job.state)) }
                td { (r.job.attempt) "/" (r.job.max_attempts) }
                td { (time(Some(r.job.created_at))) }
                td { (time(r.job.finished_at.or(r.job.started_at).or(Some(r.job.created_at)))) }
            } } } }
            }
        }
        nav.pages {
            @if q.after.is_some() { a href={ "/ui/jobs?" (encode(&filter_pairs(q))) } { "First page" } }
            @if let Some(n) = next { a #next href={ "/ui/jobs?" (n) } { "Next page" } }
            @if let Some(o) = older { a #older href={ "/ui/jobs?" (o) } { "Search older jobs" } }
        }
        @if who.can_write() {
            form.purge method="post" action="/ui/act" {
                (csrf(who))
                "Delete finished jobs older than "
                input name="older_than" value="30d" size="6";
                button name="action" value="purge:all" { "Purge" }
            }
        }
    };
    page("Jobs", Some(who), body)
}

/// Asks before acting on every match, saying how many.
pub fn confirm(who: &Who, verb: &str, q: &JobQuery, count: u64) -> Markup {
    page(
        "Confirm",
        Some(who),
        html! {
            h1 { "Confirm" }
            form #confirm method="post" action="/ui/act" {
                (csrf(who)) (hidden_filter(q))
                input type="hidden" name="confirm" value=(count);
                p.message { (verb) " all " strong #confirm-count { (count) } " jobs matching this filter?" }
                button name="action" value={ (verb) ":all" } { (verb) " " (count) " jobs" }
                " " a href={ "/ui/jobs?" (encode(&filter_pairs(q))) } { "Back" }
            }
        },
    )
}

fn pretty(text: Option<&str>) -> String {
    match text {
        None => String::new(),
        Some(t) => serde_json::from_str::<Value>(t)
            .ok()
            .and_then(|v| serde_json::to_string_pretty(&v).ok())
            .unwrap_or_else(|| t.to_string()),
    }
}

/// An attempt's error split into its message, exit status and stderr tail.
fn split_error(e: &str) -> (&str, Option<&str>, Option<&str>) {
    let (msg, tail) = match e.split_once("; stderr: ") {
        Some((m, t)) => (m, Some(t)),
        None => (e, None),
    };
    let exit = msg
        .find("exit status")
        .or_else(|| msg.find("exit code"))
        .map(|i| msg[i..].split([';', ')', ',']).next().unwrap_or(""));
    (msg, exit, tail)
}

fn history(r: &JobRecord) -> Markup {
    let events: Vec<Value> = match serde_json::from_str::<Value>(&r.errors) {
        Ok(Value::Array(v)) => v,
        _ => Vec::new(),
    };
    html! {
        h2 { "Attempts and history" }
        @if events.is_empty() { p { "No failed attempt and no operator change." } }
        div.scroll { table #history { thead { tr { th { "attempt" } th { "at" } th { "worker" } th { "event" } th { "exit" } th { "stderr tail" } } }
        tbody { @for e in &events {
            @let text = e["error"].as_str().unwrap_or_default();
            @let (msg, exit, tail) = split_error(text);
            tr.operator[text.starts_with("operator")] {
                td { (e["attempt"]) } td { (time(e["at"].as_i64())) }
                td.worker { (e["worker"].as_str().unwrap_or("–")) } td { (msg) }
                td { (exit.unwrap_or("–")) } td { @if let Some(t) = tail { pre.stderr { (t) } } }
            }
        } } } }
    }
}

/// The job's webhook events and their delivery (docs/WEBHOOKS.md), if it has any.
fn webhooks(hooks: &[WebhookDelivery]) -> Markup {
    html! {
        @if !hooks.is_empty() {
            h2 { "Webhooks" }
            div.scroll { table #webhooks { thead { tr { th { "webhook id" } th { "event" } th { "delivery" } th { "attempts" } th { "last answer" } th { "last error" } } }
            tbody { @for h in hooks {
                tr {
                    td { code { (h.webhook_id) } } td { (h.event) }
                    td.delivery data-status=(h.status) { (h.status) @if let (Some(at), "pending") = (h.next_at, h.status) { " · next " (time(Some(at))) } }
                    td { (h.attempts) }
                    td { @match h.last_status { Some(s) => { "HTTP " (s) }, None => "–" } " " (time(h.last_at)) }
                    td { (h.last_error.clone().unwrap_or_default()) }
                }
            } } } }
        }
    }
}

/// The part of the job page that refreshes itself.
pub fn job_body(who: &Who, r: &JobRecord, hooks: &[WebhookDelivery], now_ms: i64) -> Markup {
    use crate::jobs::JobState as S;
    let id = &r.id.0;
    html! {
        div.cards {
            div.card { h3 { "State" } p #state data-state=(r.state.as_str()) { (badge(r.state)) } }
            div.card { h3 { "Attempts" } p #attempts { (r.attempt) " of " (r.max_attempts) } }
            div.card { h3 { "Tool" } p { (r.tool) " " small { "definition " (r.def) } } }
            div.card { h3 { "Client" } p { (r.client_id.0) } }
        }
        @if who.can_write() {
            form.actions #job-actions method="post" action="/ui/act" {
                (csrf(who)) input type="hidden" name="id" value=(id);
                @if matches!(r.state, S::Failed) { button name="action" value="retry:one" { "Retry" } }
                @if matches!(r.state, S::InDoubt) {
                    button name="action" value="retry:one" { "Resolve: run again" }
                    button name="action" value="fail:one" { "Resolve: fail" }
                }
                @if matches!(r.state, S::Queued | S::Running | S::AwaitingInput) {
                    button name="action" value="cancel:one" { "Cancel" }
                }
            }
        }
        table.fields { tbody {
            tr { th { "created" } td { (time(Some(r.created_at))) } }
            tr { th { "due" } td { (time(Some(r.run_at))) } }
            tr { th { "started" } td { (time(r.started_at)) } }
            tr { th { "finished" } td { (time(r.finished_at)) } }
            tr { th { "worker" } td #worker { @match (&r.lease_owner, r.lease_expires_at) {
                (Some(o), Some(at)) => { (o) " · lease for " (view::age(at - now_ms)) }
                _ => "–",
            } } }
            tr { th { "on worker crash" } td { (r.on_crash.as_str()) } }
            tr { th { "cancel requested" } td { (r.cancel_requested) } }
            tr { th { "idempotency key" } td { (r.idempotency_key.clone().unwrap_or_default()) } }
        } }
        @if let Some(p) = &r.progress { h2 { "Progress" } pre #progress { (pretty(Some(p))) } }
        @if let Some(q) = &r.input_requests { h2 { "Questions waiting for the client" } pre #questions { (pretty(Some(q))) } }
        h2 { "Arguments" } pre #args { (pretty(Some(&r.args))) }
        @if r.result.is_some() { h2 { "Result" } pre #result { (pretty(r.result.as_deref())) } }
        (history(r))
        (webhooks(hooks))
    }
}

pub fn job(
    who: &Who,
    r: &JobRecord,
    hooks: &[WebhookDelivery],
    now_ms: i64,
    refresh_ms: u64,
) -> Markup {
    page(
        &r.id.0,
        Some(who),
        html! {
            h1 { "Job " code { (r.id.0) } }
            div #live data-refresh={ "/ui/fragment/jobs/" (enc(&r.id.0)) } data-every=(refresh_ms) { (job_body(who, r, hooks, now_ms)) }
        },
    )
}

/// One tool's line: definition, policies, running now, and the last hour's outcome.
pub struct ToolLine<'a> {
    pub name: String,
    pub def: Option<&'a ToolDef>,
    pub running: u64,
    pub succeeded: u64,
    pub failed: u64,
}

fn target(d: &ToolDef) -> String {
    match &d.target {
        Target::Command { argv, .. } => format!("command {}", argv.join(" ")),
        other => format!("{other:?}")
            .split(['{', '('])
            .next()
            .unwrap_or("")
            .trim()
            .to_lowercase(),
    }
}

pub fn tools(who: &Who, lines: &[ToolLine<'_>]) -> Markup {
    page(
        "Tools",
        Some(who),
        html! {
            h1 { "Tools" }
            div.scroll { table #tools { thead { tr {
                th { "tool" } th { "mode" } th { "runs" } th { "timeout" } th { "attempts" }
                th { "concurrency (running / cap)" } th { "on worker crash" } th { "last hour failed" }
            } } tbody { @for l in lines { tr data-tool=(l.name) {
                th { a href={ "/ui/jobs?tool=" (enc(&l.name)) } { (l.name) } }
                @if let Some(d) = l.def {
                    td { (if d.mode == Mode::Sync { "sync" } else { "job" }) }
                    td { code { (target(d)) } br; small { (d.description) } }
                    td { (d.timeout.as_secs()) " s" }
                    td { (d.max_attempts.map(|n| n.to_string()).unwrap_or_else(|| "default".into())) }
                    td { (l.running) " / " (d.concurrency.map(|n| n.to_string()).unwrap_or_else(|| "∞".into())) }
                    td { (d.on_worker_crash.as_str()) }
                } @else {
                    td { "job" } td { "built in" } td { "–" } td { "default" } td { (l.running) " / ∞" } td { "–" }
                }
                td { (l.failed) " of " (l.failed + l.succeeded)
                    @if l.failed + l.succeeded > 0 { " (" (l.failed * 100 / (l.failed + l.succeeded)) "%)" } }
            } } } } }
        },
    )
}
