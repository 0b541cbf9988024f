//! SQLite row codecs: batches written as JSON arrays of positional rows (`json_each`), nonce
//! packs, and the JSON rows the group read and the claim return, decoded strictly.
//!
//! It must not run statements.

use std::collections::HashMap;

use crate::auth::{NonceKey, NonceRecord};
use crate::envelope::ClientId;
use crate::jobs::{CrashPolicy, JobId, JobState};
use crate::json::Json;
use crate::store::{ClaimedJob, Completion, JobRecord, NewJob, Outcome, StoreError};

/// A JSON array of strings, for `json_each` filters.
pub(super) fn json_strings(items: &[String]) -> String {
    Json::Array(items.iter().map(|s| Json::str(s.as_str())).collect()).to_canonical()
}

/// Rows for the batch statements (enqueue, complete, heartbeat, release): a JSON array
/// of positional arrays, which the SQL reads with `v ->> N` from `json_each`.
/// Positional, because indexing beats a key search; the SQL takes `value` once per row
/// through a subquery SQLite does not flatten, because each reference to `value` turns the
/// row back into text (migration 0016). Written straight into one string, because this
/// runs once per job.
pub(super) struct Rows {
    pub(super) json: String,
    pub(super) count: usize,
    fields: usize,
}

impl Rows {
    pub(super) fn new() -> Rows {
        Rows {
            json: String::from("["),
            count: 0,
            fields: 0,
        }
    }

    pub(super) fn row(&mut self) -> &mut Rows {
        if self.count > 0 {
            self.json.push_str("],");
        }
        self.json.push('[');
        self.count += 1;
        self.fields = 0;
        self
    }

    fn sep(&mut self) {
        if self.fields > 0 {
            self.json.push(',');
        }
        self.fields += 1;
    }

    pub(super) fn str(&mut self, v: &str) -> &mut Rows {
        self.sep();
        crate::json::write_str(v, &mut self.json);
        self
    }

    pub(super) fn opt_str(&mut self, v: Option<&str>) -> &mut Rows {
        match v {
            Some(v) => self.str(v),
            None => {
                self.sep();
                self.json.push_str("null");
                self
            }
        }
    }

    pub(super) fn int(&mut self, v: i64) -> &mut Rows {
        use std::fmt::Write;
        self.sep();
        let _ = write!(self.json, "{v}");
        self
    }

    pub(super) fn opt_int(&mut self, v: Option<i64>) -> &mut Rows {
        match v {
            Some(v) => self.int(v),
            None => {
                self.sep();
                self.json.push_str("null");
                self
            }
        }
    }

    pub(super) fn finish(mut self) -> String {
        if self.count > 0 {
            self.json.push(']');
        }
        self.json.push(']');
        self.json
    }
}

/// `[id, client, tool, args, max_attempts, created_at, idempotency_key, def, on_crash,
/// capped, input_responses, priority, boost, run_at, ckey, callback?]` (migrations 0006,
/// 0007, 0010).
pub(super) fn push_job(rows: &mut Rows, j: &NewJob) {
    rows.row()
        .str(&j.id.0)
        .str(&j.client_id.0)
        .str(&j.tool)
        .str(&j.args)
        .int(i64::from(j.max_attempts))
        .int(j.created_at)
        .opt_str(j.idempotency_key.as_deref())
        .str(&j.def)
        .int(j.on_crash.code())
        .int(i64::from(j.capped))
        .opt_str(j.input_responses.as_deref())
        .int(i64::from(j.priority))
        .int(j.boost_ms)
        .int(j.run_at)
        .opt_str(j.ckey.as_deref());
    // The callback (migration 0012) only when there is one: a shorter row reads NULL.
    if let Some(url) = &j.callback {
        rows.str(url);
    }
}

/// A sealed audit record as `enqueue_audited.sql`'s positional row (migration 0013): its
/// seq, entry, `prev` and digest.
pub(super) fn push_record(
    rows: &mut Rows,
    seq: i64,
    e: &crate::audit::Entry,
    prev: &str,
    digest: &str,
) {
    rows.row()
        .int(seq)
        .int(e.at)
        .str(e.kind.as_str())
        .str(&e.actor)
        .opt_str(e.tool.as_deref())
        .opt_str(e.args_digest.as_deref())
        .opt_str(e.args.as_deref())
        .str(&e.outcome)
        .int(i64::from(e.count))
        .opt_str(e.request_id.as_deref())
        .opt_str(e.job_id.as_deref())
        .opt_str(e.trace_id.as_deref())
        .opt_str(e.detail.as_deref())
        .str(prev)
        .str(digest);
}

