//! The console's actions: the admin CLI's retry, cancel, fail (an in-doubt job) and purge,
//! through the same [`AdminStore`](crate::store::admin::AdminStore) methods, on one job, a
//! selection, or every job a filter matches (after a confirmation that states the count).
//! The operator's name goes into each job's history.
//!
//! It must not decide what a change does to a job: the store's SQL does. Every POST
//! is checked for the session's CSRF token first, then for a read-write role.

use super::access::{Access, Who};
use super::query::{self, get, ConsoleError};
use super::{html, pages, redirect, view, Console};
use crate::audit::{Entry, Kind};
use crate::http::HttpResponse;
use crate::jobs::JobId;
use crate::store::admin::{record_action, Action, Change};
use crate::store::CancelOutcome;

/// Jobs one confirmation may change (each is a durable write; the page waits for them).
pub const MAX_BULK: u64 = 5_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Retry,
    Cancel,
    Fail,
    Purge,
}

impl Verb {
    fn parse(s: &str) -> Result<Verb, ConsoleError> {
        Ok(match s {
            "retry" => Verb::Retry,
            "cancel" => Verb::Cancel,
            "fail" => Verb::Fail,
            "purge" => Verb::Purge,
            _ => return Err(ConsoleError::BadRequest(format!("action {s:?}: unknown"))),
        })
    }

    fn word(self) -> &'static str {
        match self {
            Verb::Retry => "retry",
            Verb::Cancel => "cancel",
            Verb::Fail => "fail",
            Verb::Purge => "purge",
        }
    }
}

impl Console {
    pub(super) async fn act(
        &self,
        who: &Who,
        form: &[(String, String)],
    ) -> Result<HttpResponse, ConsoleError> {
        if !Access::csrf_ok(who, get(form, "csrf")) {
            return Err(ConsoleError::Csrf);
        }
        if !who.can_write() {
            return Err(ConsoleError::Forbidden);
        }
        let action = get(form, "action").unwrap_or("");
        let (verb, scope) = action
            .split_once(':')
            .ok_or_else(|| ConsoleError::BadRequest(format!("action {action:?}: unknown")))?;
        let verb = Verb::parse(verb)?;
        let by = format!("{} (console)", who.name);
        match (verb, scope) {
            (Verb::Purge, "all") => self.purge(who, form).await,
            (Verb::Purge, _) => Err(ConsoleError::BadRequest("purge applies to all".into())),
            (_, "one") => {
                let id = get(form, "id").ok_or_else(|| ConsoleError::BadRequest("no id".into()))?;
                let done = self.apply(verb, id, &by).await?;
                self.record(verb, &by, &[(id, done)]).await?;
                tracing::info!(operator = %who.name, job = %id, action = verb.word(), changed = done, "console action");
                Ok(redirect(&format!("/ui/jobs/{}", view::enc(id)), None))
            }
            (_, "selected") => {
                let ids: Vec<&str> = form
                    .iter()
                    .filter(|(k, _)| k == "id")
                    .map(|(_, v)| v.as_str())
                    .take(MAX_BULK as usize)
                    .collect();
                if ids.is_empty() {
                    return Err(ConsoleError::BadRequest("select at least one job".into()));
                }
                self.apply_all(who, verb, &ids, &by, "/ui/jobs").await
            }
            (_, "all") => self.act_on_filter(who, verb, form, &by).await,
            _ => Err(ConsoleError::BadRequest(format!(
                "scope {scope:?}: unknown"
            ))),
        }
    }

