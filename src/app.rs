//! The transport-free core both endpoints call: the tool registry, the store, the key
//! table and nonce set, the per-client limits and the clock, and the three things a
//! verified call can do: be admitted ([`App::authenticate`], [`App::admit_nonce`],
//! [`App::admit_call`]), run a sync tool ([`App::call_sync`]) or store a job
//! ([`App::enqueue_job`]).
//!
//! It must not know HTTP, envelopes on the wire or JSON-RPC: `v1` and `mcp` turn requests
//! into these calls and their outcomes into answers. It must not run jobs (`worker` does).

use crate::store::fault::call_error;
use std::sync::Arc;

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::audit::writer::{Auditor, CallFacts};
use crate::auth::{Authenticator, NonceRecord};
use crate::clock::Clock;
use crate::config::{ConfigError, Settings};
use crate::envelope::{CallError, ClientId, Envelope};
use crate::jobs::{FlowBounds, JobId, JobOptions};
use crate::json::{Json, Object};
use crate::limits::{ClientLimits, RetryAfterMs};
use crate::store::{Enqueued, NewJob, Store, StoreError};
use crate::tools::runner::InputRound;
use crate::tools::upstream::Upstreams;
use crate::tools::{
    CallCtx, JobTool, LogSink, Registry, Reply, ServerInfo, SharedRegistry, SyncTool,
};

/// Everything a verified call needs, shared by every connection of every transport.
/// How a job came to be enqueued, beyond its tool, client and arguments.
#[derive(Debug, Clone, Default)]
pub struct JobCall {
    /// The signed envelope's nonce, committed with the job.
    pub nonce: Option<NonceRecord>,
    /// Answers given before the job existed (a tool's declared `ask`).
    pub answers: Option<String>,
    pub opts: JobOptions,
    /// An idempotency key overriding the arguments' (a schedule's tick).
    pub key: Option<String>,
    /// For the audit record: the endpoint (`v1`, `mcp`; empty: a schedule's tick) and the
    /// request's id.
    pub via: &'static str,
    pub request_id: String,
}

pub struct App {
    auth: Authenticator,
    /// Swapped whole by a reload; shared with the embedded worker.
    registry: SharedRegistry,
    store: Arc<dyn Store>,
    info: ArcSwap<ServerInfo>,
    window_ms: i64,
    max_body: usize,
    max_attempts: u32,
    clock: Arc<dyn Clock>,
    /// Wakes embedded workers when a job is enqueued.
    job_added: Arc<Notify>,
    /// Count admitted calls per client (`metrics.client_labels`).
    client_labels: bool,
    limits: ClientLimits,
    retention_ms: u64,
    /// `[jobs]` priorities and schedules (docs/FLOW.md); a client's own maximum comes
    /// from its key table.
    flow: FlowBounds,
    /// The clients' webhook allowlists and default callbacks (docs/WEBHOOKS.md); swapped by
    /// a reload.
    webhooks: ArcSwap<crate::config::webhooks::WebhookSettings>,
    /// The audit trail's writer (docs/AUDIT.md).
    audit: Arc<Auditor>,
    /// This daemon's sessions with `[upstreams]` (docs/UPSTREAMS.md).
    upstreams: Upstreams,
    /// The settings last applied: a change of an upstream's listing rebuilds the tools
    /// from them.
    settings: std::sync::Mutex<Arc<Settings>>,
}