/// Nonce records packed for one `nonce_batches` row: 16-byte digest + big-endian i64 expiry each.
#[derive(Default)]
pub(super) struct NoncePack {
    pub(super) bytes: Vec<u8>,
    pub(super) max_expiry: i64,
}

const NONCE_RECORD_LEN: usize = 24;

impl NoncePack {
    pub(super) fn push(&mut self, n: &NonceRecord) {
        self.bytes.extend_from_slice(&n.key.0);
        self.bytes.extend_from_slice(&n.expires_ms.to_be_bytes());
        self.max_expiry = self.max_expiry.max(n.expires_ms);
    }

    pub(super) fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub(super) fn unpack(bytes: &[u8]) -> Result<Vec<NonceRecord>, StoreError> {
        if !bytes.len().is_multiple_of(NONCE_RECORD_LEN) {
            return Err(StoreError::Corrupt(
                "nonce batch length is not a multiple of 24".into(),
            ));
        }
        Ok(bytes
            .chunks_exact(NONCE_RECORD_LEN)
            .map(|c| {
                let mut key = [0u8; 16];
                key.copy_from_slice(&c[..16]);
                let mut exp = [0u8; 8];
                exp.copy_from_slice(&c[16..]);
                NonceRecord {
                    key: NonceKey(key),
                    expires_ms: i64::from_be_bytes(exp),
                }
            })
            .collect())
    }
}

/// The rows of `get_jobs.sql`, keyed by job id.
pub(super) fn records_from_json(text: &str) -> Result<HashMap<String, JobRecord>, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("group read: {what}"));
    let Json::Array(rows) =
        crate::json::parse(text.as_bytes()).map_err(|e| corrupt(&e.to_string()))?
    else {
        return Err(corrupt("not an array"));
    };
    let mut out = HashMap::with_capacity(rows.len());
    for row in rows {
        let Json::Array(cols) = row else {
            return Err(corrupt("a row is not an array"));
        };
        let [id, client_id, tool, args, state, attempt, max_attempts, run_at, lease_owner, lease_expires_at, fence, cancel_requested, progress, result, errors, idempotency_key, created_at, started_at, finished_at, def, on_crash, input_requests, input_responses, request_state]: [Json; 24] =
            cols.try_into().map_err(|_| corrupt("a row does not have 24 columns"))?;
        let text = |v: Json, name: &str| match v {
            Json::Str(s) => Ok(s),
            _ => Err(corrupt(&format!("{name} is not text"))),
        };
        let int = |v: Json, name: &str| match v {
            Json::Int(i) => Ok(i),
            _ => Err(corrupt(&format!("{name} is not an integer"))),
        };
        let opt_text = |v: Json, name: &str| match v {
            Json::Null => Ok(None),
            v => text(v, name).map(Some),
        };
        let opt_int = |v: Json, name: &str| match v {
            Json::Null => Ok(None),
            v => int(v, name).map(Some),
        };
        let state = text(state, "state")?;
        let on_crash = int(on_crash, "on_crash")?;
        let rec = JobRecord {
            id: JobId(text(id, "id")?),
            client_id: ClientId(text(client_id, "client_id")?),
            tool: text(tool, "tool")?,
            args: text(args, "args")?,
            state: JobState::parse(&state).ok_or_else(|| corrupt(&format!("state {state:?}")))?,
            attempt: int(attempt, "attempt")? as u32,
            max_attempts: int(max_attempts, "max_attempts")? as u32,
            run_at: int(run_at, "run_at")?,
            lease_owner: opt_text(lease_owner, "lease_owner")?,
            lease_expires_at: opt_int(lease_expires_at, "lease_expires_at")?,
            fence: int(fence, "fence")?,
            cancel_requested: int(cancel_requested, "cancel_requested")? != 0,
            progress: opt_text(progress, "progress")?,
            result: opt_text(result, "result")?,
            errors: text(errors, "errors")?,
            idempotency_key: opt_text(idempotency_key, "idempotency_key")?,
            created_at: int(created_at, "created_at")?,
            started_at: opt_int(started_at, "started_at")?,
            finished_at: opt_int(finished_at, "finished_at")?,
            def: text(def, "def")?,
            on_crash: CrashPolicy::from_code(on_crash)
                .ok_or_else(|| corrupt(&format!("on_crash {on_crash}")))?,
            input_requests: opt_text(input_requests, "input_requests")?,
            input_responses: opt_text(input_responses, "input_responses")?,
            request_state: opt_text(request_state, "request_state")?,
        };
        out.insert(rec.id.0.clone(), rec);
    }
    Ok(out)
}

