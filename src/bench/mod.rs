//! `mcpq bench`: the load generators behind the figures in BENCHMARKS.md: closed loops of
//! signed `/v1/call`s ([`sync_load`]), of MCP `tools/call`s ([`mcp_load`]), durable jobs
//! end to end ([`e2e`]), and a worker drain timed on the store ([`drain`]).
//!
//! It must not be used by the daemon itself: only the command line (`crate::cli`) reaches
//! it; no request handler, worker, tool or store module imports it.

mod drain;
mod e2e;
mod load;
mod mcp;

pub use drain::{drain, DrainRun};
pub use e2e::{e2e, E2eReport, REPOLL};
pub use load::{sync_load, Report};
pub use mcp::{mcp_load, McpLoad, Wire};