impl App {
    /// The core for `settings` over an opened store. Live nonces are not restored here:
    /// see [`App::restore_nonces`].
    pub fn new(
        settings: &Settings,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
    ) -> Result<App, ConfigError> {
        let auth = Authenticator::new(
            settings.server.id.clone(),
            settings.server.timestamp_window_ms,
            settings.clients.clone(),
        );
        let upstreams = Upstreams::new(CancellationToken::new());
        let registry = Registry::build(settings, Some(&upstreams))?;
        let fingerprint =
            hex::encode(Sha256::digest(settings.server.secret.expose()))[..16].to_string();
        let info = ServerInfo {
            server_id: settings.server.id.clone(),
            fingerprint,
            capabilities: registry.capabilities(
                settings.server.timestamp_window_ms,
                settings.server.max_body_bytes,
            ),
        };
        let audit = Arc::new(Auditor::new(&settings.audit, store.clone()));
        Ok(App {
            audit,
            auth,
            registry: Arc::new(ArcSwap::from_pointee(registry)),
            store,
            info: ArcSwap::from_pointee(info),
            window_ms: settings.server.timestamp_window_ms,
            max_body: settings.server.max_body_bytes,
            max_attempts: settings.jobs.max_attempts,
            clock,
            job_added: Arc::new(Notify::new()),
            client_labels: settings.metrics.client_labels,
            limits: ClientLimits::new(&settings.limits),
            retention_ms: settings.jobs.retention_secs.saturating_mul(1000),
            flow: FlowBounds {
                aging_ms: (settings.jobs.aging_secs as i64).saturating_mul(1000),
                client_max_priority: settings.jobs.client_max_priority,
                max_delay_ms: (settings.jobs.max_delay_secs as i64).saturating_mul(1000),
            },
            webhooks: ArcSwap::from_pointee(settings.webhooks.clone()),
            upstreams,
            settings: std::sync::Mutex::new(Arc::new(settings.clone())),
        })
    }

    /// Connects to the configured upstreams, waits up to `wait` for their tools (one that
    /// is down does not hold the start up), and from then on keeps the tools following
    /// their listings.
    pub async fn start_upstreams(self: &Arc<Self>, wait: std::time::Duration) {
        let defs = self.settings().upstreams.clone();
        if !defs.is_empty() {
            self.upstreams.apply(&defs, wait).await;
            self.refresh_tools();
        }
        let app = Arc::downgrade(self);
        tokio::spawn(self.upstreams.clone().follow(move || {
            if let Some(app) = app.upgrade() {
                app.refresh_tools();
            }
        }));
    }

    /// This daemon's upstreams (their health, for stats and readiness).
    pub fn upstreams(&self) -> &Upstreams {
        &self.upstreams
    }

