//! One initialized client session with an upstream MCP server, through rmcp's client: a
//! stdio server process started under the command tools' rules (cleared environment, its
//! own process group, no inherited descriptors, a working directory), or a streamable-HTTP
//! connection with the upstream's static headers.
//!
//! Owns connecting, the handler of what the server sends unasked (progress, log messages,
//! `tools/list_changed`, questions during a call), and ending a session (its process group is killed when the
//! session is dropped). It must not decide when to reconnect ([`super::Upstream`] does) or
//! what a call's result means ([`super::call`]).

use std::collections::HashMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[allow(deprecated)]
use rmcp::model::{
    ClientCapabilities, ClientConfig, CreateMessageRequestParams, CreateMessageResult,
    ElicitRequestParams, ElicitResult, ElicitationCapability, FormElicitationCapability,
    Implementation, LoggingMessageNotificationParam, ProgressNotificationParam, ProgressToken,
    ProtocolVersion, SamplingCapability, TASKS_EXTENSION_ID,
};
use rmcp::service::ClientLifecycleMode;
use rmcp::service::RequestContext;
use rmcp::service::{NotificationContext, RunningService};
use rmcp::ErrorData as McpError;
use rmcp::{ClientHandler, ClientServiceExt, RoleClient};
use tokio::io::AsyncBufReadExt;
use tokio::sync::{mpsc, oneshot, Notify};

use super::asking::Question;
use crate::config::upstreams::{Revision, Transport, UpstreamDef};
use crate::json::{Json, Object};
use crate::tools::runner::spawn;
use crate::tools::JobCtx;

/// The calls in flight on a session, by the progress token rmcp gave each: where its
/// progress and log messages go, and where a question the upstream asks during it goes
/// (`asking`).
#[derive(Default)]
pub struct Calls {
    by_token: Mutex<HashMap<ProgressToken, InCall>>,
}

/// Questions one call's upstream may have waiting at once (it normally asks one at a time);
/// beyond it a question is refused, so an upstream cannot pile them up in mcpq's memory.
pub const QUESTIONS_PER_CALL: usize = 16;

struct InCall {
    ctx: JobCtx,
    questions: Option<mpsc::Sender<Question>>,
    /// Waiting for mcpq's client to answer a question (parked).
    parked: bool,
}

impl Calls {
    /// A call in flight; the questions its upstream asks during it go to `questions`.
    pub fn add(
        &self,
        token: ProgressToken,
        ctx: JobCtx,
        questions: Option<mpsc::Sender<Question>>,
    ) {
        self.lock().insert(
            token,
            InCall {
                ctx,
                questions,
                parked: false,
            },
        );
    }
    pub fn remove(&self, token: &ProgressToken) {
        self.lock().remove(token);
    }
    /// Marks a call parked, or resumed by the attempt `ctx` (progress goes there now).
    pub fn set_parked(&self, token: &ProgressToken, parked: bool, ctx: Option<JobCtx>) {
        if let Some(c) = self.lock().get_mut(token) {
            c.parked = parked;
            if let Some(ctx) = ctx {
                c.ctx = ctx;
            }
        }
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ProgressToken, InCall>> {
        self.by_token.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn get(&self, token: &ProgressToken) -> Option<JobCtx> {
        self.lock().get(token).map(|c| c.ctx.clone())
    }
    /// Every call in flight on this session (log messages name no call).
    fn all(&self) -> Vec<JobCtx> {
        self.lock().values().map(|c| c.ctx.clone()).collect()
    }
    /// The upstream's progress notification, made the progress of the call it names.
    pub fn progress(&self, params: ProgressNotificationParam) {
        let Some(ctx) = self.get(&params.progress_token) else {
            return;
        };
        let mut p = Object::new();
        // mcpq's progress is a fraction; the upstream's own figures travel beside it.
        if let Some(total) = params.total.filter(|t| *t > 0.0) {
            p.insert(
                "progress".into(),
                Json::Float((params.progress / total).clamp(0.0, 1.0)),
            );
            p.insert("total".into(), Json::Float(total));
        }
        p.insert("step".into(), Json::Float(params.progress));
        if let Some(m) = params.message {
            p.insert("message".into(), Json::Str(m));
        }
        ctx.report_progress(p);
    }
    /// The upstream's log message, forwarded to every call in flight (it names none).
    // Logging is deprecated in the 2026 revision, but 2025 servers still send it.
    #[allow(deprecated)]
    pub fn log(&self, params: LoggingMessageNotificationParam) {
        let Ok(serde_json::Value::Object(m)) = serde_json::to_value(&params) else {
            return;
        };
        let Json::Object(message) = Json::from_serde(&serde_json::Value::Object(m)) else {
            return;
        };
        for ctx in self.all() {
            ctx.log(message.clone());
        }
    }
    /// Where a question the upstream sent goes: the one call in flight that is not
    /// parked, else the one parked call (asking again). The wire does not say which call
    /// asks, so any other case is refused, not guessed.
    fn asker(&self) -> Result<mpsc::Sender<Question>, String> {
        let calls = self.lock();
        let pick = |parked: bool| -> Vec<&InCall> {
            calls.values().filter(|c| c.parked == parked).collect()
        };
        let (running, waiting) = (pick(false), pick(true));
        let one = match (running.as_slice(), waiting.as_slice()) {
            ([one], _) | ([], [one]) => one,
            ([], []) => return Err("mcpq has no call in flight on this session".into()),
            _ => {
                return Err(format!(
                    "mcpq cannot tell which of its {} calls on this session asks (give the upstream a larger pool, docs/UPSTREAMS.md)",
                    calls.len()
                ))
            }
        };
        one.questions
            .clone()
            .ok_or_else(|| "this call cannot relay questions to mcpq's client".to_string())
    }
    /// Sends the upstream's `method` request to the call it belongs to and waits for mcpq's
    /// client's answer, as that request's result type.
    async fn relay<R: serde::de::DeserializeOwned>(
        &self,
        method: &'static str,
        params: &impl serde::Serialize,
    ) -> Result<R, McpError> {
        let refused = |why: String| McpError::internal_error(why, None);
        let params = serde_json::to_value(params)
            .map_err(|e| McpError::invalid_params(e.to_string(), None))?;
        let to = self.asker().map_err(refused)?;
        let (tx, rx) = oneshot::channel();
        to.try_send(Question {
            method,
            params,
            answer: tx,
        })
        .map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => refused(format!(
                "the call already has {QUESTIONS_PER_CALL} questions waiting for mcpq's client"
            )),
            mpsc::error::TrySendError::Closed(_) => refused("the call that asked has ended".into()),
        })?;
        match rx.await {
            Ok(Ok(answer)) => serde_json::from_value(answer).map_err(|e| {
                refused(format!(
                    "mcpq's client answered {method} with no result of it: {e}"
                ))
            }),
            Ok(Err(why)) => Err(refused(why)),
            Err(_) => Err(refused(
                "the call that asked ended before mcpq's client answered".into(),
            )),
        }
    }
}

