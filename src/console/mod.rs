//! The operator's web console under `/ui/`: server-rendered pages (maud) over the admin
//! store, a small script and stylesheet compiled in, sign-in, and the admin CLI's actions
//! (retry, cancel, fail an in-doubt job, purge) on one job, a selection or every job a filter
//! matches. Served on the metrics listener by `mcpq serve` and by `mcpq ui --listen`.
//!
//! Every answer carries a strict Content-Security-Policy (`default-src 'self'`, no inline
//! script), `X-Frame-Options: DENY` and `no-store`. It must not be reachable from the
//! public listener, nor change a job other than through [`AdminStore`].

pub mod access;
mod act;
mod activity;
mod pages;
pub mod query;
pub mod search;
mod view;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode};
use maud::Markup;

use self::access::{Access, Denied, Who};
use self::query::ConsoleError;
use crate::clock::Clock;
use crate::config::{Settings, ToolDef};
use crate::http::{Body, HttpResponse};
use crate::jobs::{JobId, JobState};
use crate::store::admin::AdminStore;
use crate::store::Store;

const JS: &str = include_str!("assets/console.js");
const CSS: &str = include_str!("assets/console.css");
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
/// Largest form body accepted (a selection of a few thousand ids).
const MAX_FORM: usize = 256 * 1024;

/// The console of one store.
pub struct Console {
    access: Access,
    admin: Arc<dyn AdminStore>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    tools: Vec<ToolDef>,
    refresh_ms: u64,
    /// The text search's slice and time per request ([`search`]).
    search_chunk: i64,
    search_budget: std::time::Duration,
    lease_ms: i64,
    ttl_secs: u64,
    /// Cookies get `Secure` unless the console listens on loopback.
    secure: bool,
    /// The overview's chart buckets and counts, kept between refreshes.
    activity: activity::Activity,
    /// Record actions in the audit trail (`[audit] enabled`).
    audit: bool,
}

impl Console {
    /// `None` when `[console]` is not enabled.
    pub fn new(
        settings: &Settings,
        admin: Arc<dyn AdminStore>,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        bound: SocketAddr,
    ) -> Option<Arc<Console>> {
        let c = &settings.console;
        if !c.enabled {
            return None;
        }
        Some(Arc::new(Console {
            access: Access::new(c.clone()),
            admin,
            store,
            clock,
            tools: settings.tools.clone(),
            refresh_ms: c.refresh_ms,
            search_chunk: c.search_chunk,
            search_budget: std::time::Duration::from_millis(c.search_budget_ms),
            lease_ms: settings.jobs.lease_ms,
            ttl_secs: c.session_ttl_secs,
            secure: !bound.ip().is_loopback(),
            activity: activity::Activity::default(),
            audit: settings.audit.enabled,
        }))
    }