    fn settings(&self) -> Arc<Settings> {
        self.settings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Rebuilds the tools from the settings last applied and the upstreams' listings.
    fn refresh_tools(&self) {
        let settings = self.settings();
        match Registry::build(&settings, Some(&self.upstreams)) {
            Ok(registry) => self.install(registry),
            Err(e) => {
                tracing::error!(error = %e, "tools not rebuilt after an upstream's listing changed")
            }
        }
    }

    fn install(&self, registry: Registry) {
        let old = self.info.load();
        let info = ServerInfo {
            server_id: old.server_id.clone(),
            fingerprint: old.fingerprint.clone(),
            capabilities: registry.capabilities(self.window_ms, self.max_body),
        };
        self.registry.store(Arc::new(registry));
        self.info.store(Arc::new(info));
    }

    /// When the store is this daemon's alone, its nonce set is the whole truth, so it must
    /// hold every nonce still live. (A shared store decides each nonce itself.)
    pub async fn restore_nonces(&self) -> Result<(), StoreError> {
        if !self.store.shares_nonces() {
            let live = self.store.live_nonces(self.clock.now_ms()).await?;
            tracing::info!(nonces = live.len(), "restored live nonces");
            self.auth.nonces().preload(live);
        }
        Ok(())
    }

    /// The current tools (a reload swaps them between calls, never during one).
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.load_full()
    }
    /// The swappable registry itself, for the embedded worker to follow reloads.
    pub fn shared_registry(&self) -> SharedRegistry {
        self.registry.clone()
    }
    /// The current tools without taking a reference count (one call's worth).
    pub fn tools(&self) -> arc_swap::Guard<Arc<Registry>> {
        self.registry.load()
    }
    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }
    pub fn server_id(&self) -> String {
        self.info.load().server_id.clone()
    }
    /// How long a finished job stays readable (a task's TTL).
    pub fn retention_ms(&self) -> u64 {
        self.retention_ms
    }
    /// The audit trail's writer.
    pub fn audit(&self) -> &Arc<Auditor> {
        &self.audit
    }
    /// Notified on every local enqueue (the embedded worker's wake-up).
    pub fn job_added(&self) -> Arc<Notify> {
        self.job_added.clone()
    }

    /// Checks a signed envelope (version, server id, window, signature, nonce): the
    /// admitted nonce is handed back for persistence.
    pub fn authenticate(&self, env: &Envelope, now: i64) -> Result<NonceRecord, CallError> {
        let nonce = self.auth.check(env, now).inspect_err(|e| {
            metrics::counter!(crate::telemetry::names::AUTH_FAILURES, "reason" => e.code())
                .increment(1);
        })?;
        if self.client_labels {
            // Only once the signature proved the id: a refused caller picks any name.
            metrics::counter!("mcpq_client_calls_total", "client" => env.client_id.0.clone())
                .increment(1);
        }
        Ok(nonce)
    }

    /// Whether `client` sees and may call `tool`: a tool it may not is absent to it, on
    /// both endpoints (`unknown_tool`, `-32602`).
    pub fn may_see(&self, client: &str, tool: &str) -> bool {
        self.auth.may_see(client, tool)
    }

    /// The client a bearer token belongs to.
    pub fn bearer_client(&self, token: &str) -> Option<String> {
        self.auth.bearer(token)
    }

    /// Persists an admitted nonce that no job carries: written behind on a store of our
    /// own, decided by the shared table on a shared one (docs/PROTOCOL.md, "Replay
    /// protection").
    pub async fn admit_nonce(&self, nonce: NonceRecord, now: i64) -> Result<(), CallError> {
        match self.store.admit_nonce(nonce, now).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(CallError::ReplayedNonce),
            Err(e) => Err(self.store_error("nonce commit", e)),
        }
    }

    /// The client's call rate (token bucket).
    pub fn admit_call(&self, client: &str, now: i64) -> Result<(), RetryAfterMs> {
        self.limits.admit_call(client, now)
    }

    /// Runs a sync tool for a verified client (both endpoints).
    pub async fn call_sync(
        &self,
        t: &dyn SyncTool,
        client: &ClientId,
        args: &Object,
        now: i64,
        input: Option<&InputRound>,
        logs: Option<LogSink>,
    ) -> Result<Reply, CallError> {
        let info = self.info.load();
        let ctx = CallCtx {
            client_id: client,
            now_ms: now,
            store: self.store.as_ref(),
            server: &info,
            input,
            logs,
        };
        t.call(ctx, args).await
    }

    /// Validates a job tool's arguments and stores the job durably for a verified client
    /// (both endpoints): the id is returned only once the job is on disk. `answers`: what a
    /// `/mcp` client answered to the tool's declared questions, for its first attempt.
    /// `opts`: the priority and schedule the call asked for (docs/FLOW.md). `request_id`
    /// goes into the call's audit record (a signed call's nonce says it came by `/v1/call`).
    #[allow(clippy::too_many_arguments)]
    pub async fn enqueue_job(
        &self,
        t: &Arc<dyn JobTool>,
        client: &ClientId,
        args: &Object,
        nonce: Option<NonceRecord>,
        now: i64,
        answers: Option<String>,
        opts: &JobOptions,
        request_id: &str,
    ) -> Result<JobId, CallError> {
        let job = JobCall {
            via: if nonce.is_some() { "v1" } else { "mcp" },
            nonce,
            answers,
            opts: opts.clone(),
            key: None,
            request_id: request_id.to_string(),
        };
        Ok(self.enqueue(t, client, args, now, job).await?.id().clone())
    }

    /// A job's idempotency key: the scheduler's tick (`key`), else the call's (its job option
    /// or `start_long_task`'s argument, which must agree), else the tool's dedupe window's.
    #[allow(clippy::too_many_arguments)]
    async fn job_key(
        &self,
        tool: &str,
        client: &ClientId,
        req: &crate::tools::JobRequest,
        opts: &JobOptions,
        key: Option<String>,
        dedupe_ms: Option<i64>,
        now: i64,
    ) -> Result<Option<String>, CallError> {
        if key.is_some() {
            return Ok(key);
        }
        let given = match (&req.idempotency_key, &opts.idempotency_key) {
            (Some(arg), Some(opt)) if arg != opt => {
                return Err(CallError::InvalidArgs(
                    "two different idempotency keys: the arguments' and the job option's".into(),
                ))
            }
            (arg, opt) => arg.clone().or_else(|| opt.clone()),
        };
        match (given, dedupe_ms) {
            (None, Some(window)) => Ok(Some(
                self.dedupe_key(client, tool, &req.args, window, now)
                    .await?,
            )),
            (given, _) => Ok(given),
        }
    }

    /// The idempotency key a call of a tool with a dedupe window takes: a digest of the tool
    /// and its canonical arguments, and the window-sized bucket of `now`. The previous
    /// bucket's key when its job is younger than the window, so that a repeat just after a
    /// bucket boundary still finds the first call's job (and the unique key decides between
    /// concurrent first calls).
    async fn dedupe_key(
        &self,
        client: &ClientId,
        tool: &str,
        args: &Object,
        window: i64,
        now: i64,
    ) -> Result<String, CallError> {
        use sha2::Digest;
        let window = window.max(1);
        let mut h = sha2::Sha256::new();
        h.update(tool.as_bytes());
        h.update([0]);
        h.update(Json::Object(args.clone()).to_canonical().as_bytes());
        let digest = crate::hex::lower(&h.finalize()[..16]);
        let bucket = now.div_euclid(window);
        let previous = format!("dedupe:{digest}:{}", bucket - 1);
        let found = self
            .store
            .job_by_key(client, &previous)
            .await
            .map_err(|e| self.store_error("dedupe lookup", e))?;
        Ok(match found {
            Some((_, created)) if created > now - window => previous,
            _ => format!("dedupe:{digest}:{bucket}"),
        })
    }

    /// [`App::enqueue_job`], saying whether the job is new or the one its idempotency key
    /// already names; `call.key` (the scheduler's tick) takes the place of the arguments'.
    pub async fn enqueue(
        &self,
        t: &Arc<dyn JobTool>,
        client: &ClientId,
        args: &Object,
        now: i64,
        call: JobCall,
    ) -> Result<Enqueued, CallError> {
        let JobCall {
            nonce,
            answers,
            opts,
            key,
            via,
            request_id,
        } = call;
        let opts = &opts;
        let mut req = t.validate(args)?;
        // Refused before anything is counted or written (docs/WEBHOOKS.md).
        let callback = self
            .webhooks
            .load()
            .callback_for(&client.0, opts.callback.as_deref())
            .map_err(CallError::CallbackNotAllowed)?;
        let policy = t.policy();
        req.idempotency_key = self
            .job_key(t.name(), client, &req, opts, key, policy.dedupe_ms, now)
            .await?;
        let bounds = FlowBounds {
            client_max_priority: self
                .auth
                .max_priority(&client.0)
                .unwrap_or(self.flow.client_max_priority),
            ..self.flow
        };
        let flow = crate::jobs::plan_flow(opts, policy.priority, &bounds, now)
            .map_err(CallError::InvalidArgs)?;
        let ckey = match &policy.per_key {
            None => None,
            Some((key, _)) => Some(
                key.key_of(&client.0, &Json::Object(req.args.clone()).to_serde())
                    .map_err(CallError::InvalidArgs)?,
            ),
        };
        if t.ask_first().is_some() && answers.is_none() {
            return Err(CallError::ToolFailed(
                "input_required: this tool asks its client questions before it runs, which only a \
                 standard MCP client of revision 2026-07-28 can answer (POST /mcp)"
                    .into(),
            ));
        }
        let admitted = self
            .limits
            .admit_job(&client.0, now, self.store.as_ref())
            .await
            .map_err(|e| self.store_error("queue cap count", e))?;
        if let Err(RetryAfterMs(ms)) = admitted {
            return Err(CallError::QueueFull(self.limits.max_queued(), ms));
        }
        let capped = policy.is_capped();
        let audit = self.job_audit(via, client, t.name(), args, now, &request_id);
        let job = NewJob {
            id: JobId::generate(),
            client_id: client.clone(),
            tool: t.name().to_string(),
            args: Json::Object(req.args).to_canonical(),
            max_attempts: policy.max_attempts.unwrap_or(self.max_attempts),
            idempotency_key: req.idempotency_key,
            nonce,
            created_at: now,
            def: policy.definition,
            on_crash: policy.on_crash,
            capped,
            input_responses: answers,
            priority: flow.priority,
            boost_ms: flow.boost_ms,
            run_at: flow.run_at,
            ckey,
            callback,
            // A sampled call's context goes with its job (docs/TRACING.md).
            trace: crate::otel::current()
                .filter(crate::otel::TraceHeaders::sampled)
                .map(|h| h.to_stored()),
            audit,
        };
        let enqueued = self.commit_job(job).await?;
        metrics::counter!(crate::telemetry::names::JOBS_ENQUEUED, "tool" => t.name().to_string())
            .increment(1);
        tracing::Span::current().record("job_id", tracing::field::display(&enqueued.id().0));
        self.job_added.notify_waiters();
        Ok(enqueued)
    }

    /// Hands `job` to the group commit, its failures as the caller sees them.
    async fn commit_job(&self, job: NewJob) -> Result<Enqueued, CallError> {
        let id = job.id.clone();
        self.store.enqueue(job).await.map_err(|e| match e {
            StoreError::Replayed => CallError::ReplayedNonce,
            // Committed, but whether it reached the disk is unknown until a restart reads
            // the file: the caller must not assume either way.
            StoreError::NotDurable => self.store_error(
                "enqueue",
                StoreError::OutcomeUnknown(format!(
                    "the commit could not be made durable (a WAL fsync failed), so job {} may \
                     or may not exist once the daemon restarts: poll it before calling again",
                    id.0
                )),
            ),
            e => self.store_error("enqueue", e),
        })
    }

    /// The audit record an accepted job carries into its commit (`None` with audit off).
    fn job_audit(
        &self,
        via: &'static str,
        client: &ClientId,
        tool: &str,
        args: &Object,
        now: i64,
        request_id: &str,
    ) -> Option<Box<crate::audit::Entry>> {
        if !self.audit.enabled() {
            return None;
        }
        let mut canonical = String::new();
        crate::json::write_object_except(args, None, &mut canonical);
        let facts = CallFacts {
            via: if via.is_empty() { "schedule" } else { via },
            client: &client.0,
            tool,
            args: Some(&canonical),
            request_id,
        };
        self.audit.job_entry(now, &facts)
    }

    /// A store failure as the caller sees it: `store_unavailable` when the database cannot
    /// take the call now, else `internal` (the detail goes to the log).
    pub fn store_error(&self, site: &'static str, e: StoreError) -> CallError {
        call_error(self.store.status(), site, e)
    }

    /// Forgets nonces past the window (the maintenance task calls it).
    pub fn prune_nonces(&self, now: i64) {
        self.auth.nonces().prune(now);
    }

    /// Applies a reloaded configuration's client keys and tools. Validates `settings`
    /// completely first; on any error nothing changes. Returns a one-line summary.
    pub fn reload(&self, settings: &Settings) -> Result<String, ConfigError> {
        let outcome = self.apply_reload(settings);
        let now = self.now_ms();
        match &outcome {
            Ok(summary) => self.audit.reload(now, "ok", summary),
            Err(e) => self.audit.reload(now, "refused", &e.to_string()),
        }
        outcome
    }

    fn apply_reload(&self, settings: &Settings) -> Result<String, ConfigError> {
        settings.check_safe_to_serve()?;
        let registry = Registry::build(settings, Some(&self.upstreams))?;
        let summary = format!(
            "{} clients, {} tools",
            settings.clients.len(),
            registry.iter().count()
        );
        self.auth.set_clients(settings.clients.clone());
        self.webhooks.store(Arc::new(settings.webhooks.clone()));
        *self.settings.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(settings.clone());
        self.install(registry);
        // Upstreams added, changed or removed connect (or stop) in the background, and
        // unchanged ones list their tools again; the tools follow their listings.
        let (ups, defs) = (self.upstreams.clone(), settings.upstreams.clone());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { ups.apply(&defs, std::time::Duration::ZERO).await });
        }
        Ok(summary)
    }
}
