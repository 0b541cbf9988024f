//! The command line as an operator uses it.

mod common;

use std::process::Command;

use common::*;

#[test]
fn keys_new_prints_a_fresh_32_byte_hex_secret() {
    let a = Command::new(BIN).args(["keys", "new"]).output().unwrap();
    let b = Command::new(BIN).args(["keys", "new"]).output().unwrap();
    let a = String::from_utf8(a.stdout).unwrap();
    let b = String::from_utf8(b.stdout).unwrap();
    assert_eq!(a.trim().len(), 64);
    assert!(a
        .trim()
        .chars()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    assert_ne!(a, b);
}

#[test]
fn serve_refuses_development_keys_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg("serve")
        .env("MCPQ__SERVER__LISTEN", "0.0.0.0:0")
        .env("MCPQ__DATABASE__PATH", dir.path().join("x.db"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing to listen on non-loopback"), "{err}");
    assert!(!dir.path().join("x.db").exists(), "nothing was created");
}

#[test]
fn short_secrets_are_refused() {
    let out = Command::new(BIN)
        .arg("migrate")
        .env("MCPQ__SERVER__SECRET", "short")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("shorter than 32 bytes"));
}

#[test]
fn migrate_creates_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("m.db");
    let out = Command::new(BIN)
        .arg("migrate")
        .env("MCPQ__DATABASE__PATH", &db_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let pool = db(&db_path).await;
        let tables: Vec<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert!(
            tables.contains(&"jobs".to_string()) && tables.contains(&"nonce_batches".to_string()),
            "{tables:?}"
        );
    });
}

#[tokio::test]
async fn secrets_can_come_from_files_and_call_verifies_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    let server_key = dir.path().join("server.key");
    let client_key = dir.path().join("client.key");
    std::fs::write(&server_key, "file-based-server-secret-0123456789abcdef\n").unwrap();
    std::fs::write(&client_key, "file-based-client-secret-0123456789abcdef\n").unwrap();
    let env = TestEnv::new(&format!(
        "[server]\nsecret_file = \"{}\"\n[clients.file-client]\nsecret_file = \"{}\"\n",
        server_key.display(),
        client_key.display()
    ));
    let d = env.spawn_daemon().await;
    let out = tokio::process::Command::new(BIN)
        .args([
            "--config",
            env.config.to_str().unwrap(),
            "call",
            "batch_sum",
            r#"{"numbers":[1,2]}"#,
        ])
        .args(["--url", &d.url(), "--client-id", "file-client"])
        .env(
            "MCPQ_CLIENT_SECRET",
            "file-based-client-secret-0123456789abcdef",
        )
        .env(
            "MCPQ_SERVER_SECRET",
            "file-based-server-secret-0123456789abcdef",
        )
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(r#""result":{"count":2,"total":3.0}"#),
        "{stdout}"
    );
    // With the wrong server key the client refuses the (correctly signed) answer.
    let out = tokio::process::Command::new(BIN)
        .args([
            "--config",
            env.config.to_str().unwrap(),
            "call",
            "batch_sum",
            r#"{"numbers":[1,2]}"#,
        ])
        .args(["--url", &d.url(), "--client-id", "file-client"])
        .env(
            "MCPQ_CLIENT_SECRET",
            "file-based-client-secret-0123456789abcdef",
        )
        .env(
            "MCPQ_SERVER_SECRET",
            "not-the-server-secret-0123456789abcdef000",
        )
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("signature does not verify"));
}

/// Signal handlers are in place before a process says it is ready: a supervisor (systemd,
/// a test) may send SIGTERM the moment it reads the readiness line, and the process must
/// still shut down cleanly (exit 0) rather than die of the default action mid-write.
#[tokio::test]
async fn sigterm_right_after_readiness_is_a_clean_shutdown() {
    let env = TestEnv::new("");
    // Several rounds: the gap this pins was a few microseconds wide.
    for n in 0..8 {
        let mut d = env.spawn_daemon().await;
        let st = d.proc.sigterm().await;
        assert!(st.success(), "daemon round {n}: {st}\n{}", d.proc.logs());
        let mut w = env.spawn_worker(n).await;
        let st = w.sigterm().await;
        assert!(st.success(), "worker round {n}: {st}\n{}", w.logs());
    }
}