    /// Answers a request whose path starts with `/ui`.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> HttpResponse {
        match self.route(req).await {
            Ok(r) => r,
            Err(e) => {
                if let ConsoleError::Store(s) = &e {
                    tracing::warn!(error = %s, "console: the store did not answer");
                }
                let status = e.status();
                html(
                    status,
                    view::message("Refused", None, &e.to_string(), "/ui/"),
                )
            }
        }
    }

    async fn route(&self, req: Request<Incoming>) -> Result<HttpResponse, ConsoleError> {
        let path = req.uri().path().to_string();
        let method = req.method().clone();
        match (&method, path.as_str()) {
            (&Method::GET, "/ui/static/console.js") => {
                return Ok(asset("text/javascript; charset=utf-8", JS))
            }
            (&Method::GET, "/ui/static/console.css") => {
                return Ok(asset("text/css; charset=utf-8", CSS))
            }
            (&Method::GET, "/ui/login") => return Ok(html(200, view::login(None))),
            (&Method::POST, "/ui/login") => return self.login(req).await,
            _ => {}
        }
        let cookie = access::session_cookie(req.headers());
        let who = match self
            .access
            .who(req.headers(), cookie.as_deref(), self.clock.now_ms())
        {
            Ok(w) => w,
            Err(Denied::Unknown(name)) => return Err(ConsoleError::UnknownOperator(name)),
            Err(Denied::Login) if method == Method::GET => return Ok(redirect("/ui/login", None)),
            Err(Denied::Login) => return Err(ConsoleError::Csrf),
        };
        let params = query::pairs(req.uri().query().unwrap_or("").as_bytes());
        match (&method, path.as_str()) {
            (&Method::GET, "/ui" | "/ui/") => Ok(html(
                200,
                view::overview(&who, &self.overview().await, self.refresh_ms),
            )),
            (&Method::GET, "/ui/fragment/overview") => {
                Ok(html(200, view::overview_body(&self.overview().await)))
            }
            (&Method::GET, "/ui/jobs") => self.jobs(&who, &params).await,
            (&Method::GET, "/ui/tools") => self.tools(&who).await,
            (&Method::GET, p) if p.starts_with("/ui/jobs/") => {
                self.job(&who, &p["/ui/jobs/".len()..], false).await
            }
            (&Method::GET, p) if p.starts_with("/ui/fragment/jobs/") => {
                self.job(&who, &p["/ui/fragment/jobs/".len()..], true).await
            }
            (&Method::POST, "/ui/logout") => {
                let form = read_form(req).await?;
                if !Access::csrf_ok(&who, query::get(&form, "csrf")) {
                    return Err(ConsoleError::Csrf);
                }
                self.access.end(cookie.as_deref());
                Ok(redirect(
                    "/ui/login",
                    Some(access::set_cookie("", 0, self.secure)),
                ))
            }
            (&Method::POST, "/ui/act") => {
                let form = read_form(req).await?;
                let done = self.act(&who, &form).await;
                self.activity.forget_counts();
                done
            }
            _ => Err(ConsoleError::NotFound),
        }
    }

    async fn login(&self, req: Request<Incoming>) -> Result<HttpResponse, ConsoleError> {
        if !same_origin(req.headers()) {
            return Err(ConsoleError::Csrf);
        }
        let form = read_form(req).await?;
        let token = query::get(&form, "token").unwrap_or("");
        match self.access.operator_of_token(token) {
            Some((name, role)) => {
                tracing::info!(operator = %name, "console: signed in");
                let v = self.access.start(name, role, self.clock.now_ms());
                let cookie = access::set_cookie(&v, self.ttl_secs, self.secure);
                Ok(redirect("/ui/", Some(cookie)))
            }
            None => Ok(html(401, view::login(Some("Unknown token.")))),
        }
    }

    async fn overview(&self) -> view::Overview {
        let now = self.clock.now_ms();
        let started = std::time::Instant::now();
        let stats = self.store.queue_stats(now).await;
        let store = match (&stats, self.store.ping().await) {
            (Ok(_), Ok(())) => Ok(started.elapsed().as_millis() as i64),
            (Err(e), _) => Err(e.to_string()),
            (_, Err(e)) => Err(e.to_string()),
        };
        let recent = match self.activity.recent(self.admin.as_ref(), now).await {
            Ok(r) => r,
            Err(_) => activity::Recent {
                minutes: Vec::new(),
                hours: Vec::new(),
                failing: Vec::new(),
            },
        };
        let workers = self
            .store
            .lease_holders()
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|(w, exp)| (w, now - (exp - self.lease_ms)))
            .collect();
        view::Overview {
            counts: self
                .activity
                .counts(self.admin.as_ref(), now)
                .await
                .unwrap_or_default(),
            minutes: recent.minutes,
            hours: recent.hours,
            oldest_wait_ms: stats.ok().and_then(|s| s.oldest_due_at).map(|at| now - at),
            workers,
            failing: recent.failing,
            store,
        }
    }

    async fn jobs(
        &self,
        who: &Who,
        params: &[(String, String)],
    ) -> Result<HttpResponse, ConsoleError> {
        let q = query::filter(params)?;
        if q.text.is_some() {
            // No count: it would scan every job the page's budget does not reach.
            let found = search::page(
                self.admin.as_ref(),
                &q,
                self.search_chunk,
                self.search_budget,
            )
            .await?;
            let list = pages::Listed::Searched(found.resume_below);
            return Ok(html(200, pages::jobs(who, &q, &found.rows, list)));
        }
        let rows = self.admin.browse(&q).await?;
        let total = self.admin.browse_count(&q).await?;
        Ok(html(
            200,
            pages::jobs(who, &q, &rows, pages::Listed::Counted(total)),
        ))
    }

    async fn job(
        &self,
        who: &Who,
        raw_id: &str,
        fragment: bool,
    ) -> Result<HttpResponse, ConsoleError> {
        let id = percent_decode(raw_id);
        let r = self
            .admin
            .job(&JobId(id))
            .await?
            .ok_or(ConsoleError::NotFound)?;
        let hooks = self.admin.webhook_deliveries(&r.id).await?;
        let now = self.clock.now_ms();
        Ok(html(
            200,
            if fragment {
                pages::job_body(who, &r, &hooks, now)
            } else {
                pages::job(who, &r, &hooks, now, self.refresh_ms)
            },
        ))
    }

    async fn tools(&self, who: &Who) -> Result<HttpResponse, ConsoleError> {
        let now = self.clock.now_ms();
        let counts = self.admin.counts().await?;
        let recent = self.admin.recent(now - 3_600_000).await?;
        let mut names: Vec<String> = self.tools.iter().map(|t| t.name.clone()).collect();
        names.extend(counts.iter().map(|(t, _, _)| t.clone()));
        names.sort();
        names.dedup();
        let sum = |rows: &[(String, JobState, u64)], t: &str, s: JobState| -> u64 {
            rows.iter()
                .filter(|(x, y, _)| x == t && *y == s)
                .map(|(_, _, n)| n)
                .sum()
        };
        let lines: Vec<pages::ToolLine<'_>> = names
            .into_iter()
            .map(|name| pages::ToolLine {
                def: self.tools.iter().find(|t| t.name == name),
                running: sum(&counts, &name, JobState::Running),
                succeeded: sum(&recent, &name, JobState::Succeeded),
                failed: sum(&recent, &name, JobState::Failed),
                name,
            })
            .collect();
        Ok(html(200, pages::tools(who, &lines)))
    }
}