/// One claimed job from claim.sql's `json_array(id, client_id, tool, args, attempt,
/// max_attempts, fence, run_at, input_responses, request_state)`.
pub(super) fn claimed_from_json(text: &str) -> Result<ClaimedJob, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("claimed job: {what}"));
    let Json::Array(cols) =
        crate::json::parse(text.as_bytes()).map_err(|e| corrupt(&e.to_string()))?
    else {
        return Err(corrupt("not an array"));
    };
    let [Json::Str(id), Json::Str(client_id), Json::Str(tool), Json::Str(args), Json::Int(attempt), Json::Int(max_attempts), Json::Int(fence), Json::Int(due_at), input_responses, request_state, Json::Int(hooked)]: [Json; 11] =
        cols.try_into().map_err(|_| corrupt("not 11 columns"))?
    else {
        return Err(corrupt("a column has the wrong type"));
    };
    let opt_text = |v: Json, name: &str| match v {
        Json::Null => Ok(None),
        Json::Str(s) => Ok(Some(s)),
        _ => Err(corrupt(&format!("{name} is not text"))),
    };
    let count = |v: i64, name: &str| u32::try_from(v).map_err(|_| corrupt(&format!("{name} {v}")));
    Ok(ClaimedJob {
        id: JobId(id),
        client_id: ClientId(client_id),
        tool,
        args,
        attempt: count(attempt, "attempt")?,
        max_attempts: count(max_attempts, "max_attempts")?,
        fence,
        due_at,
        input_responses: opt_text(input_responses, "input_responses")?,
        request_state: opt_text(request_state, "request_state")?,
        hooked: hooked != 0,
    })
}

/// A batch of completions as the statements that apply it take them: each `None` when the
/// batch has none of its kind.
pub(super) struct CompletionRows {
    /// `{"<fence>/<id>": result}` per success (complete_succeeded.sql).
    pub(super) succeeded: Option<String>,
    /// `[id, fence, state, result, error, run_at]` per other outcome (complete.sql).
    pub(super) other: Option<String>,
    /// `[id, fence, input_requests, request_state]` per attempt that asked (complete_ask.sql).
    pub(super) asked: Option<String>,
}

pub(super) fn completions_json(done: &[Completion]) -> CompletionRows {
    let mut succeeded = String::from("{");
    let mut rows = Rows::new();
    let mut asks = Rows::new();
    for c in done {
        let (state, error, run_at) = match &c.outcome {
            Outcome::Succeeded { result } => {
                if succeeded.len() > 1 {
                    succeeded.push(',');
                }
                crate::json::write_str(&format!("{}/{}", c.fence, c.id.0), &mut succeeded);
                succeeded.push(':');
                crate::json::write_str(result, &mut succeeded);
                continue;
            }
            Outcome::Retry { run_at, error } => ("queued", Some(error.as_str()), Some(*run_at)),
            Outcome::Failed { error } => ("failed", Some(error.as_str()), None),
            Outcome::Cancelled { error } => ("cancelled", Some(error.as_str()), None),
            Outcome::InDoubt { error } => ("in_doubt", Some(error.as_str()), None),
            Outcome::AwaitInput { requests, state } => {
                asks.row()
                    .str(&c.id.0)
                    .int(c.fence)
                    .str(requests)
                    .opt_str(state.as_deref());
                continue;
            }
        };
        rows.row()
            .str(&c.id.0)
            .int(c.fence)
            .str(state)
            .opt_str(None)
            .opt_str(error)
            .opt_int(run_at);
    }
    succeeded.push('}');
    CompletionRows {
        succeeded: (succeeded.len() > 2).then_some(succeeded),
        other: (rows.count > 0).then(|| rows.finish()),
        asked: (asks.count > 0).then(|| asks.finish()),
    }
}

#[cfg(test)]
mod tests {
    use super::{claimed_from_json, completions_json, records_from_json, Rows};
    use crate::store::StoreError;

