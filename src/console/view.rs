//! The console's page frame and its shared pieces (navigation, times, state badges, the
//! CSRF field) and the overview page with its server-drawn SVG chart. Every value goes
//! through maud's escaping: a tool's arguments or output never become markup.
//!
//! It must not read the store: `console::Console` gathers what a page shows.

use std::time::{Duration, UNIX_EPOCH};

use maud::{html, Markup, DOCTYPE};

use super::access::Who;
use crate::jobs::JobState;
use crate::store::admin::Bucket;

/// States in the order the overview shows them.
pub const STATES: [JobState; 7] = [
    JobState::Queued,
    JobState::Running,
    JobState::AwaitingInput,
    JobState::InDoubt,
    JobState::Succeeded,
    JobState::Failed,
    JobState::Cancelled,
];

pub fn time(ms: Option<i64>) -> String {
    match ms {
        Some(ms) if ms >= 0 => {
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms as u64))
                .to_string()
        }
        _ => "–".into(),
    }
}

/// A duration for people: `4s`, `3m 20s`, `2h 5m`.
pub fn age(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {}s", s / 60, s % 60),
        _ => format!("{}h {}m", s / 3600, s % 3600 / 60),
    }
}

pub fn badge(s: JobState) -> Markup {
    html! { span class={ "badge " (s.as_str()) } { (s.as_str()) } }
}

pub fn csrf(who: &Who) -> Markup {
    html! { input type="hidden" name="csrf" value=(who.csrf); }
}

