//! Reload without restart (SIGHUP): client keys and tools are re-read; a configuration that
//! does not validate is refused and the running one keeps serving.

use std::time::Duration;

use crate::common::*;
use mcpq::config::Secret;

const KEY_A: &str = "rotation-key-a-0000000000000000000000000000000";
const KEY_B: &str = "rotation-key-b-1111111111111111111111111111111";

fn client3(secret: &str, previous: Option<&str>) -> String {
    let prev = previous
        .map(|p| format!("previous_secret = \"{p}\"\n"))
        .unwrap_or_default();
    format!("[clients.client-003]\nsecret = \"{secret}\"\n{prev}")
}

fn sighup(p: &Proc) {
    let st = std::process::Command::new("kill")
        .args(["-HUP", &p.pid().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

/// Whether a `batch_sum` call signed by client-003 with `secret` is accepted.
async fn accepted(env: &TestEnv, d: &Daemon, secret: &str) -> bool {
    accepted_by(env.client_settings(d), secret).await
}

async fn accepted_by(mut s: mcpq::config::ClientSettings, secret: &str) -> bool {
    s.client_id = "client-003".into();
    s.secret = Secret::new(secret.as_bytes().to_vec());
    let mut c = mcpq::client::Client::connect(s).await.unwrap();
    c.call("batch_sum", args(r#"{"numbers":[1]}"#))
        .await
        .unwrap()
        .ok
}

#[tokio::test]
async fn a_client_key_is_rotated_by_two_reloads_without_a_restart() {
    let env = TestEnv::new(&client3(KEY_A, None));
    let d = env.spawn_daemon().await;
    assert!(accepted(&env, &d, KEY_A).await);
    assert!(!accepted(&env, &d, KEY_B).await);

    // Step 1: the new key, with the old one as the previous: both work.
    std::fs::write(&env.config, client3(KEY_B, Some(KEY_A))).unwrap();
    sighup(&d.proc);
    eventually(Duration::from_secs(10), "the new key works", || async {
        accepted(&env, &d, KEY_B).await
    })
    .await;
    assert!(accepted(&env, &d, KEY_A).await, "the old key still works");

    // Step 2: the old key removed.
    std::fs::write(&env.config, client3(KEY_B, None)).unwrap();
    sighup(&d.proc);
    eventually(
        Duration::from_secs(10),
        "the old key is refused",
        || async { !accepted(&env, &d, KEY_A).await },
    )
    .await;
    assert!(accepted(&env, &d, KEY_B).await);
    assert!(d.proc.logs().contains("configuration reloaded"));
}

#[tokio::test]
async fn a_broken_configuration_on_reload_is_refused_and_the_daemon_keeps_serving() {
    let env = TestEnv::new(&client3(KEY_A, None));
    let d = env.spawn_daemon().await;
    let mut c = env.client(&d).await;
    // A long job runs across the failed reload.
    let id = job_id(
        &c.call(
            "start_long_task",
            args(r#"{"seconds":2,"payload":{"k":1}}"#),
        )
        .await
        .unwrap(),
    );
    let base = env.client_settings(&d);
    std::fs::write(&env.config, "[sever]\nlisten = \"0.0.0.0:1\"\n").unwrap();
    sighup(&d.proc);
    eventually(Duration::from_secs(10), "the refusal is logged", || async {
        d.proc.logs().contains("reload refused")
    })
    .await;
    assert!(d.proc.logs().contains("unknown section [sever]"));
    assert!(accepted_by(base, KEY_A).await, "the old keys still apply");
    let done = poll_until_finished(&mut c, &id, Duration::from_secs(20)).await;
    assert!(done.raw.contains(r#""result":{"k":1}"#), "{}", done.raw);
}

#[tokio::test]
async fn a_tool_added_by_reload_is_callable_by_the_daemon_and_its_embedded_worker() {
    let env = TestEnv::new("");
    let d = env.spawn_daemon().await;
    let mut c = env.client(&d).await;
    let r = c.call("cat", args(r#"{"x":1}"#)).await.unwrap();
    assert_eq!(r.error_code(), Some("unknown_tool"));
    std::fs::write(
        &env.config,
        "[tools.cat]\ndescription = \"echo\"\ncommand = [\"/bin/cat\"]\n",
    )
    .unwrap();
    sighup(&d.proc);
    // The reload is asynchronous: call until the new tool is there.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let id = loop {
        let r = c.call("cat", args(r#"{"x":1}"#)).await.unwrap();
        if r.ok {
            break job_id(&r);
        }
        assert_eq!(r.error_code(), Some("unknown_tool"), "{}", r.raw);
        assert!(
            tokio::time::Instant::now() < deadline,
            "the reload never applied"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let done = poll_until_finished(&mut c, &id, Duration::from_secs(20)).await;
    assert!(done.raw.contains(r#""result":{"x":1}"#), "{}", done.raw);
}

#[tokio::test]
async fn a_worker_picks_up_a_tool_by_reload() {
    let tool = "[tools.cat]\ndescription = \"echo\"\ncommand = [\"/bin/cat\"]\n";
    let env = TestEnv::new(tool).set("MCPQ__SERVER__EMBEDDED_WORKERS", "0");
    let d = env.spawn_daemon().await;
    // The worker starts on a configuration without the tool.
    let worker_config = env.dir.path().join("worker.toml");
    std::fs::write(&worker_config, "").unwrap();
    let w = env.spawn_worker_with(1, &worker_config).await;
    let mut c = env.client(&d).await;
    let id = job_id(&c.call("cat", args(r#"{"x":2}"#)).await.unwrap());
    eventually(
        Duration::from_secs(20),
        "the worker leaves the job",
        || async { w.logs().contains("does not have") },
    )
    .await;
    std::fs::write(&worker_config, tool).unwrap();
    sighup(&w);
    let done = poll_until_finished(&mut c, &id, Duration::from_secs(20)).await;
    assert!(done.raw.contains(r#""result":{"x":2}"#), "{}", done.raw);
    assert!(w.logs().contains("configuration reloaded"));
}