    #[test]
    fn group_read_rows_decode_and_reject_anything_malformed() {
        let row = r#"["0193b3c4-5d6e-7f80-9a1b-000000000001","alice","start_long_task","{}","running",1,3,10,"w1",40,2,0,"{\"p\":1}",null,"[]",null,5,6,null,"1",2,null,null,"s"]"#;
        let found = records_from_json(&format!("[{row}]")).unwrap();
        let r = &found["0193b3c4-5d6e-7f80-9a1b-000000000001"];
        assert_eq!(r.client_id.0, "alice");
        assert_eq!(r.lease_owner.as_deref(), Some("w1"));
        assert_eq!(r.progress.as_deref(), Some(r#"{"p":1}"#));
        assert_eq!(r.on_crash, crate::jobs::CrashPolicy::Hold);
        assert_eq!(r.request_state.as_deref(), Some("s"));
        assert_eq!(
            (r.attempt, r.fence, r.lease_expires_at, r.finished_at),
            (1, 2, Some(40), None)
        );
        assert!(records_from_json("[]").unwrap().is_empty());
        for bad in [
            "{}".to_string(),
            "[1]".to_string(),
            r#"[["too","short"]]"#.to_string(),
            format!("[{}]", row.replace(r#""running""#, r#""exploded""#)),
            format!("[{}]", row.replace(",1,3,", r#","1",3,"#)),
            format!("[{}]", row.replace(r#""1",2,"#, r#""1",7,"#)),
            format!("[{}]", row.replace(r#","s"]"#, ",5]")),
        ] {
            assert!(
                matches!(records_from_json(&bad), Err(StoreError::Corrupt(_))),
                "{bad} must be rejected"
            );
        }
    }

    #[test]
    fn claimed_rows_decode_and_reject_anything_malformed() {
        let row = r#"["0193b3c4-5d6e-7f80-9a1b-000000000001","alice","start_long_task","{\"seconds\":1}",2,3,7,1700000000000,"{\"a\":{}}",null,0]"#;
        let job = claimed_from_json(row).unwrap();
        assert_eq!(job.id.0, "0193b3c4-5d6e-7f80-9a1b-000000000001");
        assert_eq!(job.tool, "start_long_task");
        assert_eq!(job.client_id.0, "alice");
        assert_eq!(job.args, r#"{"seconds":1}"#);
        assert_eq!((job.attempt, job.max_attempts, job.fence), (2, 3, 7));
        assert_eq!(job.due_at, 1_700_000_000_000);
        assert_eq!(job.input_responses.as_deref(), Some(r#"{"a":{}}"#));
        assert_eq!(job.request_state, None);
        assert!(!job.hooked);
        assert!(
            claimed_from_json(&row.replace(",null,0]", ",null,1]"))
                .unwrap()
                .hooked
        );
        for bad in [
            "{}".to_string(),
            "not json".to_string(),
            r#"["too","short"]"#.to_string(),
            row.replace(",2,3,", r#","2",3,"#),
            row.replace(",2,3,", ",-1,3,"),
            row.replace(r#""start_long_task""#, "null"),
            row.replace(",null,0]", ",5,0]"),
            row.replace(",null,0]", ",null,\"yes\"]"),
        ] {
            assert!(
                matches!(claimed_from_json(&bad), Err(StoreError::Corrupt(_))),
                "{bad} must be rejected"
            );
        }
    }

    #[test]
    fn rows_are_a_json_array_of_positional_arrays() {
        assert_eq!(Rows::new().finish(), "[]");
        let mut rows = Rows::new();
        rows.row()
            .str("a\"b\\é")
            .int(-3)
            .opt_str(None)
            .opt_int(Some(7));
        rows.row().str("").int(0).opt_str(Some("x")).opt_int(None);
        let text = rows.finish();
        assert_eq!(text, r#"[["a\"b\\\u00e9",-3,null,7],["",0,"x",null]]"#);
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed[0][0], "a\"b\\é");
    }

    #[test]
    fn successes_are_keyed_by_fence_and_id_and_other_outcomes_are_rows() {
        use crate::jobs::JobId;
        use crate::store::{Completion, Outcome};
        let done = |id: &str, fence, outcome| Completion {
            id: JobId(id.into()),
            fence,
            outcome,
            hooked: false,
        };
        let batch = completions_json(&[
            done(
                "a",
                3,
                Outcome::Succeeded {
                    result: r#"{"x":"/"}"#.into(),
                },
            ),
            done(
                "b/c",
                12,
                Outcome::Succeeded {
                    result: "{}".into(),
                },
            ),
            done(
                "d",
                1,
                Outcome::Retry {
                    run_at: 9,
                    error: "boom".into(),
                },
            ),
        ]);
        assert_eq!(
            batch.succeeded.as_deref(),
            Some(r#"{"3/a":"{\"x\":\"/\"}","12/b/c":"{}"}"#)
        );
        assert_eq!(
            batch.other.as_deref(),
            Some(r#"[["d",1,"queued",null,"boom",9]]"#)
        );
        assert_eq!(batch.asked, None);
        let only_failed = completions_json(&[done("e", 2, Outcome::Failed { error: "no".into() })]);
        assert_eq!(only_failed.succeeded, None);
        assert!(only_failed.other.is_some());
    }
}
