//! `mcpq audit verify` and `mcpq audit export`: the operator's view of the audit trail,
//! straight on the database (docs/AUDIT.md).
//!
//! `verify` walks the chain from its checkpoint to its head a page at a time and stops at
//! the first record that does not check out (exit 1, naming its sequence number); `export`
//! writes records as JSON lines.
//!
//! It must not write to the store.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;

use super::{Record, Verifier};
use crate::store::admin::AdminStore;
use crate::store::audit::PAGE;
use crate::store::StoreError;

#[derive(clap::Subcommand, Debug)]
pub enum AuditCommand {
    /// Checks the hash chain from its checkpoint to its head. Exit 0: intact; 1: broken
    /// (an edited, deleted or reordered record), naming the first bad sequence number.
    Verify {
        /// JSON instead of a line of text.
        #[arg(long)]
        json: bool,
    },
    /// Writes records as JSON lines, oldest first, to standard output.
    Export {
        /// Records written since: an RFC 3339 time (2026-12-02T10:00:00Z) or an age (30m,
        /// 2h, 7d); default everything kept.
        #[arg(long, value_parser = parse_since)]
        since: Option<i64>,
    },
}

/// An RFC 3339 time or an age before now, as ms since the epoch.
pub fn parse_since(s: &str) -> Result<i64, String> {
    let at = match humantime::parse_rfc3339_weak(s) {
        Ok(t) => t,
        Err(_) => {
            let age = humantime::parse_duration(s).map_err(|_| {
                format!("{s:?}: neither an RFC 3339 time nor an age like 30m, 2h, 7d")
            })?;
            SystemTime::now()
                .checked_sub(age)
                .ok_or_else(|| format!("{s:?}: too long ago"))?
        }
    };
    let ms = at.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    Ok(i64::try_from(ms.as_millis()).unwrap_or(i64::MAX))
}

pub async fn run(store: &dyn AdminStore, cmd: AuditCommand) -> Result<ExitCode, StoreError> {
    match cmd {
        AuditCommand::Verify { json } => verify(store, json).await,
        AuditCommand::Export { since } => {
            let mut out = std::io::BufWriter::new(std::io::stdout());
            export(store, since.unwrap_or(i64::MIN), &mut out).await
        }
    }
}

async fn verify(store: &dyn AdminStore, json_out: bool) -> Result<ExitCode, StoreError> {
    let ends = store.audit_ends().await?;
    let mut v = Verifier::new(&ends.checkpoint);
    let mut after = ends.checkpoint.seq;
    let mut outcome = Ok(());
    'pages: while after < ends.head.seq {
        let page = store.audit_page(after, i64::MIN, PAGE).await?;
        if page.is_empty() {
            break;
        }
        for r in &page {
            // Appended after the head was read (the daemons keep writing): not checked now.
            if r.seq > ends.head.seq {
                break 'pages;
            }
            if let Err(b) = v.next(r) {
                outcome = Err(b);
                break 'pages;
            }
            after = r.seq;
        }
    }
    if outcome.is_ok() {
        outcome = v.finish(&ends.head);
    }
    let (value, text, code) = match outcome {
        Ok(()) => (
            json!({"ok": true, "records": v.checked, "checkpoint_seq": ends.checkpoint.seq,
                   "head_seq": ends.head.seq, "head_digest": ends.head.digest}),
            format!(
                "audit chain intact: {} record(s), {}..={}, head digest {}",
                v.checked,
                ends.checkpoint.seq + 1,
                ends.head.seq,
                ends.head.digest
            ),
            ExitCode::SUCCESS,
        ),
        Err(b) => (
            json!({"ok": false, "first_bad_seq": b.seq, "why": b.why, "checked": v.checked}),
            format!("audit chain BROKEN at record {}: {}", b.seq, b.why),
            ExitCode::from(1),
        ),
    };
    if json_out {
        println!("{value}");
    } else {
        println!("{text}");
    }
    Ok(code)
}

/// One record as a JSON line.
pub fn record_json(r: &Record) -> serde_json::Value {
    let e = &r.entry;
    let time = UNIX_EPOCH + Duration::from_millis(u64::try_from(e.at).unwrap_or(0));
    json!({
        "seq": r.seq,
        "at": e.at,
        "time": humantime::format_rfc3339_millis(time).to_string(),
        "kind": e.kind.as_str(),
        "actor": e.actor,
        "tool": e.tool,
        "args_digest": e.args_digest,
        "args": e.args,
        "outcome": e.outcome,
        "count": e.count,
        "request_id": e.request_id,
        "job_id": e.job_id,
        "trace_id": e.trace_id,
        "detail": e.detail,
        "prev": r.prev,
        "digest": r.digest,
    })
}

async fn export(
    store: &dyn AdminStore,
    since: i64,
    out: &mut impl Write,
) -> Result<ExitCode, StoreError> {
    let mut after = i64::MIN;
    loop {
        let page = store.audit_page(after, since, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for r in &page {
            if writeln!(out, "{}", record_json(r)).is_err() {
                // The reader went away (`| head`): stop quietly.
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
    let _ = out.flush();
    Ok(ExitCode::SUCCESS)
}
