//! Browsing jobs for the operator's console: the filtered, keyset-paginated list (never
//! `OFFSET`), its count, the per-tool and per-state counts and the activity series, as SQL
//! built once here for both drivers (they differ only in placeholders and in how `errors`
//! reads as text).
//!
//! The list's SQL names only the conditions a filter sets, so each query can use the index
//! that fits it (`migrations/sqlite/0008_console.sql`, `migrations/postgres/0004_console.sql`),
//! and none of them can take the claim's or the enqueue cap's place.
//!
//! It must not run anything: the drivers bind [`Param`]s and execute.

use crate::jobs::JobState;

use super::admin::JobSummary;

/// How the list is ordered, newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sort {
    /// By creation (the row's sequence, which follows creation).
    #[default]
    Created,
    /// By the last change of state: finished, else started, else created.
    Updated,
}

/// Which jobs the console lists: every condition given holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobQuery {
    pub state: Option<JobState>,
    pub tool: Option<String>,
    pub client: Option<String>,
    /// Created at or after / before (ms since the epoch).
    pub created_from: Option<i64>,
    pub created_to: Option<i64>,
    /// A substring of the arguments or of the error history.
    pub text: Option<String>,
    pub id: Option<String>,
    pub sort: Sort,
    /// The cursor: the sort key and sequence of the last row of the previous page.
    pub after: Option<(i64, i64)>,
    /// Only jobs at or above this sequence: one step of an incremental text search
    /// (`console::search`), which scans the table newest first a slice at a time.
    pub floor: Option<i64>,
    pub limit: usize,
}

/// One line of the console's list, with its cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRow {
    pub job: JobSummary,
    pub seq: i64,
    pub key: i64,
}

/// A value to bind, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    Text(String),
    Int(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// The final states. [`FINISHED_TERM`] is the WHERE of PostgreSQL's `jobs_console_client`
/// (migrations/postgres/0006), word for word.
const FINISHED: [&str; 3] = ["succeeded", "failed", "cancelled"];
pub const FINISHED_TERM: &str = "state IN ('succeeded', 'failed', 'cancelled')";
/// The states of `jobs_console_finished`, whose WHERE is [`RARE_TERM`] word for word: the
/// final states a list needs an index for. Succeeded jobs are most of a table: a list of
/// them walks the table newest first (migrations/sqlite/0015).
const RARE: [&str; 2] = ["failed", "cancelled"];
pub const RARE_TERM: &str = "state IN ('failed', 'cancelled')";

/// The activity key of [`Sort::Updated`]; the same expression as the index's.
pub const ACTIVITY: &str = "COALESCE(finished_at, started_at, created_at)";

struct Builder {
    dialect: Dialect,
    conds: Vec<String>,
    params: Vec<Param>,
}

impl Builder {
    fn bind(&mut self, p: Param) -> String {
        self.params.push(p);
        match self.dialect {
            Dialect::Sqlite => format!("?{}", self.params.len()),
            Dialect::Postgres => format!("${}", self.params.len()),
        }
    }

    fn filter(dialect: Dialect, q: &JobQuery) -> Builder {
        let mut b = Builder {
            dialect,
            conds: Vec::new(),
            params: Vec::new(),
        };
        let eq = |b: &mut Builder, col: &str, v: &Option<String>| {
            if let Some(v) = v {
                let p = b.bind(Param::Text(v.clone()));
                b.conds.push(format!("{col} = {p}"));
            }
        };
        if let Some(s) = q.state {
            // A literal (the enum's own names, never input): SQLite uses a partial index
            // only for a WHERE it can match when the statement is prepared.
            b.conds.push(format!("state = '{}'", s.as_str()));
            if RARE.contains(&s.as_str()) {
                b.conds.push(RARE_TERM.to_string());
            }
        }
        eq(&mut b, "tool", &q.tool);
        eq(&mut b, "client_id", &q.client);
        eq(&mut b, "id", &q.id);
        if let Some(t) = q.created_from {
            let p = b.bind(Param::Int(t));
            b.conds.push(format!("created_at >= {p}"));
        }
        if let Some(t) = q.created_to {
            let p = b.bind(Param::Int(t));
            b.conds.push(format!("created_at < {p}"));
        }
        if let Some(floor) = q.floor {
            let p = b.bind(Param::Int(floor));
            b.conds.push(format!("seq >= {p}"));
        }
        if let Some(text) = &q.text {
            // A substring search is a scan of whatever the other conditions leave: the
            // console bounds each request's share of it with `floor` and the cursor.
            let p = b.bind(Param::Text(text.clone()));
            b.conds.push(match dialect {
                Dialect::Sqlite => format!("(instr(args, {p}) > 0 OR instr(errors, {p}) > 0)"),
                Dialect::Postgres => {
                    format!("(strpos(args, {p}) > 0 OR strpos(errors::text, {p}) > 0)")
                }
            });
        }
        b
    }

    fn where_clause(&self) -> String {
        if self.conds.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.conds.join(" AND "))
        }
    }
}

