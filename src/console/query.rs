//! The console's inputs: the jobs filter read from a query string or form (and written
//! back into links), form bodies, and the console's error type, whose variants map 1:1 to the
//! codes and statuses the console answers with.
//!
//! It must not query the store or render pages.

use std::time::{Duration, UNIX_EPOCH};

use crate::jobs::JobState;
use crate::store::admin::{JobQuery, Sort};
use crate::store::StoreError;

/// Rows per page of the jobs list.
pub const PAGE: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// A filter or form field that cannot be read; nothing was changed.
    #[error("bad_request: {0}")]
    BadRequest(String),
    /// Signed in, but the role does not allow it (read-only and a POST).
    #[error("forbidden: the operator's role is read-only")]
    Forbidden,
    /// A POST without this session's CSRF token.
    #[error(
        "csrf_failed: the form's CSRF token is missing or not this session's; reload the page"
    )]
    Csrf,
    /// A proxy-named operator not in the configuration.
    #[error("unknown_operator: {0:?} is not an [operators.NAME]")]
    UnknownOperator(String),
    #[error("not_found: no such page or job")]
    NotFound,
    #[error("store_unavailable: {0}")]
    Store(#[from] StoreError),
}

impl ConsoleError {
    pub fn status(&self) -> u16 {
        match self {
            ConsoleError::BadRequest(_) => 400,
            ConsoleError::Forbidden | ConsoleError::Csrf | ConsoleError::UnknownOperator(_) => 403,
            ConsoleError::NotFound => 404,
            ConsoleError::Store(_) => 503,
        }
    }
}

/// `key=value` pairs of a query string or an `application/x-www-form-urlencoded` body.
pub fn pairs(text: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(text).into_owned().collect()
}

pub fn get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// A time field: ms since the epoch, or an RFC 3339-like UTC time (a browser's
/// `datetime-local`, `2026-12-01T10:30`).
fn time(key: &str, v: &str) -> Result<i64, ConsoleError> {
    if let Ok(ms) = v.parse::<i64>() {
        return Ok(ms);
    }
    let full = if v.len() == 16 {
        format!("{v}:00")
    } else {
        v.to_string()
    };
    let t = humantime::parse_rfc3339_weak(&full).map_err(|e| {
        ConsoleError::BadRequest(format!("{key} {v:?}: {e} (want e.g. 2026-12-01T10:30)"))
    })?;
    let ms = t
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis();
    Ok(ms.min(i64::MAX as u128) as i64)
}

/// The jobs filter of a query string (unknown keys ignored: they are the page's own).
pub fn filter(p: &[(String, String)]) -> Result<JobQuery, ConsoleError> {
    let state = match get(p, "state") {
        Some(s) => Some(
            JobState::parse(s)
                .ok_or_else(|| ConsoleError::BadRequest(format!("state {s:?}: not a job state")))?,
        ),
        None => None,
    };
    let sort = match get(p, "sort") {
        None | Some("created") => Sort::Created,
        Some("updated") => Sort::Updated,
        Some(s) => {
            return Err(ConsoleError::BadRequest(format!(
                "sort {s:?}: created or updated"
            )))
        }
    };
    let after = match get(p, "after") {
        Some(c) => Some(
            c.split_once('.')
                .and_then(|(k, s)| Some((k.parse().ok()?, s.parse().ok()?)))
                .ok_or_else(|| ConsoleError::BadRequest(format!("after {c:?}: not a cursor")))?,
        ),
        None => None,
    };
    let text = |k: &str| get(p, k).map(str::to_string);
    for (k, max) in [("q", 200), ("tool", 200), ("client", 200), ("id", 200)] {
        if text(k).is_some_and(|v| v.len() > max) {
            return Err(ConsoleError::BadRequest(format!(
                "{k}: longer than {max} bytes"
            )));
        }
    }
    let text_query = text("q");
    // A text search scans by creation (`console::search`): it has no order by last change.
    let sort = if text_query.is_some() {
        Sort::Created
    } else {
        sort
    };
    Ok(JobQuery {
        state,
        tool: text("tool"),
        client: text("client"),
        created_from: get(p, "from").map(|v| time("from", v)).transpose()?,
        created_to: get(p, "to").map(|v| time("to", v)).transpose()?,
        text: text_query,
        id: text("id"),
        sort,
        after,
        floor: None,
        limit: PAGE,
    })
}

/// The fields of a filter as a form's or link's pairs (no cursor).
pub fn filter_pairs(q: &JobQuery) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let mut add = |k: &'static str, v: Option<String>| {
        if let Some(v) = v {
            out.push((k, v));
        }
    };
    add("state", q.state.map(|s| s.as_str().to_string()));
    add("tool", q.tool.clone());
    add("client", q.client.clone());
    add("from", q.created_from.map(|v| v.to_string()));
    add("to", q.created_to.map(|v| v.to_string()));
    add("q", q.text.clone());
    add("id", q.id.clone());
    if q.sort == Sort::Updated {
        add("sort", Some("updated".into()));
    }
    out
}

/// A query string of these pairs.
pub fn encode(pairs: &[(&str, String)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_round_trip_and_bad_fields_are_named() {
        let p = pairs(b"state=failed&tool=a+b&from=2026-12-01T10:30&after=5.4&sort=updated");
        let q = filter(&p).unwrap();
        assert_eq!(q.state, Some(JobState::Failed));
        assert_eq!(q.tool.as_deref(), Some("a b"));
        assert_eq!(q.created_from, Some(1_796_121_000_000));
        assert_eq!(q.after, Some((5, 4)));
        let again = filter(&pairs(encode(&filter_pairs(&q)).as_bytes())).unwrap();
        assert_eq!(again, JobQuery { after: None, ..q });
        for bad in ["state=done", "sort=x", "after=1", "from=yesterday"] {
            let e = filter(&pairs(bad.as_bytes())).unwrap_err();
            assert_eq!(e.status(), 400, "{bad}");
        }
    }
}
