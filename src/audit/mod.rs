//! The audit trail's records and their hash chain, pure: what one record holds
//! ([`Entry`]), its canonical bytes, how a batch of entries is sealed onto the chain's head
//! ([`seal`]) and how a stored chain is checked ([`Verifier`]). docs/AUDIT.md describes it.
//!
//! Each record holds the SHA-256 of the previous record's canonical bytes (`prev`) and of
//! its own (`digest`), so an edited, deleted or reordered record breaks the chain at its
//! sequence number. The batched writer that coalesces refusals is [`writer`] (a layer up:
//! it needs the store), `mcpq audit verify|export` is [`cli`] (with the operator's tools);
//! the drivers write sealed records in their group commits.
//!
//! It must not know a database, HTTP or the clock: callers pass the time.

pub mod cli;
pub mod writer;

use sha2::{Digest, Sha256};

/// The `prev` of the first record ever written: 64 zeros.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What a record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An authenticated call (`/v1/call`, `/mcp` `tools/call`, a schedule's tick).
    Call,
    /// A call refused before it was admitted (authentication, rate limit), coalesced.
    Refusal,
    /// An operator's action (`mcpq jobs …`, the console).
    Operator,
    /// A configuration (and key) reload.
    Reload,
    /// Records older than the retention were pruned (the chain's new checkpoint).
    Prune,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Call => "call",
            Kind::Refusal => "refusal",
            Kind::Operator => "operator",
            Kind::Reload => "reload",
            Kind::Prune => "prune",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "call" => Kind::Call,
            "refusal" => Kind::Refusal,
            "operator" => Kind::Operator,
            "reload" => Kind::Reload,
            "prune" => Kind::Prune,
            _ => return None,
        })
    }
}

/// One audit record before it is sealed onto the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// When (ms since the epoch); a coalesced refusal: the first of its second.
    pub at: i64,
    pub kind: Kind,
    /// Who: the client id (as claimed, for a refusal before the signature proved it), the
    /// operator's name, or the process for a reload.
    pub actor: String,
    /// The tool called, or the operator's verb (`jobs.retry`).
    pub tool: Option<String>,
    /// SHA-256 (hex) of the call's canonical arguments.
    pub args_digest: Option<String>,
    /// The canonical arguments themselves, only for tools in `[audit] full_arguments`.
    pub args: Option<String>,
    /// The outcome code: `accepted`, `ok`, a wire error code (`bad_signature`, …), `done`.
    pub outcome: String,
    /// How many identical refusals this record stands for (1 for everything else).
    pub count: u32,
    pub request_id: Option<String>,
    pub job_id: Option<String>,
    /// The W3C trace id, where a trace is known.
    pub trace_id: Option<String>,
    /// The endpoint (`v1`, `mcp`, `schedule`), the operator's target, a reload's summary.
    pub detail: Option<String>,
}

impl Entry {
    /// An entry of `kind` by `actor` with outcome `outcome`, every other field empty.
    pub fn new(at: i64, kind: Kind, actor: &str, outcome: &str) -> Entry {
        Entry {
            at,
            kind,
            actor: actor.to_string(),
            tool: None,
            args_digest: None,
            args: None,
            outcome: outcome.to_string(),
            count: 1,
            request_id: None,
            job_id: None,
            trace_id: None,
            detail: None,
        }
    }
}

/// SHA-256 (hex) of canonical arguments.
pub fn args_digest(canonical_args: &str) -> String {
    crate::hex::lower(&Sha256::digest(canonical_args.as_bytes()))
}

/// A sealed record: its place in the chain and its digests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub seq: i64,
    pub entry: Entry,
    /// `digest` of the record before (or the checkpoint's, or [`GENESIS`]).
    pub prev: String,
    /// SHA-256 (hex) of this record's [`canonical`] bytes.
    pub digest: String,
}

/// The chain's end: the last record's sequence number and digest (0 and [`GENESIS`] for an
/// empty chain), and the checkpoint of what retention pruned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub seq: i64,
    pub digest: String,
}

impl Head {
    pub fn genesis() -> Head {
        Head {
            seq: 0,
            digest: GENESIS.to_string(),
        }
    }
}

fn opt(v: &Option<String>, out: &mut String) {
    match v {
        Some(s) => crate::json::write_str(s, out),
        None => out.push_str("null"),
    }
}

/// The bytes a record's digest covers: a JSON array of every field in a fixed order,
/// strings escaped as canonical JSON (ASCII only), `prev` included.
pub fn canonical(seq: i64, e: &Entry, prev: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(256);
    let _ = write!(out, "[{seq},{},", e.at);
    crate::json::write_str(e.kind.as_str(), &mut out);
    out.push(',');
    crate::json::write_str(&e.actor, &mut out);
    for f in [&e.tool, &e.args_digest, &e.args] {
        out.push(',');
        opt(f, &mut out);
    }
    out.push(',');
    crate::json::write_str(&e.outcome, &mut out);
    let _ = write!(out, ",{}", e.count);
    for f in [&e.request_id, &e.job_id, &e.trace_id, &e.detail] {
        out.push(',');
        opt(f, &mut out);
    }
    out.push(',');
    crate::json::write_str(prev, &mut out);
    out.push(']');
    out
}

/// The digest of a record's canonical bytes.
pub fn digest_of(seq: i64, e: &Entry, prev: &str) -> String {
    crate::hex::lower(&Sha256::digest(canonical(seq, e, prev).as_bytes()))
}