/// The list's page: the SQL and its parameters. Columns: id, client_id, tool, state,
/// attempt, max_attempts, created_at, started_at, finished_at, lease_owner, run_at, seq, key.
pub fn list_sql(dialect: Dialect, q: &JobQuery) -> (String, Vec<Param>) {
    if q.sort == Sort::Created && q.client.is_none() {
        list_by_seq(dialect, q)
    } else {
        list_merged(dialect, q)
    }
}

const LIST_COLUMNS: &str = "id, client_id, tool, state, attempt, max_attempts, created_at, \
     started_at, finished_at, lease_owner, run_at, seq";

/// Newest first by sequence, one statement: the filter's own index, or the table's.
fn list_by_seq(dialect: Dialect, q: &JobQuery) -> (String, Vec<Param>) {
    let mut b = Builder::filter(dialect, q);
    if let Some((_, seq)) = q.after {
        let p = b.bind(Param::Int(seq));
        b.conds.push(format!("seq < {p}"));
    }
    let limit = b.bind(Param::Int(q.limit.clamp(1, 1000) as i64));
    let sql = format!(
        "SELECT {LIST_COLUMNS}, seq FROM jobs {} ORDER BY seq DESC LIMIT {limit}",
        b.where_clause()
    );
    (sql, b.params)
}

/// The states that are not final, each with a partial index of its own (the claim's, the
/// running jobs', the in-doubt and the input-required ones).
const UNFINISHED: [&str; 4] = ["queued", "running", "in_doubt", "input_required"];

/// One branch of a merged list or count: which rows (its WHERE head, matching an index's)
/// and their sort key.
struct Branch {
    head: String,
    key: &'static str,
}

/// The branches that together hold every job the filter can match, each exactly once.
///
/// Newest change first ([`Sort::Updated`]) has no index of its own (its key changes at
/// every claim and completion, and such an index cost a quarter of the drain rate): finished
/// jobs, whose last change is `finished_at`, walk `jobs_finished` backwards, so a page reads
/// about as many rows as it shows; each unfinished state (last change: its start, else its
/// creation) reads its own partial index and sorts those rows, in proportion to that
/// state's backlog. `finished_at` is set exactly when a job reaches a final state.
///
/// One client's jobs by sequence: on PostgreSQL the client index holds finished jobs only
/// (migrations/postgres/0006: an index entry per row version, and claims and completions
/// write a new version), so finished jobs come from it and the unfinished states from
/// their own indexes.
fn branches(q: &JobQuery) -> Vec<Branch> {
    let wanted = q.state.map(|s| s.as_str());
    let updated = q.sort == Sort::Updated;
    let mut out = Vec::new();
    if wanted.is_none_or(|s| FINISHED.contains(&s)) {
        out.push(if updated {
            Branch {
                head: "finished_at IS NOT NULL".into(),
                key: "finished_at",
            }
        } else {
            Branch {
                head: FINISHED_TERM.into(),
                key: "seq",
            }
        });
    }
    for s in UNFINISHED {
        if wanted.is_none_or(|w| w == s) {
            out.push(Branch {
                head: format!("state = '{s}' AND finished_at IS NULL"),
                key: if updated {
                    "COALESCE(started_at, created_at)"
                } else {
                    "seq"
                },
            });
        }
    }
    out
}

/// A page merged from [`branches`], each already in order and cut at the page's size.
fn list_merged(dialect: Dialect, q: &JobQuery) -> (String, Vec<Param>) {
    let mut b = Builder::filter(dialect, q);
    let cursor = q.after.map(|(k, seq)| {
        let pk = b.bind(Param::Int(k));
        let ps = b.bind(Param::Int(seq));
        (pk, ps)
    });
    let limit = b.bind(Param::Int(q.limit.clamp(1, 1000) as i64));
    let parts: Vec<String> = branches(q)
        .into_iter()
        .enumerate()
        .map(|(i, br)| {
            let key = br.key;
            let mut conds = vec![br.head];
            conds.extend(b.conds.iter().cloned());
            match &cursor {
                Some((_, ps)) if key == "seq" => conds.push(format!("seq < {ps}")),
                Some((pk, ps)) => {
                    conds.push(format!("({key} < {pk} OR ({key} = {pk} AND seq < {ps}))"))
                }
                None => {}
            }
            format!(
                "SELECT * FROM (SELECT {LIST_COLUMNS}, {key} AS k FROM jobs WHERE {} \
                 ORDER BY {key} DESC, seq DESC LIMIT {limit}) AS b{i}",
                conds.join(" AND ")
            )
        })
        .collect();
    let sql = format!(
        "SELECT * FROM ({}) AS m ORDER BY k DESC, seq DESC LIMIT {limit}",
        parts.join(" UNION ALL ")
    );
    (sql, b.params)
}