    async fn act_on_filter(
        &self,
        who: &Who,
        verb: Verb,
        form: &[(String, String)],
        by: &str,
    ) -> Result<HttpResponse, ConsoleError> {
        let mut q = query::filter(form)?;
        q.after = None;
        let total = self.admin.browse_count(&q).await?;
        let Some(confirmed) = get(form, "confirm") else {
            return Ok(html(
                200,
                pages::confirm(who, verb.word(), &q, total.min(MAX_BULK)),
            ));
        };
        let n: u64 = confirmed
            .parse()
            .map_err(|_| ConsoleError::BadRequest(format!("confirm {confirmed:?}: not a count")))?;
        // The jobs that match now, at most as many as were confirmed.
        let mut ids = Vec::new();
        q.limit = 500;
        while (ids.len() as u64) < n.min(MAX_BULK) {
            let page = self.admin.browse(&q).await?;
            let Some(last) = page.last() else { break };
            q.after = Some((last.key, last.seq));
            ids.extend(page.into_iter().map(|r| r.job.id.0));
        }
        ids.truncate(n.min(MAX_BULK) as usize);
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        q.after = None;
        let back = format!("/ui/jobs?{}", query::encode(&query::filter_pairs(&q)));
        self.apply_all(who, verb, &refs, by, &back).await
    }

    async fn apply_all(
        &self,
        who: &Who,
        verb: Verb,
        ids: &[&str],
        by: &str,
        back: &str,
    ) -> Result<HttpResponse, ConsoleError> {
        let mut changed = 0;
        let mut done = Vec::with_capacity(ids.len());
        for id in ids {
            let c = self.apply(verb, id, by).await?;
            changed += usize::from(c);
            done.push((*id, c));
        }
        self.record(verb, by, &done).await?;
        tracing::info!(operator = %who.name, action = verb.word(), jobs = ids.len(), changed, "console action");
        let text = format!(
            "{}: {changed} of {} job(s) changed; the others were not in a state for it.",
            verb.word(),
            ids.len()
        );
        Ok(html(200, view::message("Done", Some(who), &text, back)))
    }

    /// The audit records of an action on jobs (one per job, appended together).
    async fn record(
        &self,
        verb: Verb,
        by: &str,
        done: &[(&str, bool)],
    ) -> Result<(), ConsoleError> {
        if !self.audit || done.is_empty() {
            return Ok(());
        }
        let now = self.clock.now_ms();
        let entries = done
            .iter()
            .map(|(id, changed)| {
                let outcome = if *changed { "changed" } else { "unchanged" };
                let mut e = Entry::new(now, Kind::Operator, by, outcome);
                e.tool = Some(format!("console.{}", verb.word()));
                e.job_id = Some(id.to_string());
                e
            })
            .collect();
        Ok(self.admin.append_audit(entries).await?)
    }

    /// One job; whether it changed.
    async fn apply(&self, verb: Verb, id: &str, by: &str) -> Result<bool, ConsoleError> {
        let id = JobId(id.to_string());
        let now = self.clock.now_ms();
        Ok(match verb {
            Verb::Retry => self.admin.retry_job(&id, 1, now, by).await? == Change::Done,
            Verb::Fail => self.admin.fail_job(&id, now, by).await? == Change::Done,
            Verb::Cancel => matches!(
                self.admin.admin_cancel(&id, now, by).await?,
                CancelOutcome::Cancelled | CancelOutcome::Requested
            ),
            Verb::Purge => false,
        })
    }

    async fn purge(
        &self,
        who: &Who,
        form: &[(String, String)],
    ) -> Result<HttpResponse, ConsoleError> {
        let age = get(form, "older_than").unwrap_or("");
        let d = humantime::parse_duration(age).map_err(|e| {
            ConsoleError::BadRequest(format!("older_than {age:?}: {e} (e.g. 7d, 12h)"))
        })?;
        let before = self.clock.now_ms() - d.as_millis().min(i64::MAX as u128) as i64;
        let n = self.admin.purge(before).await?;
        let action = Action {
            by: &format!("{} (console)", who.name),
            verb: "console.purge",
            job: None,
            target: Some(format!("finished before {age} ago: {n} deleted")),
            outcome: "purged",
        };
        record_action(self.admin.as_ref(), self.audit, self.clock.now_ms(), action).await?;
        tracing::info!(operator = %who.name, deleted = n, "console purge");
        let text = format!("Deleted {n} finished job(s) older than {age}.");
        Ok(html(
            200,
            view::message("Purged", Some(who), &text, "/ui/jobs"),
        ))
    }
}
