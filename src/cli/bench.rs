//! `mcpq bench …`: the load generators' command line: reads the arguments, runs the
//! generator in `crate::bench`, prints its report.
//!
//! It must not generate load itself: `crate::bench` does.

use std::path::PathBuf;
use std::time::Duration;

use clap::Subcommand;

use super::{parse_args, AnyError, Target};
use crate::config::Settings;
use crate::json::Json;

#[derive(Subcommand)]
pub(super) enum BenchCommand {
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
    /// Closed-loop `tools/call` over standard MCP (2025-11-25 wire without a session, or
    /// 2026-07-28 with `--wire`) against any MCP server's endpoint: mcpq's `/mcp` or a
    /// peer's.
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
        /// The revision calls travel in: 2025-11-25 (no session, nothing declared) or
        /// 2026-07-28 (per-request `_meta` declaring what mcpq declares to its upstreams).
        #[arg(long, default_value = "2025-11-25", value_parser = ["2025-11-25", "2026-07-28"])]
        wire: String,
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
        /// Priorities 0..=9 mixed evenly (each with its aging boost) instead of one priority.
        #[arg(long)]
        mixed_priorities: bool,
        /// `noop_keyed` jobs over K keys (at most 2 running per key) instead of `noop`.
        #[arg(long, value_name = "K")]
        keys: Option<u32>,
    },
}

pub(super) async fn bench(
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
            wire,
        } => {
            let wire = crate::bench::Wire::of(task, &wire);
            let load = McpRun {
                endpoint,
                token,
                connections,
                duration,
                tool,
                args,
                wire,
            };
            mcp(settings, load).await?
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
            sync(cs, connections, duration, tool, &args).await?
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
            mixed_priorities,
            keys,
        } => {
            let shape = crate::store::bench::FillShape {
                mixed_priorities,
                aging_ms: settings.jobs.aging_secs as i64 * 1000,
                keys,
            };
            let run = crate::bench::DrainRun {
                jobs,
                workers,
                prune_after,
                shape,
            };
            crate::bench::drain(settings, config, run).await?
        }
    }
    Ok(())
}

/// `mcpq bench sync` and `mcpq bench enqueue`: the same closed loop, another tool.
async fn sync(
    cs: crate::config::ClientSettings,
    connections: usize,
    duration: u64,
    tool: String,
    args: &str,
) -> Result<(), AnyError> {
    let label = format!("{} {tool} c={connections}", cs.url);
    let r = crate::bench::sync_load(
        cs,
        connections,
        Duration::from_secs(duration),
        tool,
        parse_args(args)?,
    )
    .await?;
    r.print(&label);
    Ok(())
}

/// `mcpq bench mcp`'s arguments.
struct McpRun {
    endpoint: String,
    token: String,
    connections: usize,
    duration: u64,
    tool: String,
    args: String,
    wire: crate::bench::Wire,
}

async fn mcp(settings: Settings, run: McpRun) -> Result<(), AnyError> {
    let McpRun {
        endpoint,
        token,
        connections,
        duration,
        tool,
        args,
        wire,
    } = run;
    let url = endpoint
        .strip_suffix("/mcp")
        .ok_or("--endpoint must end in /mcp")?
        .to_string();
    let mut cs = settings.client;
    cs.url = url;
    let args: serde_json::Value = serde_json::from_str(&args)?;
    let load = crate::bench::McpLoad::tools_call(&tool, args, token, wire);
    let r = crate::bench::mcp_load(cs, connections, Duration::from_secs(duration), load).await?;
    r.print(&format!(
        "{endpoint} {tool} c={connections}{}",
        match wire {
            crate::bench::Wire::Task => " task",
            crate::bench::Wire::V2026 => " 2026-07-28",
            crate::bench::Wire::V2025 => "",
        }
    ));
    Ok(())
}
