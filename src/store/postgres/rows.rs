//! PostgreSQL row codecs: job records and claimed jobs from typed rows, checked counts and
//! states.
//!
//! It must not run statements.

use sqlx::postgres::PgRow;
use sqlx::Row;

use crate::envelope::ClientId;
use crate::jobs::{CrashPolicy, JobId, JobState};
pub(super) use crate::store::state_of;
use crate::store::{ClaimedJob, JobRecord, StoreError};

pub(super) fn count(v: i32, name: &str) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("{name} {v}")))
}

pub(super) fn record_from_row(r: &PgRow) -> Result<JobRecord, StoreError> {
    let state: String = r.try_get(4)?;
    let on_crash: i16 = r.try_get(20)?;
    Ok(JobRecord {
        id: JobId(r.try_get(0)?),
        client_id: ClientId(r.try_get(1)?),
        tool: r.try_get(2)?,
        args: r.try_get(3)?,
        state: JobState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("job state {state:?}")))?,
        attempt: count(r.try_get(5)?, "attempt")?,
        max_attempts: count(r.try_get(6)?, "max_attempts")?,
        run_at: r.try_get(7)?,
        lease_owner: r.try_get(8)?,
        lease_expires_at: r.try_get(9)?,
        fence: r.try_get(10)?,
        cancel_requested: r.try_get(11)?,
        progress: r.try_get(12)?,
        result: r.try_get(13)?,
        errors: r.try_get(14)?,
        idempotency_key: r.try_get(15)?,
        created_at: r.try_get(16)?,
        started_at: r.try_get(17)?,
        finished_at: r.try_get(18)?,
        def: r.try_get(19)?,
        on_crash: CrashPolicy::from_code(i64::from(on_crash))
            .ok_or_else(|| StoreError::Corrupt(format!("on_crash {on_crash}")))?,
        input_requests: r.try_get(21)?,
        input_responses: r.try_get(22)?,
        request_state: r.try_get(23)?,
    })
}

pub(super) fn claimed_from_row(r: &PgRow) -> Result<ClaimedJob, StoreError> {
    Ok(ClaimedJob {
        id: JobId(r.try_get(0)?),
        client_id: ClientId(r.try_get(1)?),
        tool: r.try_get(2)?,
        args: r.try_get(3)?,
        attempt: count(r.try_get(4)?, "attempt")?,
        max_attempts: count(r.try_get(5)?, "max_attempts")?,
        fence: r.try_get(6)?,
        due_at: r.try_get(7)?,
        input_responses: r.try_get(8)?,
        request_state: r.try_get(9)?,
        hooked: r.try_get(10)?,
    })
}
