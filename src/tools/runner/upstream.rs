//! The runner of a tool an upstream MCP server lists (`[upstreams.NAME]`): one
//! `tools/call` through the upstream's session pool (`tools::upstream::call`).
//!
//! It must not manage sessions; `tools::upstream` keeps them up.

use super::Invocation;
use crate::json::Object;
use crate::tools::upstream::{call, Upstreams};
use crate::tools::JobError;

#[derive(Clone)]
pub struct UpstreamRunner {
    pub upstreams: Upstreams,
    pub upstream: String,
    pub tool: String,
    pub max_output: usize,
    /// Follows the upstream task a lost attempt started (`on_worker_crash = "resume"`).
    pub resume: bool,
}

impl std::fmt::Debug for UpstreamRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UpstreamRunner({}/{})", self.upstream, self.tool)
    }
}

impl UpstreamRunner {
    pub async fn run(&self, inv: &Invocation<'_>) -> Result<Object, JobError> {
        let Some(u) = self.upstreams.get(&self.upstream) else {
            return Err(JobError::Retryable(format!(
                "upstream_down: upstream {} is not configured in this process",
                self.upstream
            )));
        };
        call::call(&u, &self.tool, inv, self.max_output, self.resume).await
    }
}
