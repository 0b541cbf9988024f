//! The audit trail (docs/AUDIT.md), on the real binary: accepted calls, refusals with their
//! codes, operator actions and a SIGHUP reload become records; `mcpq audit verify` passes on
//! the chain and names the first bad record once one is edited, deleted or two are swapped;
//! `mcpq audit export --since` writes JSON lines; identical refusals are coalesced; retention
//! keeps the chain verifiable; on PostgreSQL two daemons under concurrent writers keep one
//! chain. SQLite always, PostgreSQL when `MCPQ_TEST_PG_URL` is set.

use std::time::Duration;

use crate::common::*;
use mcpq::config::Secret;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const TOKEN: &str = "dev-only-mcp-token-00000000000000000000000000000000";
const EXTRA: &str = "[audit]\nfull_arguments = [\"batch_sum\"]\n";

fn sighup(p: &Proc) {
    let st = std::process::Command::new("kill")
        .args(["-HUP", &p.pid().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

/// Every record `mcpq audit export` writes (since `since`, if given).
async fn export(env: &TestEnv, since: Option<&str>) -> Vec<Value> {
    let mut a = vec!["audit", "export"];
    if let Some(s) = since {
        a.extend(["--since", s]);
    }
    let (code, out, err) = env.run(&a).await;
    assert_eq!(code, 0, "audit export failed: {err}");
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// `mcpq audit verify --json`: (exit code, its answer).
async fn verify(env: &TestEnv) -> (i32, Value) {
    let (code, out, err) = env.run(&["audit", "verify", "--json"]).await;
    let v = serde_json::from_str(out.trim()).unwrap_or_else(|_| panic!("verify: {out} {err}"));
    (code, v)
}

fn find(records: &[Value], pred: impl Fn(&Value) -> bool) -> Vec<&Value> {
    records.iter().filter(|r| pred(r)).collect()
}

fn is(r: &Value, kind: &str, actor: &str, outcome: &str) -> bool {
    r["kind"] == kind && r["actor"] == actor && r["outcome"] == outcome
}

/// Sums the counts of the refusal records of (actor, code).
fn refusals(records: &[Value], actor: &str, code: &str) -> u64 {
    find(records, |r| is(r, "refusal", actor, code))
        .iter()
        .map(|r| r["count"].as_u64().unwrap())
        .sum()
}

/// A `/mcp` tools/call (2025-11-25 framing) with `token`; the HTTP status.
async fn mcp_call(d: &Daemon, token: &str, tool: &str, arguments: Value) -> u16 {
    let body = json!({"jsonrpc": "2.0", "id": "rpc-7", "method": "tools/call",
                      "params": {"name": tool, "arguments": arguments}})
    .to_string();
    let req = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Accept: application/json\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    raw_http(d.addr, req.as_bytes()).await.0
}

/// Runs SQL on the environment's database (SQLite file or PostgreSQL schema).
async fn sql(env: &TestEnv, statements: &[&str]) {
    if env.pg.is_some() {
        let pool = env.pg_pool().await;
        for s in statements {
            sqlx::query(s).execute(&pool).await.unwrap();
        }
        pool.close().await;
    } else {
        let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(env.db_path());
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await
            .unwrap();
        for s in statements {
            sqlx::query(s).execute(&pool).await.unwrap();
        }
        pool.close().await;
    }
}

/// One way of tampering with the stored chain, as someone with the database file would.
#[derive(Debug, Clone, Copy)]
enum Tamper {
    /// Sets record `seq`'s actor to `mallory`.
    Edit(i64),
    /// Deletes record `seq`.
    Delete(i64),
    /// Swaps the places of two records (each takes the other's sequence number).
    Swap(i64, i64),
}

/// The element of record `seq` in its SQLite pack, as a JSON path.
fn at(seq: i64) -> String {
    format!("('$[' || ({seq} - first_seq) || ']')")
}

fn in_pack(seq: i64) -> String {
    format!("{seq} BETWEEN first_seq AND last_seq")
}

impl Tamper {
    /// The statements, per store: PostgreSQL keeps a row per record (`audit`), SQLite a row
    /// per group commit (`audit_packs`, positional records; index 0 the seq, 3 the actor).
    fn statements(self, pg: bool) -> Vec<String> {
        match (self, pg) {
            (Tamper::Edit(s), true) => {
                vec![format!(
                    "UPDATE audit SET actor = 'mallory' WHERE seq = {s}"
                )]
            }
            (Tamper::Delete(s), true) => vec![format!("DELETE FROM audit WHERE seq = {s}")],
            (Tamper::Swap(a, b), true) => vec![
                format!("UPDATE audit SET seq = -1 WHERE seq = {a}"),
                format!("UPDATE audit SET seq = {a} WHERE seq = {b}"),
                format!("UPDATE audit SET seq = {b} WHERE seq = -1"),
            ],
            (Tamper::Edit(s), false) => vec![format!(
                "UPDATE audit_packs SET records = json_replace(records, {} || '[3]', 'mallory') \
                 WHERE {}",
                at(s),
                in_pack(s)
            )],
            (Tamper::Delete(s), false) => vec![format!(
                "UPDATE audit_packs SET records = json_remove(records, {}) WHERE {}",
                at(s),
                in_pack(s)
            )],
            (Tamper::Swap(a, b), false) => {
                // Each record, renumbered, goes where the other was.
                let moved = |from: i64, to: i64| {
                    format!(
                        "(SELECT json_set(records -> {}, '$[0]', {to}) FROM audit_packs \
                         WHERE {})",
                        at(from),
                        in_pack(from)
                    )
                };
                vec![
                    format!(
                        "CREATE TABLE swapped AS SELECT {} AS a, {} AS b",
                        moved(b, a),
                        moved(a, b)
                    ),
                    format!(
                        "UPDATE audit_packs SET records = json_replace(records, {}, \
                         json((SELECT a FROM swapped))) WHERE {}",
                        at(a),
                        in_pack(a)
                    ),
                    format!(
                        "UPDATE audit_packs SET records = json_replace(records, {}, \
                         json((SELECT b FROM swapped))) WHERE {}",
                        at(b),
                        in_pack(b)
                    ),
                    "DROP TABLE swapped".into(),
                ]
            }
        }
    }
}

/// Tampers with the stored chain, checks that verify fails at `first_bad`, then restores
/// the records and checks that it passes again.
async fn tamper(env: &TestEnv, how: Tamper, first_bad: i64) {
    let table = if env.pg.is_some() {
        "audit"
    } else {
        "audit_packs"
    };
    sql(
        env,
        &[&format!("CREATE TABLE audit_copy AS SELECT * FROM {table}")],
    )
    .await;
    let statements = how.statements(env.pg.is_some());
    let statements: Vec<&str> = statements.iter().map(String::as_str).collect();
    sql(env, &statements).await;
    let (code, v) = verify(env).await;
    assert_eq!(code, 1, "verify must fail after {how:?}: {v}");
    assert_eq!(v["ok"], false);
    assert_eq!(v["first_bad_seq"], first_bad, "{how:?}: {v}");
    sql(
        env,
        &[
            &format!("DELETE FROM {table}"),
            &format!("INSERT INTO {table} SELECT * FROM audit_copy"),
            "DROP TABLE audit_copy",
        ],
    )
    .await;
    let (code, v) = verify(env).await;
    assert_eq!(code, 0, "restored chain: {v}");
}

async fn records_and_tamper_evidence(env: TestEnv) {
    let env = env
        .set("MCPQ__SERVER__EMBEDDED_WORKERS", "0")
        .set("MCPQ__LIMITS__RATE_PER_CLIENT", "0.01")
        .set("MCPQ__LIMITS__RATE_BURST", "40");
    let started = now_ms();
    let d = env.spawn_daemon().await;
    let mut c1 = env.client(&d).await;

    // Accepted: a sync call (its arguments kept in full: batch_sum opts in) and a job.
    let ok = c1
        .call("batch_sum", args(r#"{"numbers":[1,2]}"#))
        .await
        .unwrap();
    assert!(ok.ok, "{}", ok.raw);
    let job = job_id(
        &c1.call("start_long_task", args(r#"{"seconds":20}"#))
            .await
            .unwrap(),
    );
    // Refused after admission: one record each, with the code.
    let bad = c1
        .call("batch_sum", args(r#"{"numbers":"x"}"#))
        .await
        .unwrap();
    assert_eq!(bad.error_code(), Some("invalid_args"), "{}", bad.raw);
    // Refused before admission, coalesced: bad signature (x3), stale timestamp, unknown
    // key, replayed nonce.
    let mut wrong = mcpq::client::Client::connect(
        env.client2_settings(&d, "not-the-key-0000000000000000000000000"),
    )
    .await
    .unwrap();
    for _ in 0..3 {
        let r = wrong
            .call("batch_sum", args(r#"{"numbers":[1]}"#))
            .await
            .unwrap();
        assert_eq!(r.error_code(), Some("bad_signature"));
    }
    let stale = c1.envelope_at(
        "batch_sum",
        args(r#"{"numbers":[1]}"#),
        now_ms() - 3_600_000,
    );
    assert_eq!(
        c1.send(&stale).await.unwrap().1.error_code(),
        Some("stale_timestamp")
    );
    let mut s = env.client_settings(&d);
    s.client_id = "nobody".into();
    s.secret = Secret::new(b"nobody-secret-000000000000000000000000".to_vec());
    let mut nobody = mcpq::client::Client::connect(s).await.unwrap();
    let r = nobody
        .call("batch_sum", args(r#"{"numbers":[1]}"#))
        .await
        .unwrap();
    assert_eq!(r.error_code(), Some("unknown_client"));
    let once = c1.envelope("batch_sum", args(r#"{"numbers":[5]}"#));
    assert!(c1.send(&once).await.unwrap().1.ok);
    assert_eq!(
        c1.send(&once).await.unwrap().1.error_code(),
        Some("replayed_nonce")
    );
    // Rate limited: client-002 past its burst.
    let mut c2 = mcpq::client::Client::connect(env.client2_settings(&d, CLIENT2_CURRENT))
        .await
        .unwrap();
    let mut limited = 0u64;
    for _ in 0..60 {
        let r = c2
            .call("batch_sum", args(r#"{"numbers":[1]}"#))
            .await
            .unwrap();
        if r.error_code() == Some("rate_limited") {
            limited += 1;
        }
    }
    assert!(limited > 0);
    // Standard MCP: a tools/call, and a refused token.
    assert_eq!(
        mcp_call(&d, TOKEN, "batch_sum", json!({"numbers": [3]})).await,
        200
    );
    assert_eq!(
        mcp_call(&d, "wrong-token", "batch_sum", json!({})).await,
        401
    );
    // Operator actions, from the CLI while the daemon runs.
    let (code, _, err) = env.run(&["jobs", "cancel", &job]).await;
    assert_eq!(code, 0, "{err}");
    let (code, _, _) = env.run(&["jobs", "retry", &job]).await;
    assert_eq!(code, 4, "a cancelled job is not retried");
    let (code, _, err) = env.run(&["jobs", "pause", "start_long_task"]).await;
    assert_eq!(code, 0, "{err}");
    // A reload (SIGHUP) of the same configuration.
    sighup(&d.proc);
    eventually(Duration::from_secs(10), "the reload's record", || async {
        export(&env, None)
            .await
            .iter()
            .any(|r| r["kind"] == "reload")
    })
    .await;
    let mut d = d;
    d.proc.sigterm().await;

    let all = export(&env, None).await;
    let call = find(&all, |r| {
        is(r, "call", "client-001", "ok") && r["tool"] == "batch_sum"
    });
    let canonical = r#"{"numbers":[1,2]}"#;
    let digest = hex::encode(Sha256::digest(canonical.as_bytes()));
    let first = call
        .iter()
        .find(|r| r["args_digest"] == digest.as_str())
        .expect("the sync call");
    assert_eq!(first["args"], canonical, "batch_sum keeps its arguments");
    assert_eq!(first["detail"], "v1");
    assert!(first["request_id"].as_str().is_some_and(|s| !s.is_empty()));
    let accepted = find(&all, |r| is(r, "call", "client-001", "accepted"));
    assert_eq!(accepted.len(), 1, "{accepted:?}");
    assert_eq!(accepted[0]["job_id"], job.as_str());
    assert_eq!(accepted[0]["tool"], "start_long_task");
    assert_eq!(
        accepted[0]["args"],
        Value::Null,
        "only a digest for other tools"
    );
    assert!(accepted[0]["args_digest"].as_str().is_some());
    assert_eq!(
        find(&all, |r| is(r, "call", "client-001", "invalid_args")).len(),
        1
    );
    assert_eq!(refusals(&all, "client-002", "bad_signature"), 3);
    assert_eq!(refusals(&all, "client-001", "stale_timestamp"), 1);
    assert_eq!(refusals(&all, "nobody", "unknown_client"), 1);
    assert_eq!(refusals(&all, "client-001", "replayed_nonce"), 1);
    assert_eq!(refusals(&all, "client-002", "rate_limited"), limited);
    assert_eq!(refusals(&all, "", "unauthorized"), 1);
    let mcp = find(&all, |r| {
        is(r, "call", "client-001", "ok") && r["detail"] == "mcp"
    });
    assert_eq!(mcp.len(), 1, "{mcp:?}");
    assert_eq!(mcp[0]["request_id"], "rpc-7");
    let op = |verb: &str, outcome: &str| {
        find(&all, |r| {
            r["kind"] == "operator" && r["tool"] == verb && r["outcome"] == outcome
        })
        .len()
    };
    assert_eq!(op("jobs.cancel", "cancelled"), 1);
    assert_eq!(op("jobs.retry", "wrong_state"), 1);
    assert_eq!(op("jobs.pause", "paused"), 1);
    assert_eq!(find(&all, |r| is(r, "reload", "SIGHUP", "ok")).len(), 1);
    // The chain: numbered from 1 without a gap, each record holding its predecessor's digest.
    for (i, r) in all.iter().enumerate() {
        assert_eq!(r["seq"], i as i64 + 1);
        if i > 0 {
            assert_eq!(r["prev"], all[i - 1]["digest"]);
        }
    }

    // Export since a time: only what was written from then on.
    let (code, v) = verify(&env).await;
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["records"], all.len());
    let cut = all[all.len() / 2]["at"].as_i64().unwrap();
    let since =
        humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_millis(cut as u64))
            .to_string();
    let later = export(&env, Some(&since)).await;
    assert!(!later.is_empty() && later.len() < all.len());
    assert!(later.iter().all(|r| r["at"].as_i64().unwrap() >= cut));
    assert_eq!(
        later.len(),
        all.iter()
            .filter(|r| r["at"].as_i64().unwrap() >= cut)
            .count()
    );
    assert!(export(&env, Some("2999-01-01T00:00:00Z")).await.is_empty());
    assert!(all[0]["at"].as_i64().unwrap() >= started);

    // Tampering: an edited record, a deleted one, two swapped; the first bad one is named.
    tamper(&env, Tamper::Edit(4), 4).await;
    tamper(&env, Tamper::Delete(3), 3).await;
    tamper(&env, Tamper::Swap(2, 5), 2).await;
    let last = all.len() as i64;
    tamper(&env, Tamper::Delete(last), last).await;
}

#[tokio::test]
async fn calls_refusals_operators_and_reloads_are_recorded_and_tampering_is_detected() {
    records_and_tamper_evidence(TestEnv::new(EXTRA)).await;
}

#[tokio::test]
async fn calls_refusals_operators_and_reloads_are_recorded_and_tampering_is_detected_pg() {
    if let Some(env) = TestEnv::postgres(EXTRA) {
        records_and_tamper_evidence(env).await;
    }
}

#[tokio::test]
async fn a_flood_of_refusals_costs_a_few_records_a_second() {
    let env = TestEnv::new("");
    let d = env.spawn_daemon().await;
    let mut wrong = mcpq::client::Client::connect(
        env.client2_settings(&d, "not-the-key-0000000000000000000000000"),
    )
    .await
    .unwrap();
    let t0 = std::time::Instant::now();
    for _ in 0..300 {
        let r = wrong
            .call("batch_sum", args(r#"{"numbers":[1]}"#))
            .await
            .unwrap();
        assert_eq!(r.error_code(), Some("bad_signature"));
    }
    let secs = t0.elapsed().as_secs();
    let mut d = d;
    d.proc.sigterm().await;
    let all = export(&env, None).await;
    let rows = find(&all, |r| is(r, "refusal", "client-002", "bad_signature"));
    assert_eq!(refusals(&all, "client-002", "bad_signature"), 300);
    // One record per flush window (a second) at most, whatever the rate.
    assert!(
        rows.len() as u64 <= secs + 2,
        "{} records in {secs} s",
        rows.len()
    );
    assert_eq!(verify(&env).await.0, 0);
}

/// An operator's appends from another process while the daemon commits: the daemon's
/// writer reseals on the moved head, and the chain stays one.
#[tokio::test]
async fn operator_commands_interleave_with_the_daemons_commits() {
    let env = TestEnv::new("").set("MCPQ__SERVER__EMBEDDED_WORKERS", "0");
    let d = env.spawn_daemon().await;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let mut c = env.client(&d).await;
        tasks.push(tokio::spawn(async move {
            for i in 0..60 {
                let tool = if i % 2 == 0 {
                    "batch_sum"
                } else {
                    "start_long_task"
                };
                let a = if i % 2 == 0 {
                    r#"{"numbers":[1]}"#
                } else {
                    r#"{"seconds":1}"#
                };
                assert!(c.call(tool, args(a)).await.unwrap().ok);
            }
        }));
    }
    for i in 0..6 {
        let verb = if i % 2 == 0 { "pause" } else { "resume" };
        let (code, _, err) = env.run(&["jobs", verb, "start_long_task"]).await;
        assert_eq!(code, 0, "{err}");
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut d = d;
    d.proc.sigterm().await;
    let all = export(&env, None).await;
    assert_eq!(find(&all, |r| r["kind"] == "call").len(), 240);
    assert_eq!(find(&all, |r| r["kind"] == "operator").len(), 6);
    let (code, v) = verify(&env).await;
    assert_eq!(code, 0, "{v}");
}

async fn retention_keeps_the_chain_verifiable(env: TestEnv) {
    let env = env
        .set("MCPQ__AUDIT__RETENTION_SECS", "1")
        .set("MCPQ__JOBS__PRUNE_INTERVAL_MS", "200");
    let d = env.spawn_daemon().await;
    let mut c = env.client(&d).await;
    for _ in 0..5 {
        assert!(
            c.call("batch_sum", args(r#"{"numbers":[1]}"#))
                .await
                .unwrap()
                .ok
        );
    }
    eventually(
        Duration::from_secs(20),
        "retention pruned the calls",
        || async {
            let all = export(&env, None).await;
            all.iter().any(|r| r["kind"] == "prune") && !all.iter().any(|r| r["kind"] == "call")
        },
    )
    .await;
    let mut d = d;
    d.proc.sigterm().await;
    let (code, v) = verify(&env).await;
    assert_eq!(code, 0, "{v}");
    assert!(v["checkpoint_seq"].as_i64().unwrap() >= 5, "{v}");
    let all = export(&env, None).await;
    // Deleting the oldest record kept is still caught.
    let oldest = all[0]["seq"].as_i64().unwrap();
    tamper(&env, Tamper::Delete(oldest), oldest).await;
}

#[tokio::test]
async fn retention_prunes_the_oldest_records_and_keeps_the_chain_verifiable() {
    retention_keeps_the_chain_verifiable(TestEnv::new("")).await;
}

#[tokio::test]
async fn retention_prunes_the_oldest_records_and_keeps_the_chain_verifiable_pg() {
    if let Some(env) = TestEnv::postgres("") {
        retention_keeps_the_chain_verifiable(env).await;
    }
}

#[tokio::test]
async fn with_audit_off_nothing_is_recorded() {
    let env = TestEnv::new("").set("MCPQ__AUDIT__ENABLED", "false");
    let d = env.spawn_daemon().await;
    let mut c = env.client(&d).await;
    assert!(
        c.call("batch_sum", args(r#"{"numbers":[1]}"#))
            .await
            .unwrap()
            .ok
    );
    assert!(
        c.call("start_long_task", args(r#"{"seconds":1}"#))
            .await
            .unwrap()
            .ok
    );
    let mut d = d;
    d.proc.sigterm().await;
    assert!(export(&env, None).await.is_empty());
    assert_eq!(verify(&env).await.0, 0);
}

/// Two daemons on one PostgreSQL database, many concurrent writers on each (sync calls,
/// jobs, refusals) and an operator: every record lands on one chain that verifies.
#[tokio::test]
async fn two_daemons_on_postgres_keep_one_chain() {
    let Some(env) = TestEnv::postgres("") else {
        return;
    };
    let env = env.set("MCPQ__SERVER__EMBEDDED_WORKERS", "0");
    let a = env.spawn_daemon_logging_to("a.log").await;
    let b = env.spawn_daemon_logging_to("b.log").await;
    let mut tasks = Vec::new();
    for (i, d) in [&a, &b, &a, &b, &a, &b, &a, &b].into_iter().enumerate() {
        let mut c = env.client(d).await;
        let mut wrong = mcpq::client::Client::connect(
            env.client2_settings(d, "not-the-key-0000000000000000000000000"),
        )
        .await
        .unwrap();
        tasks.push(tokio::spawn(async move {
            for j in 0..40 {
                let (tool, a) = if (i + j) % 2 == 0 {
                    ("batch_sum", r#"{"numbers":[1]}"#)
                } else {
                    ("start_long_task", r#"{"seconds":1}"#)
                };
                assert!(c.call(tool, args(a)).await.unwrap().ok);
                if j % 10 == 0 {
                    assert!(!wrong.call("batch_sum", args("{}")).await.unwrap().ok);
                }
            }
        }));
    }
    for i in 0..4 {
        let verb = if i % 2 == 0 { "pause" } else { "resume" };
        let (code, _, err) = env.run(&["jobs", verb, "start_long_task"]).await;
        assert_eq!(code, 0, "{err}");
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (mut a, mut b) = (a, b);
    a.proc.sigterm().await;
    b.proc.sigterm().await;
    let all = export(&env, None).await;
    assert_eq!(find(&all, |r| r["kind"] == "call").len(), 8 * 40);
    assert_eq!(refusals(&all, "client-002", "bad_signature"), 8 * 4);
    assert_eq!(find(&all, |r| r["kind"] == "operator").len(), 4);
    let (code, v) = verify(&env).await;
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["records"], all.len());
}
