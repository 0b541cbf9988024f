//! mcpq: a persistent, stateless, signed tool-call daemon for agent workflows.
//!
//! Clients POST signed `mcp/0.1` envelopes; synchronous tools answer in memory,
//! long-running tools become durable jobs in SQLite (or PostgreSQL, for several daemons and
//! machines) that any number of stateless worker processes claim.
//!
//! # Layout
//! - [`json`]: strict JSON parsing and CPython-compatible canonical JSON (the signed bytes).
//! - [`protocol`]: the wire contract: envelopes, responses, error codes, HMAC signing.
//! - [`auth`]: key table, check order, constant-time signature checks, the nonce set.
//! - [`tools`]: the tool registry; one file per tool (sync tools and job tools);
//!   `tools::runner` (command and HTTP runners).
//! - [`asks`]: a tool asking its client for input: the `InputRequiredResult` shape, checked.
//! - [`jobs`]: the job state machine and retry policy, pure.
//! - [`store`]: the `Store` trait and its SQLite and PostgreSQL implementations (group commit,
//!   fenced writes), `store::open` choosing one from `database.url`; `store::admin`, the
//!   operator's trait (any client's jobs, changes by hand); `store::copy`, `mcpq store copy`.
//! - [`ops`]: the operator's `mcpq jobs …` and `mcpq stats`: tables or JSON, exit codes, who
//!   changed what.
//! - [`backup`]: `mcpq backup`: an online, checked, fsynced copy of the SQLite database.
//! - [`server`]: the HTTP daemon (hyper): limits, timeouts, routing, the request pipeline.
//! - [`systemd`]: systemd integration: readiness, status, watchdog, socket activation.
//! - [`mcp`]: standard MCP at `/mcp` (JSON-RPC, both protocol eras, tasks, multi-round
//!   calls and their 2025 bridge, log streams, bearer tokens).
//! - [`overload`]: connection pressure: per-address caps, idle shedding, short head timeouts.
//! - [`limits`]: per-client call rate (token bucket) and queued-jobs cap.
//! - [`worker`]: the `Worker` component (`mcpq worker`) and the loops `mcpq serve` embeds:
//!   claim loop, run-and-decide, completions, heartbeats, graceful release, lease rescue,
//!   retention; the health check both processes report.
//! - [`client`]: a signing client (used by `mcpq call`, `mcpq bench` and the tests).
//! - [`bench`](mod@bench): the load generators behind `mcpq bench` (reached only from `cli`).
//! - [`config`]: layered settings and secrets; `[tools]` (`config::tool_table`), `[resources]`
//!   and `[prompts]`.
//! - [`clock`]: injectable time.
//! - [`telemetry`]: Prometheus metrics: names, the recorder, the scrape endpoint.
//! - [`logging`]: text or JSON log lines (journald), with each request's and job's fields.
//! - [`cli`]: the command line (`main.rs` only calls [`cli::main`]).

pub mod app;
pub mod asks;
pub mod auth;
pub mod backup;
pub mod bench;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod http;
pub mod jobs;
pub mod json;
pub mod limits;
pub mod logging;
pub mod mcp;
pub mod ops;
pub mod protocol;
pub mod server;
pub mod store;
pub mod systemd;
pub mod telemetry;
pub mod tools;
pub mod v1;
pub mod worker;