/// The newest job's sequence (0 on an empty table): where an incremental search starts.
pub const NEWEST_SEQ_SQL: &str = "SELECT CAST(coalesce(max(seq), 0) AS BIGINT) FROM jobs";

/// Counts stop here ("10000+"): an exact count of a broad filter over a million rows costs
/// a scan per page view, and nobody needs the exact figure past this.
pub const COUNT_CAP: u64 = 10_000;

/// How many jobs match (the cursor and limit ignored), up to [`COUNT_CAP`] + 1: one column.
pub fn count_sql(dialect: Dialect, q: &JobQuery) -> (String, Vec<Param>) {
    let b = Builder::filter(dialect, q);
    if q.client.is_some() {
        // The same branches as the list's, each counted up to the cap.
        let parts: Vec<String> = branches(&JobQuery {
            sort: Sort::Created,
            ..q.clone()
        })
        .into_iter()
        .enumerate()
        .map(|(i, br)| {
            let mut conds = vec![br.head];
            conds.extend(b.conds.iter().cloned());
            format!(
                "SELECT count(*) AS n FROM (SELECT 1 FROM jobs WHERE {} LIMIT {}) AS c{i}",
                conds.join(" AND "),
                COUNT_CAP + 1
            )
        })
        .collect();
        return (
            format!(
                "SELECT CAST(sum(n) AS BIGINT) FROM ({}) AS m",
                parts.join(" UNION ALL ")
            ),
            b.params,
        );
    }
    (
        format!(
            "SELECT count(*) FROM (SELECT 1 FROM jobs {} LIMIT {}) AS m",
            b.where_clause(),
            COUNT_CAP + 1
        ),
        b.params,
    )
}

/// Every job by tool and state: (tool, state, count). Each arm matches one partial index's
/// WHERE (finished states: `jobs_finished`, which carries state and tool; the others: the
/// claim's, the lease's, the in-doubt and input indexes), so none reads a table row.
/// `finished_at` is set exactly when a job reaches a final state.
pub const COUNTS_SQL: &str = "\
SELECT tool, state, count(*) FROM jobs WHERE finished_at IS NOT NULL GROUP BY state, tool \
UNION ALL SELECT tool, 'queued', count(*) FROM jobs WHERE state = 'queued' GROUP BY tool \
UNION ALL SELECT tool, 'running', count(*) FROM jobs WHERE state = 'running' GROUP BY tool \
UNION ALL SELECT tool, 'in_doubt', count(*) FROM jobs WHERE state = 'in_doubt' GROUP BY tool \
UNION ALL SELECT tool, 'input_required', count(*) FROM jobs WHERE state = 'input_required' GROUP BY tool";

/// The activity between two times, in buckets, by tool: (bucket index, tool, kind, count),
/// where kind is `enqueued` or a final state. Parameters: since, bucket width, until (ms).
pub fn series_sql(dialect: Dialect) -> String {
    let (s, w, u) = match dialect {
        Dialect::Sqlite => ("?1", "?2", "?3"),
        Dialect::Postgres => ("$1", "$2", "$3"),
    };
    format!(
        "SELECT (created_at - {s}) / {w}, tool, 'enqueued', count(*) FROM jobs \
         WHERE created_at >= {s} AND created_at < {u} GROUP BY 1, 2 \
         UNION ALL \
         SELECT (finished_at - {s}) / {w}, tool, state, count(*) FROM jobs \
         WHERE finished_at IS NOT NULL AND finished_at >= {s} AND finished_at < {u} \
         GROUP BY 1, 2, 3"
    )
}

/// Jobs finished since a time, by tool and final state: (tool, state, count). One
/// parameter: since (ms). Walks the `finished_at` index.
pub fn recent_sql(dialect: Dialect) -> String {
    let s = match dialect {
        Dialect::Sqlite => "?1",
        Dialect::Postgres => "$1",
    };
    format!(
        "SELECT tool, state, count(*) FROM jobs WHERE finished_at IS NOT NULL \
         AND finished_at >= {s} GROUP BY tool, state"
    )
}

/// (tool, state, count) rows.
pub type ToolStateCounts = Vec<(String, JobState, u64)>;
/// [`series_sql`]'s rows: (bucket index, tool, kind, count).
pub type SeriesRows = Vec<(i64, String, String, i64)>;

/// Jobs enqueued, succeeded and failed within one bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub enqueued: u64,
    pub succeeded: u64,
    pub failed: u64,
}

impl Tally {
    fn add(&mut self, kind: &str, count: u64) {
        match kind {
            "enqueued" => self.enqueued += count,
            "succeeded" => self.succeeded += count,
            "failed" | "in_doubt" => self.failed += count,
            _ => {}
        }
    }