/// What the session's handler shares with the rest of the upstream.
pub struct Handler {
    pub upstream: String,
    pub calls: Arc<Calls>,
    /// Woken by `notifications/tools/list_changed`.
    pub relist: Arc<Notify>,
    /// The revision the session is to speak (the version `initialize` names).
    pub revision: Revision,
}

/// What mcpq tells an upstream of itself: its name and what it can answer.
pub fn client_config() -> ClientConfig {
    // The tasks extension: a server that has it may answer a long call with a task,
    // which a job's attempt keeps and a lost worker's successor resumes (task.rs).
    let mut capabilities = ClientCapabilities::default();
    // Elicitation and sampling: an upstream's questions during a call are relayed to
    // mcpq's client (asking.rs); servers list tools that need them only to a client
    // that has them.
    let mut elicitation = ElicitationCapability::default();
    elicitation.form = Some(FormElicitationCapability::default());
    capabilities.elicitation = Some(elicitation);
    capabilities.sampling = Some(SamplingCapability::default());
    capabilities.extensions = Some(
        [(TASKS_EXTENSION_ID.to_string(), Default::default())]
            .into_iter()
            .collect(),
    );
    ClientConfig::new(
        capabilities,
        Implementation::new("mcpq", env!("CARGO_PKG_VERSION")),
    )
}

impl ClientHandler for Handler {
    fn get_info(&self) -> ClientConfig {
        let config = client_config();
        match self.revision {
            Revision::V2025 => config.with_protocol_version(ProtocolVersion::V_2025_11_25),
            Revision::Newest | Revision::V2026 => config,
        }
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.calls.progress(params);
    }

    // Logging is deprecated in the 2026 revision, but 2025 servers still send it.
    #[allow(deprecated)]
    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.calls.log(params);
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, McpError> {
        self.calls.relay("elicitation/create", &request).await
    }

    // Sampling is deprecated in the 2026 revision, but 2025 servers still ask for it.
    #[allow(deprecated)]
    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, McpError> {
        self.calls.relay("sampling/createMessage", &params).await
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        tracing::info!(upstream = %self.upstream, "upstream says its tools changed");
        self.relist.notify_one();
    }
}

/// A live session: rmcp's service, and for a stdio server its process (killed with its
/// group when this drops).
pub struct Session {
    pub service: RunningService<RoleClient, Handler>,
    pub child: Option<spawn::Child>,
}

/// Connects and initializes, within `limit`.
pub async fn connect(
    def: &UpstreamDef,
    handler: Handler,
    limit: Duration,
) -> Result<Session, String> {
    match tokio::time::timeout(limit, connect_inner(def, handler)).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "no initialized session within {} s",
            limit.as_secs()
        )),
    }
}

