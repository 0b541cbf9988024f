//! The command line as an operator uses it.

use std::process::Command;

use crate::common::*;

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
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg("serve")
        .env("MCPQ__SERVER__SECRET", "short")
        .env("MCPQ__DATABASE__PATH", dir.path().join("x.db"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("shorter than 32 bytes"));
    assert!(!dir.path().join("x.db").exists(), "nothing was created");
}

#[test]
fn migrate_reads_no_secret() {
    // A worker or an operator's command never opens a key file.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg("migrate")
        .env("MCPQ__SERVER__SECRET_FILE", "/nonexistent/server_secret")
        .env("MCPQ__DATABASE__PATH", dir.path().join("m.db"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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

/// Runs `mcpq ARGS` with `toml` as the config file and `env` set; returns (success, stderr, stdout).
fn run_with(toml: &str, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mcpq.toml");
    std::fs::write(&config, toml).unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .args(args)
        .env("MCPQ__DATABASE__PATH", dir.path().join("x.db"))
        .env("MCPQ__SERVER__LISTEN", "127.0.0.1:0")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let db_created = dir.path().join("x.db").exists();
    assert!(
        out.status.success() || !db_created,
        "a refused start must create nothing"
    );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn a_typo_in_the_config_file_stops_every_command_naming_the_key() {
    for (toml, want) in [
        (
            "[sever]\nlisten = \"127.0.0.1:9\"\n",
            "unknown section [sever] in ",
        ),
        (
            "[database]\npaht = \"/tmp/elsewhere.db\"\n",
            "unknown setting database.paht in ",
        ),
    ] {
        for cmd in [
            &["serve"][..],
            &["worker"],
            &["migrate"],
            &["config", "check"],
        ] {
            let (ok, stderr, _) = run_with(toml, cmd, &[]);
            assert!(!ok, "{cmd:?} accepted {toml:?}");
            assert!(stderr.contains(want), "{cmd:?}: {stderr}");
            assert!(
                stderr.contains("mcpq.toml (did you mean"),
                "{cmd:?}: {stderr}"
            );
        }
    }
}

#[test]
fn a_typo_in_an_environment_variable_stops_the_command_naming_the_variable() {
    let (ok, stderr, _) = run_with("", &["serve"], &[("MCPQ__SERVER__LISTNE", "0.0.0.0:80")]);
    assert!(!ok);
    assert!(
        stderr.contains(
            "unknown setting server.listne in environment variable MCPQ__SERVER__LISTNE (did you mean server.listen?)"
        ),
        "{stderr}"
    );
}

#[test]
fn config_check_prints_the_effective_configuration_with_secrets_redacted() {
    let secret = "0123456789abcdef0123456789abcdef-not-for-print";
    let toml = format!(
        "[clients.ops]\nsecret = \"{secret}\"\n[tools.lookup]\ndescription = \"d\"\nurl = \"http://127.0.0.1:9/x\"\nheaders = {{ Authorization = \"Bearer tok-not-for-print\" }}\ninput_schema = {{ type = \"object\", additionalProperties = false }}\n"
    );
    let (ok, stderr, stdout) = run_with(
        &toml,
        &["config", "check"],
        &[("MCPQ__JOBS__MAX_ATTEMPTS", "7")],
    );
    assert!(ok, "{stderr}");
    assert!(stdout.contains("[clients.ops]"), "{stdout}");
    assert!(
        stdout.contains("max_attempts = 7"),
        "the environment layer shows: {stdout}"
    );
    assert!(
        stdout.contains("additionalProperties = false"),
        "keys keep their case: {stdout}"
    );
    assert!(
        !stdout.contains("not-for-print") && !stdout.contains("dev-only"),
        "{stdout}"
    );
    assert!(stdout.contains("<redacted>"));
    // An invalid tool schema fails the check, like serve.
    let (ok, stderr, _) = run_with(
        "[tools.t]\ndescription = \"d\"\nurl = \"http://127.0.0.1:9/\"\ninput_schema = { type = \"nope\" }\n",
        &["config", "check"],
        &[],
    );
    assert!(!ok && stderr.contains("tools.t: input_schema"), "{stderr}");
}
