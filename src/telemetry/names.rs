//! Every metric's name, as one list the recorder, the scrape endpoint and every module that
//! records share. Help texts and buckets live with the recorder (`telemetry`).
//!
//! Foundation: it must not import anything from the crate, so the store (below the scrape
//! endpoint) can record metrics without importing the endpoint that reads the store.

pub const REQUESTS: &str = "mcpq_requests_total";
pub const REQUEST_SECONDS: &str = "mcpq_request_duration_seconds";
pub const AUTH_FAILURES: &str = "mcpq_auth_failures_total";
pub const OAUTH_JWKS_FETCHES: &str = "mcpq_oauth_jwks_fetches_total";
pub const JOBS_ENQUEUED: &str = "mcpq_jobs_enqueued_total";
pub const SCHEDULE_JOBS: &str = "mcpq_schedule_jobs_enqueued_total";
pub const JOBS: &str = "mcpq_jobs";
pub const OLDEST_QUEUED: &str = "mcpq_oldest_queued_job_age_seconds";
pub const TOOL_PAUSED: &str = "mcpq_tool_paused";
pub const DATABASE_UP: &str = "mcpq_database_up";
pub const WORKER_LAST_SEEN: &str = "mcpq_worker_last_heartbeat_age_seconds";
pub const ATTEMPTS: &str = "mcpq_job_attempts_total";
pub const RUN_SECONDS: &str = "mcpq_job_run_seconds";
pub const START_DELAY: &str = "mcpq_job_start_delay_seconds";
pub const RESCUES: &str = "mcpq_lease_expiries_total";
pub const RUNNING: &str = "mcpq_worker_jobs_running";
pub const BATCH_ROWS: &str = "mcpq_group_commit_rows";
pub const COMMIT_SECONDS: &str = "mcpq_group_commit_seconds";
pub const FSYNC_SECONDS: &str = "mcpq_fsync_seconds";
pub const FSYNC_FAILURES: &str = "mcpq_fsync_failures_total";
pub const HELD_CALLS: &str = "mcpq_mcp_held_calls";
pub const PENDING_QUESTIONS: &str = "mcpq_mcp_pending_questions";
pub const LOG_LINES_DROPPED: &str = "mcpq_mcp_log_lines_dropped_total";
pub const FAULTS: &str = "mcpq_faults_total";
pub const STORE_UP: &str = "mcpq_store_up";
pub const STORE_OUTAGES: &str = "mcpq_store_outages_total";
pub const COMMITS_RESOLVED: &str = "mcpq_commits_resolved_total";
pub const WEBHOOK_DELIVERIES: &str = "mcpq_webhook_deliveries_total";
pub const WEBHOOK_BACKLOG: &str = "mcpq_webhook_outbox_backlog";
/// Audit records handed to the store, by kind (docs/AUDIT.md).
pub const AUDIT_RECORDS: &str = "mcpq_audit_records_total";
/// Refusals folded into another refusal's record (same client, tool and code, same second),
/// or into the per-second overflow record.
pub const AUDIT_COALESCED: &str = "mcpq_audit_refusals_coalesced_total";
/// Audit records written behind that were lost with a failed commit.
pub const AUDIT_LOST: &str = "mcpq_audit_records_lost_total";
/// Live sessions with an upstream MCP server in this process, by upstream (docs/UPSTREAMS.md).
pub const UPSTREAM_SESSIONS: &str = "mcpq_upstream_sessions_up";
/// Tools this process publishes from an upstream's last listing, by upstream.
pub const UPSTREAM_TOOLS: &str = "mcpq_upstream_tools";
/// Upstream sessions that ended or failed to start, by upstream.
pub const UPSTREAM_FAILURES: &str = "mcpq_upstream_session_failures_total";