async fn connect_inner(def: &UpstreamDef, handler: Handler) -> Result<Session, String> {
    match &def.transport {
        Transport::Stdio {
            argv,
            env,
            working_dir,
            ..
        } => {
            let path = env
                .get("PATH")
                .cloned()
                .or_else(|| std::env::var("PATH").ok());
            let program = spawn::find_program(&argv[0], path.as_deref())
                .map_err(|e| format!("{}: {e}", argv[0]))?;
            let argv_c: Vec<CString> = argv
                .iter()
                .filter_map(|a| CString::new(a.as_str()).ok())
                .collect();
            let envp: Vec<CString> = env
                .iter()
                .filter_map(|(k, v)| CString::new(format!("{k}={v}")).ok())
                .collect();
            let cwd = CString::new(working_dir.as_os_str().as_bytes())
                .map_err(|e| format!("working_dir: {e}"))?;
            let (child, pipes) = spawn::spawn(&spawn::Spec {
                program: &program,
                argv: &argv_c,
                envp: &envp,
                cwd: &cwd,
            })
            .map_err(|e| format!("spawn {}: {e}", argv[0]))?;
            tokio::spawn(forward_stderr(def.name.clone(), pipes.stderr));
            drop(pipes.progress);
            let service = handler
                .serve_with_lifecycle((pipes.stdout, pipes.stdin), lifecycle(def.revision))
                .await
                .map_err(|e| format!("initialize: {e}"))?;
            Ok(Session {
                service,
                child: Some(child),
            })
        }
        Transport::Http {
            url,
            headers,
            connect_timeout,
        } => {
            let mut h = reqwest::header::HeaderMap::new();
            for (k, v) in headers {
                let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
                    .map_err(|e| format!("header {k}: {e}"))?;
                let mut value = reqwest::header::HeaderValue::from_bytes(v.expose())
                    .map_err(|e| format!("header {k}: {e}"))?;
                value.set_sensitive(true);
                h.insert(name, value);
            }
            let client = reqwest::Client::builder()
                .default_headers(h)
                .connect_timeout(*connect_timeout)
                .build()
                .map_err(|e| format!("http client: {e}"))?;
            let config = rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(
                url.as_str(),
            );
            let transport =
                rmcp::transport::StreamableHttpClientTransport::with_client(client, config);
            let service = handler
                .serve_with_lifecycle(transport, lifecycle(def.revision))
                .await
                .map_err(|e| format!("initialize: {e}"))?;
            Ok(Session {
                service,
                child: None,
            })
        }
    }
}

/// On a 2026-07-28 session, where a server sends `notifications/tools/list_changed` only
/// on a `subscriptions/listen` stream: listens for it until `end`, waking `relist`. A 2025
/// session gets it unasked (the handler's `on_tool_list_changed`).
pub fn listen_for_changes(
    peer: rmcp::Peer<RoleClient>,
    upstream: String,
    relist: Arc<Notify>,
    end: tokio_util::sync::CancellationToken,
) {
    let modern = peer
        .peer_info()
        .is_some_and(|i| i.protocol_version >= rmcp::model::ProtocolVersion::V_2026_07_28);
    if !modern {
        return;
    }
    tokio::spawn(async move {
        let filter = rmcp::model::SubscriptionFilter::builder()
            .tools_list_changed()
            .build();
        let mut sub = match tokio::select! {
            s = peer.listen(filter) => s,
            _ = end.cancelled() => return,
        } {
            Ok(s) => s,
            Err(e) => {
                tracing::info!(upstream = %upstream, "the upstream offers no subscriptions/listen ({e}); its tools are listed again on reconnect and SIGHUP");
                return;
            }
        };
        loop {
            let next = tokio::select! {
                n = sub.next() => n,
                _ = end.cancelled() => return,
            };
            match next {
                Ok(Some(rmcp::model::ServerNotification::ToolListChangedNotification(_))) => {
                    tracing::info!(upstream = %upstream, "upstream says its tools changed");
                    relist.notify_one();
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return,
            }
        }
    });
}

/// By default the newest revision the server speaks: `server/discover` for 2026-07-28
/// (where the tasks extension lives), else the 2025 `initialize` handshake. A pinned
/// revision takes only its own handshake.
fn lifecycle(revision: Revision) -> ClientLifecycleMode {
    let modern = vec![ProtocolVersion::V_2026_07_28];
    match revision {
        Revision::Newest => ClientLifecycleMode::Auto {
            preferred_versions: modern,
            legacy_version: None,
        },
        Revision::V2026 => ClientLifecycleMode::Discover {
            preferred_versions: modern,
        },
        Revision::V2025 => ClientLifecycleMode::Initialize,
    }
}

/// A stdio server's stderr as log lines of this process (it is the server's own log).
async fn forward_stderr(upstream: String, stderr: tokio::net::unix::pipe::Receiver) {
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let line: String = line.chars().take(2000).collect();
        tracing::debug!(upstream = %upstream, "stderr: {line}");
    }
}