/// The console as a handler for a listener that does not know it.
pub fn handler(console: Arc<Console>) -> crate::http::Handler {
    Arc::new(move |req| {
        let c = console.clone();
        Box::pin(c.handle(req))
    })
}

fn percent_decode(s: &str) -> String {
    query::pairs(format!("x={s}").as_bytes())
        .pop()
        .map(|(_, v)| v)
        .unwrap_or_default()
}

/// A browser's POST to sign in comes from our own pages: `Sec-Fetch-Site` other than
/// `same-origin` (or `none`, typed by hand), or an `Origin` naming another host, is refused
/// (login CSRF). A client that sends neither (not a browser) is not a CSRF vector.
fn same_origin(h: &hyper::HeaderMap) -> bool {
    let text = |name: &str| h.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site") {
        return matches!(site, "same-origin" | "none");
    }
    let host = text("host").unwrap_or("");
    match text("origin") {
        None => true,
        Some(o) => o.split_once("://").map(|(_, rest)| rest) == Some(host),
    }
}

async fn read_form(req: Request<Incoming>) -> Result<Vec<(String, String)>, ConsoleError> {
    let body = crate::http::read_body(
        req.into_body(),
        MAX_FORM,
        std::time::Duration::from_secs(10),
    )
    .await
    .map_err(|e| ConsoleError::BadRequest(format!("the form could not be read: {e}")))?;
    Ok(query::pairs(&body))
}

fn secure_headers(r: &mut HttpResponse) {
    let h = r.headers_mut();
    for (k, v) in [
        ("content-security-policy", CSP),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "same-origin"),
        ("cache-control", "no-store"),
    ] {
        h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
    }
}

fn respond(status: u16, ctype: &'static str, body: Bytes) -> HttpResponse {
    let mut r = hyper::Response::new(Body::Full(Full::new(body)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut()
        .insert(hyper::header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    secure_headers(&mut r);
    r
}

fn html(status: u16, m: Markup) -> HttpResponse {
    respond(
        status,
        "text/html; charset=utf-8",
        Bytes::from(m.into_string()),
    )
}

fn asset(ctype: &'static str, text: &'static str) -> HttpResponse {
    respond(200, ctype, Bytes::from_static(text.as_bytes()))
}

fn redirect(to: &str, cookie: Option<String>) -> HttpResponse {
    let mut r = respond(303, "text/plain; charset=utf-8", Bytes::new());
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(hyper::header::LOCATION, v);
    }
    if let Some(v) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        r.headers_mut().insert(hyper::header::SET_COOKIE, v);
    }
    r
}
