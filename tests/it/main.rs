//! The integration tests, as one test binary: each file here is a module (`abuse`,
//! `upstreams`, …) and `common` is their shared harness (`spawn_daemon()` and friends).
//!
//! One binary rather than one per file because each binary links the whole daemon: with
//! 35 of them, linking was most of `cargo test --release`'s build time in CI. Run one
//! file's tests with a filter: `cargo test --release --test it upstreams::`.

mod common;

mod abuse;
mod admin;
mod audit;
mod auth;
mod bench;
mod canonical_props;
mod canonical_vectors;
mod cli;
mod config_tools;
mod console;
mod crash;
mod faults;
mod faults_pg;
mod flow;
mod http;
mod in_process;
mod jobs;
mod layers;
mod mcp;
mod mcp_rmcp;
mod metrics;
mod oauth;
mod overload;
mod postgres;
mod reload;
mod replay;
mod schedules;
mod seed_compat;
mod store_conformance;
mod systemd;
mod tools;
mod traces;
mod upgrade;
mod upstreams;
mod webhooks;
