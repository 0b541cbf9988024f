//! The `mcpq` command line: parses arguments, sets up logging and the runtime,
//! and calls into the library. No behaviour lives here beyond wiring.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use rand::RngCore;
use tokio_util::sync::CancellationToken;

use crate::clock::SystemClock;
use crate::config::{ClientSettings, Secret, Settings};
use crate::json::{self, Json, Object};
use crate::server::Server;
use crate::store::bench::DrainBench;
use crate::store::open::AnyStore;
use crate::tools::Registry;
use crate::worker::{self, WorkerOptions};

#[derive(Parser)]
#[command(
    name = "mcpq",
    version,
    about = "Signed, durable tool-call daemon for agent workflows"
)]
struct Cli {
    /// Configuration file layered over the built-in defaults (config/default.toml).
    #[arg(long, global = true, env = "MCPQ_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP daemon (applies migrations first).
    Serve,
    /// Run a stateless job worker against the configured database.
    Worker {
        /// Jobs run at once (overrides worker.concurrency).
        #[arg(long)]
        concurrency: Option<usize>,
    },
    /// Sign and send one call, verify the response signature, print the response.
    Call {
        tool: String,
        /// Arguments as a JSON object.
        #[arg(default_value = "{}")]
        args: String,
        #[command(flatten)]
        target: Target,
    },
    /// Key management.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Configuration: `mcpq config check` validates it (exit 0, or 1 with the error) and
    /// prints the effective configuration with every secret redacted.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Inspect and repair jobs (any client's), straight on the database; safe while the
    /// daemon and workers run. Exit 3: no such job; 4: the job is not in a state the
    /// command applies to.
    Jobs {
        #[command(subcommand)]
        command: crate::admin::JobsCommand,
    },
    /// Queue depth by state and tool, oldest wait, running per worker, last minute's
    /// throughput.
    Stats {
        /// JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// A consistent copy of the database, taken while everything runs (never overwrites).
    Backup { path: PathBuf },
    /// Load generators (see BENCHMARKS.md).
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Moving between stores (SQLite, PostgreSQL).
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Copy every job and live nonce from one store to another, empty one (e.g. SQLite to
    /// PostgreSQL). Stop every daemon and worker using either store first. Each store is a
    /// database URL (`sqlite://PATH` or `postgres://…`); `[postgres]` settings apply to both.
    Copy {
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the configuration (and every tool's schema) and print it, secrets redacted.
    Check,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Print a new random 32-byte secret, hex-encoded.
    New,
    /// Print a new `/mcp` bearer token and, on a second line, its SHA-256 for
    /// `[clients.ID] token_sha256` (the daemon stores only the hash).
    Token,
}

#[derive(Args, Clone)]
struct Target {
    /// Server URL (default: client.url from the config).
    #[arg(long)]
    url: Option<String>,
    #[arg(long)]
    client_id: Option<String>,
    /// The client's secret (default: client.secret from the config).
    #[arg(long, env = "MCPQ_CLIENT_SECRET", hide_env_values = true)]
    client_secret: Option<String>,
    #[arg(long)]
    server_id: Option<String>,
    /// The server's secret, to verify responses (default: client.server_secret).
    #[arg(long, env = "MCPQ_SERVER_SECRET", hide_env_values = true)]
    server_secret: Option<String>,
}

impl Target {
    fn apply(&self, mut c: ClientSettings) -> ClientSettings {
        if let Some(u) = &self.url {
            c.url = u.clone();
        }
        if let Some(v) = &self.client_id {
            c.client_id = v.clone();
        }
        if let Some(v) = &self.client_secret {
            c.secret = Secret::new(v.as_bytes().to_vec());
        }
        if let Some(v) = &self.server_id {
            c.server_id = v.clone();
        }
        if let Some(v) = &self.server_secret {
            c.server_secret = Secret::new(v.as_bytes().to_vec());
        }
        c
    }
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Closed-loop load of a synchronous tool.
    Sync {
        #[command(flatten)]
        target: Target,
        /// Concurrent connections.
        #[arg(short = 'c', default_value_t = 32)]
        connections: usize,
        /// Duration in seconds.
        #[arg(short = 'd', default_value_t = 10)]
        duration: u64,
        #[arg(long, default_value = "batch_sum")]
        tool: String,
        #[arg(long, default_value = r#"{"numbers":[1,2,3]}"#)]
        args: String,
    },
    /// Closed-loop `tools/call` over standard MCP (2025-11-25 wire, no session) against
    /// any MCP server's endpoint: mcpq's `/mcp` or a peer's.
    Mcp {
        /// The endpoint, e.g. http://127.0.0.1:8787/mcp.
        #[arg(long)]
        endpoint: String,
        /// Bearer token (mcpq's development token by default; "" for none).
        #[arg(long, default_value = crate::config::DEV_TOKEN)]
        token: String,
        #[arg(short = 'c', default_value_t = 32)]
        connections: usize,
        #[arg(short = 'd', default_value_t = 10)]
        duration: u64,
        #[arg(long, default_value = "batch_sum")]
        tool: String,
        #[arg(long, default_value = r#"{"numbers":[1,2,3]}"#)]
        args: String,
        /// Ask for a task (2026-07-28 tasks extension) instead of a call: measures durable
        /// task creation.
        #[arg(long)]
        task: bool,
    },
    /// Closed-loop durable enqueues (each answered only after its commit).
    Enqueue {
        #[command(flatten)]
        target: Target,
        #[arg(short = 'c', default_value_t = 32)]
        connections: usize,
        #[arg(short = 'd', default_value_t = 10)]
        duration: u64,
        #[arg(long, default_value = "start_long_task")]
        tool: String,
        #[arg(long, default_value = r#"{"seconds":1}"#)]
        args: String,
    },
    /// Enqueue N jobs, then poll each until done; reports jobs/s from first enqueue to last done.
    E2e {
        #[command(flatten)]
        target: Target,
        #[arg(short = 'c', default_value_t = 32)]
        connections: usize,
        #[arg(short = 'n', default_value_t = 20000)]
        jobs: usize,
        #[arg(long, default_value = "start_long_task")]
        tool: String,
        #[arg(long, default_value = r#"{"seconds":1}"#)]
        args: String,
        /// First poll of a job no sooner than this after its enqueue [default: the job's
        /// `seconds` argument, as a client that asked for that duration would wait; else 0]
        #[arg(long, value_name = "MS")]
        first_poll_after: Option<u64>,
        /// Poll a job that is not done yet again after this long.
        #[arg(long, value_name = "MS", default_value_t = crate::bench::REPOLL.as_millis() as u64)]
        repoll: u64,
    },
    /// Fill the configured database with N no-op jobs, start W `mcpq worker` processes, time the drain.
    Drain {
        #[arg(short = 'n', default_value_t = 20000)]
        jobs: usize,
        #[arg(short = 'w', long, default_value_t = 2)]
        workers: usize,
        /// Afterwards, delete the finished jobs with the retention code (batched), as
        /// production does: repeated runs then measure a table after churn.
        #[arg(long)]
        prune_after: bool,
    },
}

/// Entry point for `main.rs`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Keys { command } = &cli.command {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        let key = hex::encode(key);
        println!("{key}");
        if let KeysCommand::Token = command {
            use sha2::Digest;
            println!("{}", hex::encode(sha2::Sha256::digest(key.as_bytes())));
        }
        return ExitCode::SUCCESS;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// How a command reads its settings.
type Loader = fn(Option<&std::path::Path>) -> Result<Settings, crate::config::ConfigError>;

impl Command {
    /// Only commands that sign or verify read secrets: a worker (its unit loads no
    /// credentials) and the operator's store commands run without them.
    fn loader(&self) -> Loader {
        match self {
            Command::Serve
            | Command::Call { .. }
            | Command::Bench { .. }
            | Command::Config { .. } => Settings::load,
            Command::Worker { .. }
            | Command::Migrate
            | Command::Keys { .. }
            | Command::Jobs { .. }
            | Command::Stats { .. }
            | Command::Store { .. }
            | Command::Backup { .. } => Settings::load_without_secrets,
        }
    }
}

type AnyError = Box<dyn std::error::Error + Send + Sync>;

fn parse_args(text: &str) -> Result<Object, AnyError> {
    match json::parse(text.as_bytes())? {
        Json::Object(o) => Ok(o),
        other => Err(format!("ARGS must be a JSON object, got {}", other.type_name()).into()),
    }
}

/// Cancels the token on SIGINT or SIGTERM.
///
/// Both handlers are registered before this returns, so callers must call it before they
/// announce readiness: a SIGTERM that lands between "listening on" and a lazily spawned
/// registration would take the default action and kill the process mid-write.
fn shutdown_on_signals() -> Result<CancellationToken, AnyError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term =
        signal(SignalKind::terminate()).map_err(|e| format!("cannot handle SIGTERM: {e}"))?;
    let mut int =
        signal(SignalKind::interrupt()).map_err(|e| format!("cannot handle SIGINT: {e}"))?;
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutdown requested");
        t.cancel();
    });
    Ok(token)
}

/// Tells systemd (when it supervises us) that we are ready, keeps its watchdog fed while
/// `check` passes, and says STOPPING once `stop` fires.
fn service_lifecycle(stop: &CancellationToken, check: crate::service::Check, status: String) {
    crate::service::ready(&status);
    let watchdog_stop = stop.child_token();
    tokio::spawn(crate::service::watchdog(check, watchdog_stop));
    let stop = stop.clone();
    tokio::spawn(async move {
        stop.cancelled().await;
        crate::service::stopping();
    });
}

/// On SIGHUP, re-reads the configuration and hands it to `apply`; a configuration that
/// does not load or apply is refused and the running one stays.
///
/// Registered before the caller announces readiness: SIGHUP's default action ends the
/// process.
fn reload_on_sighup(
    config: Option<PathBuf>,
    loader: Loader,
    apply: impl Fn(Settings) -> Result<String, String> + Send + 'static,
) -> Result<(), AnyError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).map_err(|e| format!("cannot handle SIGHUP: {e}"))?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            crate::service::reloading();
            let outcome = loader(config.as_deref())
                .map_err(|e| e.to_string())
                .and_then(&apply);
            match outcome {
                Ok(summary) => {
                    tracing::info!(%summary, "configuration reloaded");
                    crate::service::ready(&format!("configuration reloaded: {summary}"));
                }
                Err(e) => {
                    tracing::error!(
                        error = %e,
                        "reload refused: the new configuration is invalid; the running one stays"
                    );
                    crate::service::ready(&format!(
                        "reload refused (running configuration kept): {e}"
                    ));
                }
            }
        }
    });
    Ok(())
}

