//! Upgrades: a database created by the first release's schema (migration 0001 only), holding
//! jobs in every state and a live nonce, is opened by the current binary: the migrations
//! apply (0005 rebuilds the jobs table) and every job answers its poll as it did before.
//! The migrations this binary embeds are exactly those releases recorded (versions,
//! descriptions, checksums), so a database migrated by the previous release still opens.

use std::borrow::Cow;

use crate::common::*;
use mcpq::auth::NonceKey;
use mcpq::envelope::Status;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::Connection;

const CLIENT: &str = "client-001";

struct Old {
    id: String,
    state: &'static str,
}

/// Creates `path` with migration 0001 only, as the first release left it.
async fn first_release_database(path: &std::path::Path) -> SqliteConnection {
    let opts = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true);
    let mut conn = SqliteConnection::connect_with(&opts).await.unwrap();
    let mut migrator = sqlx::migrate!("./migrations/sqlite");
    let first = migrator.migrations[0].clone();
    assert_eq!(first.version, 1);
    migrator.migrations = Cow::Owned(vec![first]);
    migrator.run(&mut conn).await.unwrap();
    conn
}

#[tokio::test]
async fn jobs_in_every_state_survive_the_migrations_and_answer_as_before() {
    let env = TestEnv::new("").set("MCPQ__SERVER__EMBEDDED_WORKERS", "0");
    let mut conn = first_release_database(&env.db_path()).await;
    let now = now_ms();
    let far = now + 3_600_000;
    let mut jobs = Vec::new();
    for (state, extra) in [
        ("queued", ""),
        ("running", "lease"),
        ("succeeded", r#"{"k":"v"}"#),
        ("failed", "boom"),
        ("cancelled", ""),
    ] {
        let id = mcpq::jobs::JobId::generate().0;
        let (attempt, lease_owner, lease_expires_at, result, errors, finished) = match state {
            "queued" => (0, None, None, None, "[]".to_string(), None),
            // A lease far in the future, so no rescue runs during the test.
            "running" => (
                1,
                Some("old-worker"),
                Some(far),
                None,
                "[]".to_string(),
                None,
            ),
            "succeeded" => (1, None, None, Some(extra), "[]".to_string(), Some(now)),
            "failed" => (
                3,
                None,
                None,
                None,
                format!(r#"[{{"attempt":3,"at":{now},"error":"{extra}"}}]"#),
                Some(now),
            ),
            _ => (0, None, None, None, "[]".to_string(), Some(now)),
        };
        sqlx::query(
            "INSERT INTO jobs (id, client_id, tool, args, state, attempt, max_attempts, run_at,
                               lease_owner, lease_expires_at, fence, progress, result, errors,
                               created_at, started_at, finished_at)
             VALUES (?, ?, 'start_long_task', '{\"payload\":{},\"seconds\":1}', ?, ?, 3, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(CLIENT)
        .bind(state)
        .bind(attempt)
        .bind(now)
        .bind(lease_owner)
        .bind(lease_expires_at)
        .bind(attempt)
        .bind(if state == "running" { Some(r#"{"elapsed_seconds":1,"seconds":20}"#) } else { None })
        .bind(result)
        .bind(errors)
        .bind(now)
        .bind((attempt > 0).then_some(now))
        .bind(finished)
        .execute(&mut conn)
        .await
        .unwrap();
        jobs.push(Old { id, state });
    }
    // A live nonce, in 0001's row-per-batch format (16-byte digest, big-endian expiry).
    let nonce = uuid::Uuid::new_v4().to_string();
    let mut entry = NonceKey::new(CLIENT, &nonce).0.to_vec();
    entry.extend_from_slice(&far.to_be_bytes());
    sqlx::query("INSERT INTO nonce_batches (expires_ms, entries) VALUES (?, ?)")
        .bind(far)
        .bind(entry)
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();

    let d = env.spawn_daemon().await;
    let mut c = env.client(&d).await;
    for job in &jobs {
        let r = c
            .call("poll_job", args(&format!(r#"{{"job_id":"{}"}}"#, job.id)))
            .await
            .unwrap();
        match job.state {
            "queued" => assert_eq!(r.status, Status::Accepted, "{}", r.raw),
            "running" => {
                assert_eq!(r.status, Status::Running, "{}", r.raw);
                assert!(r
                    .raw
                    .contains(r#""progress":{"elapsed_seconds":1,"seconds":20}"#));
            }
            "succeeded" => {
                assert_eq!(r.status, Status::Done, "{}", r.raw);
                assert!(r.raw.contains(r#""result":{"k":"v"}"#), "{}", r.raw);
            }
            "failed" => {
                assert_eq!(r.error_code(), Some("job_failed"), "{}", r.raw);
                assert!(r.raw.contains("after 3 attempt(s): boom"), "{}", r.raw);
            }
            _ => assert_eq!(r.error_code(), Some("job_cancelled"), "{}", r.raw),
        }
    }
    // A daemon of the previous release, still running during a rolling upgrade, enqueues
    // 7-field rows through the view: they become built-in jobs with the default policy.
    let old_release_job = mcpq::jobs::JobId::generate().0;
    let rows = format!(
        r#"[["{old_release_job}","{CLIENT}","start_long_task","{{\"payload\":{{}},\"seconds\":1}}",3,{now},null]]"#
    );
    let mut conn =
        SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(env.db_path()))
            .await
            .unwrap();
    sqlx::query("INSERT INTO enqueue_batch (nonce_expires_ms, nonce_entries, jobs_json) VALUES (NULL, NULL, ?)")
        .bind(rows)
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    // Migrated jobs ran built-in tools: a worker of today claims and finishes them.
    let _w = env.spawn_worker(1).await;
    for id in [&jobs[0].id, &old_release_job] {
        let done = poll_until_finished(&mut c, id, std::time::Duration::from_secs(30)).await;
        assert_eq!(done.status, Status::Done, "{}", done.raw);
    }
    // The nonce stored before the upgrade is still a replay.
    let e = mcpq::envelope::sign_envelope(
        mcpq::envelope::Unsigned {
            client_id: CLIENT,
            server_id: "mcp-server-001",
            tool: "batch_sum",
            args: args(r#"{"numbers":[1]}"#),
            ts_ms: now_ms(),
            request_id: "r-1".into(),
            nonce,
        },
        env.settings().client.secret.expose(),
    );
    let (status, r) = c.send(&e).await.unwrap();
    assert_eq!(
        (status, r.error_code()),
        (401, Some("replayed_nonce")),
        "{}",
        r.raw
    );
}

/// The SQLite migrations as release 6b21e8b shipped them (from `migrations/`, before they moved
/// to `migrations/sqlite/`): version, description, and the SHA-384 of the file's bytes
/// (`git show 6b21e8b:migrations/NAME | sha384sum`). sqlx records the version and checksum of
/// every applied migration and refuses to start on a database whose record differs, so these
/// must never change.
const SQLITE_RELEASED: [(i64, &str, &str); 9] = [
    (1, "init", "242b39bb94387ed20855b67967d1a4aef231a1b801cb1dc61f862cc0ec58ba11ec5cb6a8a0b036d9abc0de12d7bc746e"),
    (2, "enqueue batch", "28151bad22f67af527c7918b3c3c40f07a2bd3d08145dee232548a4442a17b930b9864843f57d7eb31c04c33de69876d"),
    (3, "enqueue positional", "814e30436ae9db605070ce7160b1f6a246d78716aeeac8000341024a4ab2626a9c0ed748075b459c3fee4fd5b9d45e56"),
    (4, "nonce batches clustered", "1cbeae97f15f3cdf4eb11692fb9f94a7e873812484c79dafa3cbc084bc9452225aa2f88a2de43bfd83a172f6e9e12b0e"),
    (5, "tool definitions", "9429f34a7826cfd5adcbe55b0c810187bd0e9174568f994c961903c52b163fdfdad6a221d78f1e2acc41e903c2309411"),
    (6, "input required", "3379579b4138f11692709ffe5a5e089c08572236ea844f425ead0cb461178b2e484781580aead8e7d511730ff253ceb5"),
    (7, "flow", "2217d23d5029343bb3d0d03522cdbdf3755122af8ce32cccd9a2815078b555e40504942d30935ab074b6d5f4dd56a491"),
    (8, "console", "4f20d599104386f1bc227c262c267f776dce6135bbe8879200464ff504be4c77a397bafd920c384dd3af3d4958b27775"),
    (9, "schedules", "a23bfb8ab04bf2fceba7fd71b4e77e39e9311c26e037293c29a0c0361a49995b0b00cd2ff27c3ff6a640eba06deb581f"),
];

/// The PostgreSQL migrations as release 6b21e8b shipped them (`migrations/postgres/`).
const POSTGRES_RELEASED: [(i64, &str, &str); 5] = [
    (1, "init", "0c16af752edee075dc0803f44b5d985dc5245845dc3ae595dd1b3bdce814b79e443dadee320f394e3bbabd9eeb1b4d54"),
    (2, "input required", "68a3f7d305e52edda5d34920fc5e637b16520ffc3611a30cd4593ee470c298c97958a1a0b294fa7bbb17deadfc776c64"),
    (3, "flow", "67e8e68a756107d5f9f4279f67ccde3d0f77fa40bb6fddd43b657cadbacf2f6a42aad024a8f1b5ad622f228b5a6ab5a0"),
    (4, "console", "4f20d599104386f1bc227c262c267f776dce6135bbe8879200464ff504be4c77a397bafd920c384dd3af3d4958b27775"),
    (5, "schedules", "8e45e0aacbff3d5bb310843f463f9b4b208d408ca04a6b50402f9cc15732d0cd7d1eac25543cb0586e1ebfcd3b548b47"),
];

fn records(migrator: &sqlx::migrate::Migrator) -> Vec<(i64, String, String)> {
    migrator
        .iter()
        .map(|m| {
            (
                m.version,
                m.description.to_string(),
                hex::encode(&m.checksum),
            )
        })
        .collect()
}

fn released(list: &[(i64, &str, &str)]) -> Vec<(i64, String, String)> {
    list.iter()
        .map(|(v, d, c)| (*v, d.to_string(), c.to_string()))
        .collect()
}

#[test]
fn the_binary_embeds_the_migrations_exactly_as_they_were_released() {
    // Released migrations come first, unchanged; later ones may follow.
    let sqlite = records(mcpq::store::sqlite::migrator());
    assert_eq!(sqlite[..SQLITE_RELEASED.len()], released(&SQLITE_RELEASED));
    let postgres = records(mcpq::store::postgres::migrator());
    assert_eq!(
        postgres[..POSTGRES_RELEASED.len()],
        released(&POSTGRES_RELEASED)
    );
}

/// A database migrated by release 6b21e8b (its migrator read a flat `migrations/` folder) is
/// accepted by the current binary: `mcpq migrate` finds nothing to change and the daemon
/// serves from it. The folder is rebuilt in the old layout from the embedded migrations, and
/// the migrator that reads it must see exactly the released checksums first.
#[tokio::test]
async fn a_database_migrated_by_the_previous_release_opens() {
    let old = tempfile::tempdir().unwrap();
    let folder = old.path().join("migrations");
    std::fs::create_dir(&folder).unwrap();
    for m in mcpq::store::sqlite::migrator()
        .iter()
        .take(SQLITE_RELEASED.len())
    {
        let name = format!("{:04}_{}.sql", m.version, m.description.replace(' ', "_"));
        std::fs::write(folder.join(name), m.sql.as_bytes()).unwrap();
    }
    let previous = sqlx::migrate::Migrator::new(folder.as_path())
        .await
        .unwrap();
    assert_eq!(records(&previous), released(&SQLITE_RELEASED));

    let env = TestEnv::new("").set("MCPQ__SERVER__EMBEDDED_WORKERS", "0");
    let opts = SqliteConnectOptions::new()
        .filename(env.db_path())
        .create_if_missing(true);
    let mut conn = SqliteConnection::connect_with(&opts).await.unwrap();
    previous.run(&mut conn).await.unwrap();
    conn.close().await.unwrap();

    let (code, out, err) = env.run(&["migrate"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let d = env.spawn_daemon().await;
    let mut c = env.client(&d).await;
    let r = c
        .call("batch_sum", args(r#"{"numbers":[1,2]}"#))
        .await
        .unwrap();
    assert_eq!(r.status, Status::Ok, "{}", r.raw);
    let job = c
        .call("start_long_task", args(r#"{"payload":{},"seconds":1}"#))
        .await
        .unwrap();
    assert_eq!(job.status, Status::Accepted, "{}", job.raw);
}

/// Records written one row each (migration 0013) are packed by 0014 and still verify: the
/// chain goes on from them, and an edit to one of them is still found.
#[tokio::test]
async fn audit_records_written_a_row_each_still_verify_once_packed() {
    use mcpq::audit::{seal, Entry, Head, Kind};

    let env = TestEnv::new("").set("MCPQ__SERVER__EMBEDDED_WORKERS", "0");
    let opts = SqliteConnectOptions::new()
        .filename(env.db_path())
        .create_if_missing(true);
    let mut conn = SqliteConnection::connect_with(&opts).await.unwrap();
    let mut migrator = sqlx::migrate!("./migrations/sqlite");
    let through_13: Vec<_> = migrator
        .migrations
        .iter()
        .filter(|m| m.version <= 13)
        .cloned()
        .collect();
    assert_eq!(through_13.last().unwrap().description, "audit");
    migrator.migrations = Cow::Owned(through_13);
    migrator.run(&mut conn).await.unwrap();

    let now = now_ms();
    let mut entries = Vec::new();
    for i in 0..5 {
        let mut e = Entry::new(now + i, Kind::Operator, "ops", "done");
        e.tool = Some(format!("jobs.retry.{i}"));
        entries.push(e);
    }
    let (records, head) = seal(&Head::genesis(), entries);
    for r in &records {
        let e = &r.entry;
        sqlx::query(
            "INSERT INTO audit (seq, at, kind, actor, tool, outcome, count, prev, digest) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(r.seq)
        .bind(e.at)
        .bind(e.kind.as_str())
        .bind(&e.actor)
        .bind(&e.tool)
        .bind(&e.outcome)
        .bind(i64::from(e.count))
        .bind(&r.prev)
        .bind(&r.digest)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    sqlx::query("UPDATE audit_head SET seq = ?, digest = ? WHERE id = 1")
        .bind(head.seq)
        .bind(&head.digest)
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();

    let (code, out, err) = env.run(&["migrate"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, v) = verify(&env).await;
    assert_eq!((code, v["records"].as_i64()), (0, Some(5)), "{v}");

    // The daemon's records go on from the old ones, in packs of their own.
    let d = env.spawn_daemon().await;
    let mut c = env.client(&d).await;
    let r = c
        .call("batch_sum", args(r#"{"numbers":[1,2]}"#))
        .await
        .unwrap();
    assert_eq!(r.status, Status::Ok, "{}", r.raw);
    let mut d = d;
    d.proc.sigterm().await;
    let (code, v) = verify(&env).await;
    assert_eq!(code, 0, "{v}");
    assert!(v["records"].as_i64().unwrap() > 5, "{v}");

    // The view reads one row per record, old and new alike.
    let mut conn = SqliteConnection::connect_with(&opts).await.unwrap();
    let tools: Vec<String> =
        sqlx::query_scalar("SELECT tool FROM audit WHERE kind = 'operator' ORDER BY seq")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(tools.len(), 5);
    assert_eq!(tools[4], "jobs.retry.4");
    sqlx::query(
        "UPDATE audit_packs SET records = json_replace(records, '$[0][3]', 'mallory') \
         WHERE first_seq = 3",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    let (code, v) = verify(&env).await;
    assert_eq!((code, v["first_bad_seq"].as_i64()), (1, Some(3)), "{v}");
}

/// `mcpq audit verify --json`: (exit code, its answer).
async fn verify(env: &TestEnv) -> (i32, serde_json::Value) {
    let (code, out, err) = env.run(&["audit", "verify", "--json"]).await;
    let v = serde_json::from_str(out.trim()).unwrap_or_else(|_| panic!("{out} {err}"));
    (code, v)
}