/// Seals `entries` in order onto the chain ending at `head`; returns the records and the
/// new head.
pub fn seal(head: &Head, entries: Vec<Entry>) -> (Vec<Record>, Head) {
    let mut seq = head.seq;
    let mut prev = head.digest.clone();
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        seq += 1;
        let digest = digest_of(seq, &entry, &prev);
        out.push(Record {
            seq,
            entry,
            prev: std::mem::replace(&mut prev, digest.clone()),
            digest,
        });
    }
    (out, Head { seq, digest: prev })
}

/// [`seal`] without building records: `each` gets every entry's seq, `prev` and digest in
/// order (the SQLite writer writes its rows straight from them). Returns the new head.
pub fn seal_with(
    head: &Head,
    entries: &[Entry],
    mut each: impl FnMut(i64, &Entry, &str, &str),
) -> Head {
    let mut seq = head.seq;
    let mut prev = head.digest.clone();
    for e in entries {
        seq += 1;
        let digest = digest_of(seq, e, &prev);
        each(seq, e, &prev, &digest);
        prev = digest;
    }
    Head { seq, digest: prev }
}

/// Where and why a chain is broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    /// The first sequence number that does not check out.
    pub seq: i64,
    pub why: String,
}

/// Checks a chain read in sequence order, a page at a time: starts from the checkpoint
/// (the last pruned record's seq and digest, or genesis), ends at the stored head.
pub struct Verifier {
    expect_seq: i64,
    expect_prev: String,
    pub checked: u64,
}

impl Verifier {
    pub fn new(checkpoint: &Head) -> Verifier {
        Verifier {
            expect_seq: checkpoint.seq + 1,
            expect_prev: checkpoint.digest.clone(),
            checked: 0,
        }
    }

    /// The next record in order.
    pub fn next(&mut self, r: &Record) -> Result<(), Broken> {
        let bad = |why: String| Broken {
            seq: self.expect_seq,
            why,
        };
        if r.seq > self.expect_seq {
            return Err(bad(format!(
                "record {} is missing (the next stored is {})",
                self.expect_seq, r.seq
            )));
        }
        if r.seq < self.expect_seq {
            return Err(bad(format!(
                "record {} is out of order (expected {})",
                r.seq, self.expect_seq
            )));
        }
        if r.prev != self.expect_prev {
            return Err(bad(format!(
                "record {} does not follow the one before it (prev {} , expected {})",
                r.seq,
                short(&r.prev),
                short(&self.expect_prev)
            )));
        }
        let digest = digest_of(r.seq, &r.entry, &r.prev);
        if digest != r.digest {
            return Err(bad(format!(
                "record {} was altered (its content hashes to {}, stored {})",
                r.seq,
                short(&digest),
                short(&r.digest)
            )));
        }
        self.expect_seq += 1;
        self.expect_prev = digest;
        self.checked += 1;
        Ok(())
    }

    /// After the last record: the stored head must be where the chain ended.
    pub fn finish(&self, head: &Head) -> Result<(), Broken> {
        if head.seq != self.expect_seq - 1 {
            return Err(Broken {
                seq: self.expect_seq,
                why: format!(
                    "the chain ends at record {} but its head says {}: records {}..={} are missing",
                    self.expect_seq - 1,
                    head.seq,
                    self.expect_seq,
                    head.seq
                ),
            });
        }
        if head.digest != self.expect_prev {
            return Err(Broken {
                seq: head.seq,
                why: format!("record {} does not match the chain's head", head.seq),
            });
        }
        Ok(())
    }
}

fn short(d: &str) -> &str {
    &d[..d.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(n: usize) -> Vec<Entry> {
        (0..n)
            .map(|i| {
                let mut e = Entry::new(1000 + i as i64, Kind::Call, "alice", "ok");
                e.tool = Some("batch_sum".into());
                e.args_digest = Some(args_digest(r#"{"numbers":[1]}"#));
                e
            })
            .collect()
    }

    fn check(records: &[Record], head: &Head) -> Result<u64, Broken> {
        let mut v = Verifier::new(&Head::genesis());
        for r in records {
            v.next(r)?;
        }
        v.finish(head)?;
        Ok(v.checked)
    }

    #[test]
    fn a_sealed_chain_verifies_and_continues_from_its_head() {
        let (mut a, head) = seal(&Head::genesis(), entries(3));
        let (b, head) = seal(&head, entries(2));
        a.extend(b);
        assert_eq!(a.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
        assert_eq!(check(&a, &head), Ok(5));
    }

    #[test]
    fn edits_deletions_swaps_and_truncation_name_the_first_bad_record() {
        let (good, head) = seal(&Head::genesis(), entries(5));
        let mut edited = good.clone();
        edited[2].entry.outcome = "bad_signature".into();
        assert_eq!(check(&edited, &head).unwrap_err().seq, 3);
        let mut deleted = good.clone();
        deleted.remove(1);
        assert_eq!(check(&deleted, &head).unwrap_err().seq, 2);
        let mut swapped = good.clone();
        swapped.swap(1, 3);
        assert_eq!(check(&swapped, &head).unwrap_err().seq, 2);
        // Swapping the contents but keeping the numbers in order.
        let mut renumbered = good.clone();
        renumbered.swap(1, 3);
        renumbered[1].seq = 2;
        renumbered[3].seq = 4;
        assert_eq!(check(&renumbered, &head).unwrap_err().seq, 2);
        let truncated = &good[..4];
        assert_eq!(check(truncated, &head).unwrap_err().seq, 5);
    }

    #[test]
    fn canonical_bytes_are_ascii_and_fixed() {
        let mut e = Entry::new(5, Kind::Refusal, "é\"x", "bad_signature");
        e.count = 7;
        assert_eq!(
            canonical(9, &e, GENESIS),
            format!(
                r#"[9,5,"refusal","\u00e9\"x",null,null,null,"bad_signature",7,null,null,null,null,"{GENESIS}"]"#
            )
        );
    }
}
