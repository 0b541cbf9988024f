//! The `mcpq` command line: parses arguments, sets up logging and the runtime, and hands
//! each command to its file here (`serve`, `worker`, `call`, `keys`, `jobs`, `store`,
//! `bench`, `config_check`). No behaviour lives here beyond wiring.
//!
//! It must not be imported by the library's other modules: it is the top of the house.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{ClientSettings, Secret, Settings};
use crate::json::{self, Json, Object};

mod bench;
mod call;
mod config_check;
mod jobs;
mod keys;
mod lifecycle;
mod serve;
mod store;
mod ui;
mod worker;

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
        command: crate::ops::JobsCommand,
    },
    /// The audit trail (docs/AUDIT.md): `verify` checks its hash chain, `export` writes
    /// records as JSON lines.
    Audit {
        #[command(subcommand)]
        command: crate::audit::cli::AuditCommand,
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
        command: bench::BenchCommand,
    },
    /// Recurring jobs (`[schedules]`): `mcpq schedules list` shows each schedule, the last
    /// tick enqueued and the next runs.
    Schedules {
        #[command(subcommand)]
        command: SchedulesCommand,
    },
    /// The operator's web console alone (docs/CONSOLE.md), for a host without `mcpq serve`;
    /// `mcpq serve` serves it on its metrics address.
    Ui {
        /// Address to serve /ui/ on (e.g. 127.0.0.1:9188).
        #[arg(long)]
        listen: std::net::SocketAddr,
    },
    /// Moving between stores (SQLite, PostgreSQL).
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
}

#[derive(Subcommand)]
enum SchedulesCommand {
    /// Each schedule: cron, zone, tool, last tick enqueued, next runs.
    List {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// How many next runs to show.
        #[arg(long, default_value_t = 3)]
        next: usize,
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

/// Entry point for `main.rs`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Keys { command } = &cli.command {
        return keys::keys(command);
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
            // A worker signs webhook deliveries: it reads those secrets only.
            Command::Worker { .. } => Settings::load_for_worker,
            Command::Migrate
            | Command::Keys { .. }
            | Command::Jobs { .. }
            | Command::Audit { .. }
            | Command::Stats { .. }
            | Command::Schedules { .. }
            | Command::Store { .. }
            | Command::Ui { .. }
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

async fn run(cli: Cli) -> Result<ExitCode, AnyError> {
    if let Command::Config {
        command: ConfigCommand::Check,
    } = &cli.command
    {
        return config_check::check(cli.config.as_deref());
    }
    let loader = cli.command.loader();
    let settings = loader(cli.config.as_deref())?;
    // Traces only where calls and jobs run; every other command leaves them off.
    let role = match &cli.command {
        Command::Serve => Some("serve"),
        Command::Worker { .. } => Some("worker"),
        _ => None,
    };
    let otel = match role {
        Some(role) => crate::otel::install(&settings.otel, role)?,
        None => None,
    };
    let (extra, guard) = match otel {
        Some((layer, guard)) => (Some((layer, crate::otel::TARGET)), Some(guard)),
        None => (None, None),
    };
    crate::logging::init(&settings.log, extra);
    let outcome = command(cli, settings, loader).await;
    if let Some(guard) = guard {
        guard.shutdown().await;
    }
    outcome
}

async fn command(cli: Cli, settings: Settings, loader: Loader) -> Result<ExitCode, AnyError> {
    match cli.command {
        Command::Serve => serve::serve(settings, cli.config, loader).await?,
        Command::Worker { concurrency } => {
            worker::worker(settings, cli.config, loader, concurrency).await?
        }
        Command::Call { tool, args, target } => {
            return call::call(settings, &tool, &args, &target).await
        }
        Command::Keys { .. } | Command::Config { .. } => {}
        Command::Migrate => store::migrate(&settings).await?,
        Command::Jobs { command } => return jobs::jobs(&settings, command).await,
        Command::Audit { command } => return jobs::audit(&settings, command).await,
        Command::Stats { json } => return jobs::stats(&settings, json).await,
        Command::Schedules {
            command: SchedulesCommand::List { json, next },
        } => return jobs::schedules(&settings, next.min(100), json).await,
        Command::Backup { path } => store::backup(&settings, &path).await?,
        Command::Bench { command } => bench::bench(settings, cli.config, command).await?,
        Command::Store {
            command: StoreCommand::Copy { from, to },
        } => store::copy(&settings, &from, &to).await?,
        Command::Ui { listen } => ui::ui(settings, listen).await?,
    }
    Ok(ExitCode::SUCCESS)
}
