//! mcpq: a persistent, stateless, signed tool-call daemon for agent workflows.
//!
//! Clients POST signed `mcp/0.1` envelopes; synchronous tools answer in memory,
//! long-running tools become durable jobs in SQLite (or PostgreSQL, for several daemons and
//! machines) that any number of stateless worker processes claim.
//!
//! # Layout
//! By layer, top down: a module imports only from layers below it (`tests/it/layers.rs`
//! checks; docs/ARCHITECTURE.md draws it).
//! - [`cli`]: the command line, one file per command group (`main.rs` only calls
//!   [`cli::main`]).
//! - [`ops`]: `mcpq jobs …` and `mcpq stats` (tables or JSON, exit codes, who changed what);
//!   [`backup`]: `mcpq backup`; [`bench`](mod@bench): the load generators behind `mcpq bench`
//!   (reached only from `cli`).
//! - [`server`]: the daemon assembled: `Server::build` → `local_addr` → `run_until_stopped`,
//!   `server::router`; [`client`]: a signing client (`mcpq call`, `mcpq bench`, the tests).
//! - [`v1`]: `POST /v1/call`, the signed `mcp/0.1` pipeline. [`mcp`]: standard MCP at `/mcp`
//!   (JSON-RPC, both protocol eras, tasks, multi-round calls and their 2025 bridge, log
//!   streams, bearer tokens), its state in `mcp::Mcp`. [`telemetry`]: the Prometheus
//!   recorder and scrape endpoint. [`console`]: the operator's web console under `/ui/`
//!   (on the metrics listener, or `mcpq ui`).
//! - [`http`]: the listener (accept loop, `http::overload` defences, drain), bounded body
//!   reads, the SSE body; [`systemd`]: readiness, status, watchdog, socket activation;
//!   [`scheduler`]: the loop that enqueues `[schedules]` ticks, one job per tick.
//! - [`app`]: the transport-free core (`authenticate`, `admit_nonce`, `admit_call`,
//!   `call_sync`, `enqueue_job`); [`worker`]: the `Worker` component (`Worker::build` →
//!   `run_until_stopped`) and the loops `mcpq serve` embeds (claim, run-and-decide, complete,
//!   heartbeats, maintenance), the health check both processes report.
//! - [`tools`]: the registry, one file per built-in tool, `tools::runner` (command, HTTP
//!   and upstream), `tools::upstream` (the sessions with `[upstreams]` MCP servers: pools,
//!   listings, one call (sent by mcpq's own HTTP client, on connections each call drives,
//!   to a stateless HTTP upstream, else through rmcp's), following an upstream's task and resuming it after a lost worker,
//!   parking a call whose upstream asks its client during it);
//!   [`limits`]: per-client call rate and queue cap; [`webhooks`]: the deliverer of
//!   completion webhooks (outbox leases, Standard Webhooks signatures, address guard).
//! - [`store`]: the `Store` trait, the batching both drivers share, `store::sqlite` and
//!   `store::postgres` mirrored file for file, `store::open` choosing one from
//!   `database.url`, `store::changes` (this process's waiters on jobs, woken by the
//!   drivers' signals between processes), `store::admin` (the operator's trait), `store::copy`, `store::fault`
//!   (which errors mean "the database cannot take this now") and `store::status` (this
//!   process's view of its store: up or down since when, the probe while down).
//! - [`auth`]: key table, constant-time signature checks, the nonce set; [`logging`]: text or
//!   JSON log lines with each request's and job's fields; `logging::repeats` collapses
//!   repeated faults into one summary line per interval; [`oauth`]: OAuth access tokens
//!   for `/mcp` (JWT validation, signing keys, the scope model, RFC 9728 metadata);
//!   [`otel`]: OpenTelemetry traces (the exporter, W3C context, the spans of a call and its
//!   job), off unless `[otel] enabled`.
//! - [`config`]: layered settings and secrets; `[tools]` (`config::tool_table`),
//!   `[upstreams]` (`config::upstreams`),
//!   `[resources]`, `[prompts]`, `[oauth]`.
//! - [`jobs`]: the job state machine and retry policy, pure (`jobs::flow`: the rules a
//!   claim applies, the start-rate bucket and which keyed jobs may start); [`audit`]: the
//!   audit trail's records and hash chain, pure (its children sit higher: `audit::writer`,
//!   the daemon's batched writer, with `tools`; `audit::cli`, `mcpq audit verify|export`,
//!   with `ops`).
//! - [`envelope`]: the `mcp/0.1` wire contract (envelopes, responses, error codes, HMAC
//!   signing); [`asks`]: a tool's questions to its client (`InputRequiredResult`), checked.
//! - [`json`]: strict JSON and CPython-compatible canonical JSON (the signed bytes);
//!   [`hex`]: lowercase hex of digests; [`clock`]: injectable time; `telemetry::names`: metric names.

pub mod app;
pub mod asks;
pub mod audit;
pub mod auth;
pub mod backup;
pub mod bench;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod console;
pub mod envelope;
pub mod hex;
pub mod http;
pub mod jobs;
pub mod json;
pub mod limits;
pub mod logging;
pub mod mcp;
pub mod oauth;
pub mod ops;
pub mod otel;
pub mod scheduler;
pub mod server;
pub mod store;
pub mod systemd;
pub mod telemetry;
pub mod tools;
pub mod v1;
pub mod webhooks;
pub mod worker;