async fn run(cli: Cli) -> Result<ExitCode, AnyError> {
    if let Command::Config {
        command: ConfigCommand::Check,
    } = &cli.command
    {
        let effective = Settings::effective_toml(cli.config.as_deref())?;
        // Tools too: every schema must compile, every runner build.
        Registry::from_settings(&Settings::load(cli.config.as_deref())?)?;
        print!("{effective}");
        return Ok(ExitCode::SUCCESS);
    }
    let loader = cli.command.loader();
    let settings = loader(cli.config.as_deref())?;
    crate::logging::init(&settings.log);
    match cli.command {
        Command::Serve => {
            let settings_metrics = settings.metrics.clone();
            let server = Server::build(settings).await?;
            let stop = shutdown_on_signals()?;
            let reloader = server.reloader();
            let addr = server.local_addr();
            reload_on_sighup(cli.config.clone(), loader, move |s| {
                reloader.reload(&s).map_err(|e| e.to_string())
            })?;
            if let Some(at) = settings_metrics.listen {
                let (bound, _) = crate::telemetry::serve(at, server.scrape(), stop.clone()).await?;
                // Before "listening on": tests and scripts read that line last.
                println!("metrics on {bound}");
            }
            service_lifecycle(&stop, server.health_check(), format!("serving on {addr}"));
            // Tests and scripts read this line to find the port when listening on port 0.
            println!("listening on {addr}");
            server.run_until_stopped(stop).await?;
        }
        Command::Worker { concurrency } => {
            let mut opts = WorkerOptions::from_settings(&settings, 1);
            if let Some(c) = concurrency {
                opts.concurrency = c.max(1);
            }
            let any = crate::store::open::open(&settings).await?;
            let store = any.store();
            let registry: crate::tools::SharedRegistry = Arc::new(arc_swap::ArcSwap::from_pointee(
                Registry::from_settings(&settings)?,
            ));
            let stop = shutdown_on_signals()?;
            let shared = registry.clone();
            reload_on_sighup(cli.config.clone(), loader, move |s| {
                let r = Registry::from_settings(&s).map_err(|e| e.to_string())?;
                let summary = format!("{} tools", r.iter().count());
                shared.store(Arc::new(r));
                Ok(summary)
            })?;
            let maint_stop = CancellationToken::new();
            let maint = tokio::spawn(worker::maintenance(
                store.clone(),
                Arc::new(|_| {}),
                settings.jobs.clone(),
                Arc::new(SystemClock),
                maint_stop.clone(),
            ));
            // Ready once the database answers a read (the first claim can be made).
            store.has_due_jobs(0).await?;
            let health_store = store.clone();
            let worker_id = opts.id.clone();
            service_lifecycle(
                &stop,
                Box::new(move || {
                    let store = health_store.clone();
                    let worker_id = worker_id.clone();
                    Box::pin(async move {
                        store.ping().await.map_err(|e| e.to_string())?;
                        store.flush().await.map_err(|e| e.to_string())?;
                        let now = crate::clock::Clock::now_ms(&SystemClock);
                        let stats = store.queue_stats(now).await.map_err(|e| e.to_string())?;
                        Ok(format!(
                            "worker {worker_id}: claiming; {}",
                            stats.summary(now)
                        ))
                    })
                }),
                format!("worker {} claiming", opts.id),
            );
            println!("worker {} started", opts.id);
            if let Some(at) = settings.metrics.worker_listen {
                let scrape = crate::telemetry::Scrape {
                    store: store.clone(),
                    clock: Arc::new(SystemClock),
                    lease_ms: settings.jobs.lease_ms,
                };
                let (bound, _) = crate::telemetry::serve(at, scrape, stop.clone()).await?;
                println!("metrics on {bound}");
            }
            // On a runtime thread, not on main's `block_on`: the loop spawns every job,
            // and a spawn from outside the runtime goes through the shared queue and
            // wakes a parked thread each time.
            tokio::spawn(worker::run(
                store.clone(),
                registry,
                opts,
                Arc::new(SystemClock),
                stop,
                None,
            ))
            .await
            .map_err(|e| format!("the worker loop failed: {e}"))?;
            maint_stop.cancel();
            let _ = maint.await;
            store.close().await;
        }
        Command::Call { tool, args, target } => {
            let args = parse_args(&args)?;
            let mut client = crate::client::Client::connect(target.apply(settings.client)).await?;
            let env = client.envelope(&tool, args);
            let (_status, resp) = client.send(&env).await?;
            println!("{}", resp.raw);
            if !resp.ok {
                return Ok(ExitCode::from(2));
            }
        }
        Command::Keys { .. } | Command::Config { .. } => {}
        Command::Migrate => {
            crate::store::open::migrate(&settings).await?;
            println!("migrations applied to {}", settings.database.display());
        }
        Command::Jobs { command } => {
            let store = admin_store(&settings).await?;
            let code = crate::admin::jobs(store.admin().as_ref(), command).await?;
            store.store().close().await;
            return Ok(code);
        }
        Command::Stats { json } => {
            let store = admin_store(&settings).await?;
            let code = crate::admin::stats(store.admin().as_ref(), json).await?;
            store.store().close().await;
            return Ok(code);
        }
        Command::Backup { path } => {
            if let crate::config::Backend::Postgres(_) = settings.database.backend()? {
                return Err("mcpq backup copies the SQLite database; back up PostgreSQL with its own tools (pg_dump, or base backups with WAL archiving: docs/OPERATIONS.md)".into());
            }
            crate::admin::run_as_owner_of(&settings.database.path)?;
            let bar = std::io::IsTerminal::is_terminal(&std::io::stderr());
            let r = crate::backup::backup(&settings.database, &path, bar).await?;
            println!(
                "backed up {} job(s), {} bytes, to {} in {:.1} s",
                r.jobs,
                r.bytes,
                path.display(),
                r.took.as_secs_f64()
            );
        }
        Command::Bench { command } => bench(settings, cli.config, command).await?,
        Command::Store {
            command: StoreCommand::Copy { from, to },
        } => store_copy(&settings, &from, &to).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The store for an operator's command, opened as the database's owner (see
/// [`crate::admin::run_as_owner_of`]).
async fn admin_store(settings: &Settings) -> Result<AnyStore, AnyError> {
    if let crate::config::Backend::Sqlite(path) = settings.database.backend()? {
        crate::admin::run_as_owner_of(&path)?;
        if !path.exists() {
            return Err(format!("the database {} does not exist", path.display()).into());
        }
    }
    Ok(crate::store::open::open(settings).await?)
}

async fn store_copy(settings: &Settings, from: &str, to: &str) -> Result<(), AnyError> {
    let with_url = |url: &str| {
        let mut s = settings.clone();
        s.database.url = url.to_string();
        s
    };
    let (src, dst) = (with_url(from), with_url(to));
    if src.database.backend()? == dst.database.backend()? {
        return Err("--from and --to name the same store".into());
    }
    if let crate::config::Backend::Sqlite(path) = src.database.backend()? {
        if !path.exists() {
            return Err(format!("the source database {} does not exist", path.display()).into());
        }
    }
    let from_store = crate::store::open::open(&src).await?;
    let to_store = crate::store::open::open(&dst).await?;
    let t = Instant::now();
    let now = crate::clock::Clock::now_ms(&SystemClock);
    let copied = crate::store::copy::copy(&from_store, &to_store, now, &|n| {
        if n % 100_000 == 0 {
            eprintln!("{n} jobs copied");
        }
    })
    .await?;
    from_store.store().close().await;
    to_store.store().close().await;
    println!(
        "copied {} job(s) and {} live nonce(s) from {} to {} in {:.1} s",
        copied.jobs,
        copied.nonces,
        src.database.display(),
        dst.database.display(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn bench(
    settings: Settings,
    config: Option<PathBuf>,
    command: BenchCommand,
) -> Result<(), AnyError> {
    match command {
        BenchCommand::Mcp {
            endpoint,
            token,
            connections,
            duration,
            tool,
            args,
            task,
        } => {
            let url = endpoint
                .strip_suffix("/mcp")
                .ok_or("--endpoint must end in /mcp")?
                .to_string();
            let mut cs = settings.client;
            cs.url = url;
            let args: serde_json::Value = serde_json::from_str(&args)?;
            let (headers, body, expect) = if task {
                let modern = "2026-07-28";
                let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                    "params": {"name": tool, "arguments": args, "_meta": {
                        "io.modelcontextprotocol/protocolVersion": modern,
                        "io.modelcontextprotocol/clientCapabilities": {"extensions": {"io.modelcontextprotocol/tasks": {}}}}}});
                let headers = vec![
                    ("MCP-Protocol-Version".to_string(), modern.to_string()),
                    ("Mcp-Method".to_string(), "tools/call".to_string()),
                    ("Mcp-Name".to_string(), tool.clone()),
                ];
                (headers, body, "\"taskId\"".to_string())
            } else {
                let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                    "params": {"name": tool, "arguments": args}});
                let headers = vec![("MCP-Protocol-Version".to_string(), "2025-11-25".to_string())];
                (headers, body, "\"result\"".to_string())
            };
            let load = crate::bench::McpLoad {
                path: "/mcp".into(),
                token: Some(token).filter(|t| !t.is_empty()),
                headers,
                body: body.to_string(),
                expect,
            };
            let r = crate::bench::mcp_load(cs, connections, Duration::from_secs(duration), load)
                .await?;
            r.print(&format!(
                "{endpoint} {tool} c={connections}{}",
                if task { " task" } else { "" }
            ));
        }
        BenchCommand::Sync {
            target,
            connections,
            duration,
            tool,
            args,
        }
        | BenchCommand::Enqueue {
            target,
            connections,
            duration,
            tool,
            args,
        } => {
            let cs = target.apply(settings.client);
            let label = format!("{} {tool} c={connections}", cs.url);
            let r = crate::bench::sync_load(
                cs,
                connections,
                Duration::from_secs(duration),
                tool,
                parse_args(&args)?,
            )
            .await?;
            r.print(&label);
        }
        BenchCommand::E2e {
            target,
            connections,
            jobs,
            tool,
            args,
            first_poll_after,
            repoll,
        } => {
            let cs = target.apply(settings.client);
            let args = parse_args(&args)?;
            let first_poll_after = first_poll_after.unwrap_or_else(|| match args.get("seconds") {
                Some(Json::Int(s)) if *s > 0 => *s as u64 * 1000,
                _ => 0,
            });
            let label = format!(
                "{} e2e {tool} n={jobs} c={connections} first poll after {first_poll_after} ms",
                cs.url
            );
            let r = crate::bench::e2e(
                cs,
                connections,
                jobs,
                tool,
                args,
                Duration::from_millis(first_poll_after),
                Duration::from_millis(repoll),
            )
            .await?;
            r.print(&label);
        }
        BenchCommand::Drain {
            jobs,
            workers,
            prune_after,
        } => drain(settings, config, jobs, workers, prune_after).await?,
    }
    Ok(())
}

/// Prefills no-op jobs, then times `workers` worker processes draining them.
async fn drain(
    settings: Settings,
    config: Option<PathBuf>,
    n: usize,
    workers: usize,
    prune_after: bool,
) -> Result<(), AnyError> {
    if !settings.server.bench_tools {
        return Err(
            "bench drain needs server.bench_tools = true (the noop job tool) in the config".into(),
        );
    }
    let store = crate::store::open::open(&settings).await?;
    let t = Instant::now();
    store.bench_fill_noop(n).await?;
    println!("filled {n} noop jobs in {:.2}s", t.elapsed().as_secs_f64());
    let exe = std::env::current_exe()?;
    let start = Instant::now();
    let mut children = Vec::new();
    for _ in 0..workers {
        let mut cmd = tokio::process::Command::new(&exe);
        if let Some(cfg) = &config {
            cmd.arg("--config").arg(cfg);
        }
        cmd.arg("worker")
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true);
        children.push(cmd.spawn()?);
    }
    // Rate over the first `window` jobs (same work whatever the backlog), over the last
    // `window` (from when the queue's head passes them to the end), and overall.
    let window = n.min(20_000) as i64;
    let first = store.first_seq().await?;
    let last_window_from = first + n as i64 - window;
    let mut window_elapsed = None;
    let mut last_window_start = None;
    loop {
        if window_elapsed.is_none()
            && store.succeeded_in_range(first, first + window - 1).await? == window
        {
            window_elapsed = Some(start.elapsed());
        }
        if last_window_start.is_none()
            && store
                .queue_head_seq()
                .await?
                .is_none_or(|head| head >= last_window_from)
        {
            last_window_start = Some(start.elapsed());
        }
        if window_elapsed.is_some() && !store.any_unfinished().await? {
            break;
        }
        if start.elapsed() > Duration::from_secs(600) {
            return Err("drain did not finish within ten minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = start.elapsed();
    for c in &mut children {
        let _ = c.start_kill();
    }
    let w = window_elapsed.unwrap_or(elapsed);
    let last = elapsed.saturating_sub(last_window_start.unwrap_or_default());
    println!(
        "drain: {:.0} jobs/s overall ({n} noop jobs, {workers} worker processes, {:.2}s); first {window} jobs at {:.0} jobs/s; last {window} at {:.0} jobs/s",
        n as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64(),
        window as f64 / w.as_secs_f64(),
        window as f64 / last.as_secs_f64().max(1e-3),
    );
    if prune_after {
        let t = Instant::now();
        let now = crate::clock::Clock::now_ms(&SystemClock);
        let pruned = store.store().prune(now + 1, now).await?;
        println!(
            "pruned {pruned} finished jobs in {:.2}s",
            t.elapsed().as_secs_f64()
        );
    }
    store.store().close().await;
    Ok(())
}