    pub fn plus(&mut self, o: &Tally) {
        self.enqueued += o.enqueued;
        self.succeeded += o.succeeded;
        self.failed += o.failed;
    }
}

/// One point of the activity series: all tools, and each tool's share.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bucket {
    /// Start of the bucket (ms since the epoch).
    pub start: i64,
    pub all: Tally,
    pub tools: std::collections::BTreeMap<String, Tally>,
}

impl Bucket {
    pub fn empty(start: i64) -> Bucket {
        Bucket {
            start,
            ..Bucket::default()
        }
    }

    /// `o`'s jobs added to this bucket's (a wider bucket summed from narrower ones).
    pub fn absorb(&mut self, o: &Bucket) {
        self.all.plus(&o.all);
        for (tool, t) in &o.tools {
            self.tools.entry(tool.clone()).or_default().plus(t);
        }
    }
}

/// The rows of [`series_sql`] as `n` consecutive buckets from `since`.
pub fn buckets(
    rows: &[(i64, String, String, i64)],
    since: i64,
    width: i64,
    n: usize,
) -> Vec<Bucket> {
    let mut out: Vec<Bucket> = (0..n)
        .map(|i| Bucket::empty(since + i as i64 * width))
        .collect();
    for (i, tool, kind, count) in rows {
        let Some(b) = usize::try_from(*i).ok().and_then(|i| out.get_mut(i)) else {
            continue;
        };
        let count = (*count).max(0) as u64;
        b.all.add(kind, count);
        b.tools.entry(tool.clone()).or_default().add(kind, count);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_conditions_given_are_in_the_sql() {
        let q = JobQuery {
            state: Some(JobState::Failed),
            tool: Some("t".into()),
            limit: 50,
            ..JobQuery::default()
        };
        let (sql, params) = list_sql(Dialect::Sqlite, &q);
        assert!(
            sql.contains(&format!(
                "WHERE state = 'failed' AND {RARE_TERM} AND tool = ?1 ORDER BY seq DESC LIMIT ?2"
            )),
            "{sql}"
        );
        assert_eq!(params.len(), 2);
        assert!(COUNTS_SQL.contains("WHERE finished_at IS NOT NULL GROUP BY state, tool"));
        assert!(!sql.to_lowercase().contains("offset"));
        let q = JobQuery {
            sort: Sort::Updated,
            after: Some((10, 5)),
            text: Some("x".into()),
            limit: 5,
            ..JobQuery::default()
        };
        let (sql, params) = list_sql(Dialect::Postgres, &q);
        assert!(sql.contains("strpos(errors::text, $1)"), "{sql}");
        assert!(sql.contains("(finished_at < $2 OR (finished_at = $2 AND seq < $3))"));
        assert!(
            sql.contains("state = 'running' AND finished_at IS NULL"),
            "{sql}"
        );
        assert_eq!(sql.matches(" UNION ALL ").count(), 4, "{sql}");
        assert_eq!(
            params,
            vec![
                Param::Text("x".into()),
                Param::Int(10),
                Param::Int(5),
                Param::Int(5)
            ]
        );
        // A final state needs only the finished branch; an unfinished one only its own.
        let failed = JobQuery {
            sort: Sort::Updated,
            state: Some(JobState::Failed),
            limit: 5,
            ..JobQuery::default()
        };
        let (sql, _) = list_sql(Dialect::Sqlite, &failed);
        assert!(!sql.contains("UNION ALL") && sql.contains("finished_at IS NOT NULL"));
        let queued = JobQuery {
            state: Some(JobState::Queued),
            ..failed
        };
        let (sql, _) = list_sql(Dialect::Sqlite, &queued);
        assert!(!sql.contains("UNION ALL") && sql.contains("state = 'queued' AND"));
    }

    #[test]
    fn buckets_ignore_rows_out_of_range() {
        let row =
            |i: i64, tool: &str, kind: &str, n: i64| (i, tool.to_string(), kind.to_string(), n);
        let rows = vec![
            row(0, "a", "enqueued", 3),
            row(1, "a", "failed", 2),
            row(1, "b", "failed", 1),
            row(9, "a", "succeeded", 1),
            row(-1, "a", "succeeded", 1),
        ];
        let b = buckets(&rows, 1000, 10, 2);
        assert_eq!(
            (b[0].all.enqueued, b[1].all.failed, b[1].start),
            (3, 3, 1010)
        );
        assert_eq!(b[1].tools["a"].failed, 2);
        let mut sum = Bucket::empty(1000);
        sum.absorb(&b[0]);
        sum.absorb(&b[1]);
        assert_eq!(
            (sum.all.enqueued, sum.all.failed, sum.tools["b"].failed),
            (3, 3, 1)
        );
    }
}