/// The whole page around `body`.
pub fn page(title: &str, who: Option<&Who>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="same-origin";
                title { (title) " · mcpq console" }
                link rel="stylesheet" href="/ui/static/console.css";
                script src="/ui/static/console.js" defer {}
            }
            body {
                header {
                    a.brand href="/ui/" { "mcpq" }
                    @if let Some(w) = who {
                        nav {
                            a href="/ui/" { "Overview" }
                            a href="/ui/jobs" { "Jobs" }
                            a href="/ui/tools" { "Tools" }
                        }
                        form.logout method="post" action="/ui/logout" {
                            (csrf(w))
                            span.who { (w.name) " · " (w.role.as_str()) }
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

pub fn login(error: Option<&str>) -> Markup {
    page(
        "Sign in",
        None,
        html! {
            section.login {
                h1 { "Sign in" }
                @if let Some(e) = error { p.error { (e) } }
                form method="post" action="/ui/login" {
                    label for="token" { "Operator token" }
                    input #token type="password" name="token" autocomplete="current-password" required autofocus;
                    button type="submit" { "Sign in" }
                }
            }
        },
    )
}

/// A message page (an error, an action's outcome) with a way back.
pub fn message(title: &str, who: Option<&Who>, text: &str, back: &str) -> Markup {
    page(
        title,
        who,
        html! {
            h1 { (title) }
            p.message { (text) }
            p { a href=(back) { "Back" } }
        },
    )
}

/// Everything the overview shows, gathered by the caller.
pub struct Overview {
    pub counts: Vec<(String, JobState, u64)>,
    pub minutes: Vec<Bucket>,
    pub hours: Vec<Bucket>,
    pub oldest_wait_ms: Option<i64>,
    /// (worker, ms since its last heartbeat)
    pub workers: Vec<(String, i64)>,
    /// Tools whose every job finished in the last 15 minutes failed (at least 3).
    pub failing: Vec<(String, u64)>,
    /// The store's answer time, or its error.
    pub store: Result<i64, String>,
}

fn count_of(o: &Overview, tool: Option<&str>, s: JobState) -> u64 {
    o.counts
        .iter()
        .filter(|(t, st, _)| *st == s && tool.is_none_or(|x| x == t))
        .map(|(_, _, n)| n)
        .sum()
}

/// The part of the overview that refreshes itself.
pub fn overview_body(o: &Overview) -> Markup {
    let mut tools: Vec<&str> = o.counts.iter().map(|(t, _, _)| t.as_str()).collect();
    tools.sort_unstable();
    tools.dedup();
    html! {
        div.cards {
            div.card #store { h3 { "Store" } @match &o.store {
                Ok(ms) => p.ok { "up · " (ms) " ms" },
                Err(e) => p.error { "down: " (e) },
            } }
            div.card #oldest { h3 { "Oldest queued wait" } p { (o.oldest_wait_ms.map(age).unwrap_or_else(|| "none waiting".into())) } }
            div.card #waiting { h3 { "Waiting for input" } p { a href="/ui/jobs?state=input_required" { (count_of(o, None, JobState::AwaitingInput)) } } }
            div.card #in-doubt { h3 { "In doubt" } p { a href="/ui/jobs?state=in_doubt" { (count_of(o, None, JobState::InDoubt)) } } }
        }
        h2 { "Jobs by tool and state" }
        div.scroll { table #counts {
            thead { tr { th { "tool" } @for s in STATES { th { (s.as_str()) } } } }
            tbody {
                @for t in &tools { tr data-tool=(t) {
                    th { a href={ "/ui/jobs?tool=" (enc(t)) } { (t) } }
                    @for s in STATES { td data-state=(s.as_str()) {
                        a href={ "/ui/jobs?tool=" (enc(t)) "&state=" (s.as_str()) } { (count_of(o, Some(t), s)) }
                    } }
                } }
                tr.total { th { "all" } @for s in STATES { td data-state=(s.as_str()) { (count_of(o, None, s)) } } }
            }
        } }
        h2 { "Activity" }
        div.charts {
            figure { (chart(&o.minutes)) figcaption { "last hour, per minute" } }
            figure { (chart(&o.hours)) figcaption { "last day, per hour" } }
        }
        p.legend { span.enq { "enqueued" } " " span.ok { "succeeded" } " " span.bad { "failed" } }
        h2 { "Workers" }
        @if o.workers.is_empty() { p { "No worker holds a job." } } @else {
            div.scroll { table #workers { thead { tr { th { "worker" } th { "last heartbeat" } } }
                tbody { @for (w, ago) in &o.workers { tr { td { (w) } td { (age(*ago)) " ago" } } } } } }
        }
        h2 { "Failing tools" }
        @if o.failing.is_empty() { p { "None: no tool failed every job in the last 15 minutes." } } @else {
            ul #failing { @for (t, n) in &o.failing { li { a href={ "/ui/jobs?state=failed&tool=" (enc(t)) } { (t) } " · " (n) " failed, none succeeded" } } }
        }
    }
}

pub fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub fn overview(who: &Who, o: &Overview, refresh_ms: u64) -> Markup {
    page(
        "Overview",
        Some(who),
        html! {
            h1 { "Overview" }
            div #live data-refresh="/ui/fragment/overview" data-every=(refresh_ms) { (overview_body(o)) }
        },
    )
}

/// Three lines (enqueued, succeeded, failed) over the buckets, scaled to the largest.
fn chart(b: &[Bucket]) -> Markup {
    let (w, h) = (600.0_f64, 120.0_f64);
    let max = b
        .iter()
        .map(|x| x.all.enqueued.max(x.all.succeeded).max(x.all.failed))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let line = |f: &dyn Fn(&Bucket) -> u64| -> String {
        let n = b.len().max(2) as f64 - 1.0;
        b.iter()
            .enumerate()
            .map(|(i, x)| {
                format!(
                    "{:.1},{:.1}",
                    i as f64 * w / n,
                    h - f(x) as f64 * (h - 10.0) / max
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    html! {
        svg.chart viewBox="0 0 600 120" preserveAspectRatio="none" role="img" {
            title { "peak " (max as u64) " per bucket" }
            polyline.enq points=(line(&|x| x.all.enqueued)) {}
            polyline.ok points=(line(&|x| x.all.succeeded)) {}
            polyline.bad points=(line(&|x| x.all.failed)) {}
        }
        span.peak { "peak " (max as u64) }
    }
}
