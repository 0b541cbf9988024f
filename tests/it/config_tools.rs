//! Tools declared in the configuration (`[tools.NAME]`), exercised as a user would: the real
//! daemon and worker binaries, real child processes from `tests/fixtures/`, a real HTTP
//! service (`tests/fixtures/http_tool.py`), signed calls over HTTP.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::*;
use mcpq::envelope::{Status, VerifiedResponse};
use mcpq::json::Json;
use tokio::io::AsyncBufReadExt;

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

/// The real interpreter (not a pyenv shim, which needs an environment the tool does not get).
fn python() -> String {
    let out = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 runs");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A daemon without embedded workers, short leases and fast retries, with `tools` appended.
fn env_with(tools: &str) -> TestEnv {
    TestEnv::new(tools)
        .set("MCPQ__SERVER__EMBEDDED_WORKERS", "0")
        .set("MCPQ__JOBS__LEASE_MS", "1000")
        .set("MCPQ__JOBS__HEARTBEAT_MS", "100")
        .set("MCPQ__JOBS__RESCUE_INTERVAL_MS", "100")
        .set("MCPQ__JOBS__RETRY_BASE_MS", "100")
}

/// A `[tools.NAME]` table for a shell fixture, with a PATH for its utilities.
fn sh_tool(name: &str, script: &str, extra: &str) -> String {
    sh_tool_argv(name, script, &[], extra)
}

/// [`sh_tool`] with arguments after the script.
fn sh_tool_argv(name: &str, script: &str, argv: &[&Path], extra: &str) -> String {
    let mut cmd = format!("\"{}\"", fixture(script));
    for a in argv {
        cmd.push_str(&format!(", \"{}\"", a.display()));
    }
    format!(
        "[tools.{name}]\ndescription = \"{name}\"\ncommand = [{cmd}]\nenv = {{ PATH = \"/usr/bin:/bin\" }}\n{extra}\n"
    )
}

/// A path in a fresh directory that outlives the test env's own (config files name it).
fn scratch() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().to_path_buf();
    (d, p)
}

async fn start(c: &mut mcpq::client::Client, tool: &str, json: &str) -> String {
    let r = c.call(tool, args(json)).await.unwrap();
    assert_eq!(r.status, Status::Accepted, "{}", r.raw);
    job_id(&r)
}

async fn finish(c: &mut mcpq::client::Client, id: &str) -> VerifiedResponse {
    poll_until_finished(c, id, Duration::from_secs(30)).await
}

/// Whether a process is gone (or a zombie nobody has reaped yet: it runs no more code).
fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

async fn pids_in(file: &Path) -> Vec<i32> {
    eventually(
        Duration::from_secs(20),
        "the tool wrote its pids",
        || async { file.exists() },
    )
    .await;
    std::fs::read_to_string(file)
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

async fn all_gone(pids: &[i32]) {
    for &pid in pids {
        eventually(
            Duration::from_secs(10),
            &format!("process {pid} is gone"),
            || async move { gone(pid) },
        )
        .await;
    }
}

#[tokio::test]
async fn command_tool_reports_progress_then_returns_its_result() {
    let env = env_with(&format!(
        "[tools.echo]\ndescription = \"echo\"\ncommand = [\"{}\", \"{}\"]\nworking_dir = \"/tmp\"\nenv = {{ GREETING = \"hi\" }}\n",
        python(),
        fixture("echo_tool.py")
    ));
    let d = env.spawn_daemon().await;
    let _w = env.spawn_worker(1).await;
    let mut c = env.client(&d).await;
    let id = start(
        &mut c,
        "echo",
        r#"{"steps":4,"step_seconds":0.4,"text":"é ☃"}"#,
    )
    .await;
    let running = poll_until(&mut c, &id, Duration::from_secs(20), "progress", |r| {
        r.status == Status::Running
            && r.result
                .as_ref()
                .and_then(|o| o.get("progress"))
                .and_then(Json::as_object)
                .is_some_and(|p| p.get("message").is_some())
    })
    .await;
    assert!(running.raw.contains("of 4"), "{}", running.raw);
    let done = finish(&mut c, &id).await;
    assert_eq!(done.status, Status::Done, "{}", done.raw);
    let result = done.result.unwrap();
    let echo = result.get("echo").and_then(Json::as_object).unwrap();
    assert_eq!(echo.get("text"), Some(&Json::str("é ☃")));
    // A cleared environment: the tool's own env plus the MCPQ_* variables, nothing else.
    let tool_env = result.get("env").and_then(Json::as_object).unwrap();
    let mut keys: Vec<&str> = tool_env.keys().collect();
    keys.retain(|k| *k != "LC_CTYPE"); // CPython may set this itself
    assert_eq!(
        keys,
        [
            "GREETING",
            "MCPQ_ATTEMPT",
            "MCPQ_CLIENT_ID",
            "MCPQ_JOB_ID",
            "MCPQ_TOOL"
        ]
    );
    assert_eq!(tool_env.get("MCPQ_JOB_ID"), Some(&Json::str(&id)));
    assert_eq!(tool_env.get("MCPQ_ATTEMPT"), Some(&Json::str("1")));
    assert_eq!(
        tool_env.get("MCPQ_CLIENT_ID"),
        Some(&Json::str("client-001"))
    );
    assert_eq!(result.get("cwd"), Some(&Json::str("/tmp")));
}

#[tokio::test]
async fn a_retryable_failure_is_retried_and_succeeds_on_attempt_2() {
    let env = env_with(&sh_tool("flaky", "flaky.sh", "max_attempts = 3"));
    let d = env.spawn_daemon().await;
    let _w = env.spawn_worker(1).await;
    let mut c = env.client(&d).await;
    let id = start(&mut c, "flaky", "{}").await;
    let done = finish(&mut c, &id).await;
    assert_eq!(done.status, Status::Done, "{}", done.raw);
    assert!(
        done.raw.contains(r#""result":{"attempt":2}"#),
        "{}",
        done.raw
    );
    let pool = db(&env.db_path()).await;
    let errors: String = sqlx::query_scalar("SELECT errors FROM jobs WHERE id = ?")
        .bind(&id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(
        errors.contains("exit 75 (temporary failure)") && errors.contains("upstream busy"),
        "{errors}"
    );
}

#[tokio::test]
async fn a_fatal_failure_fails_at_once_with_the_tail_of_stderr() {
    let env = env_with(&sh_tool("fatal", "fatal.sh", "max_attempts = 3"));
    let d = env.spawn_daemon().await;
    let _w = env.spawn_worker(1).await;
    let mut c = env.client(&d).await;
    let id = start(&mut c, "fatal", "{}").await;
    let done = finish(&mut c, &id).await;
    assert_eq!(done.error_code(), Some("job_failed"), "{}", done.raw);
    let err = done.error.unwrap();
    assert!(err.contains("after 1 attempt(s): exit 3"), "{err}");
    assert!(err.contains("fatal: the input file is corrupt"), "{err}");
    // Only the tail (4 KiB) is kept.
    assert!(
        !err.contains("noise line 0\n") && !err.contains("noise line 1 "),
        "{err}"
    );
    assert!(err.len() < 5000, "{} bytes", err.len());
}

#[tokio::test]
async fn a_timeout_ends_the_whole_process_group() {
    let (_keep, dir) = scratch();
    let pids = dir.join("pids");
    let env = env_with(&sh_tool_argv(
        "sleeper",
        "sleeper.sh",
        &[&pids],
        "timeout_secs = 1\nkill_grace_secs = 1\nmax_attempts = 1",
    ));
    let d = env.spawn_daemon().await;
    let _w = env.spawn_worker(1).await;
    let mut c = env.client(&d).await;
    let id = start(&mut c, "sleeper", "{}").await;
    let pids = pids_in(&pids).await;
    assert_eq!(pids.len(), 2, "the tool and its grandchild");
    let done = finish(&mut c, &id).await;
    assert_eq!(done.error_code(), Some("job_failed"), "{}", done.raw);
    assert!(
        done.raw.contains("timeout: no result within 1 s"),
        "{}",
        done.raw
    );
    all_gone(&pids).await;
}

#[tokio::test]
async fn cancelling_a_job_ends_its_process_and_grandchildren() {
    let (_keep, dir) = scratch();
    let pids = dir.join("pids");
    let env = env_with(&sh_tool_argv(
        "sleeper",
        "sleeper.sh",
        &[&pids],
        "kill_grace_secs = 1",
    ));
    let d = env.spawn_daemon().await;
    let _w = env.spawn_worker(1).await;
    let mut c = env.client(&d).await;
    let id = start(&mut c, "sleeper", "{}").await;
    let pids = pids_in(&pids).await;
    let r = c
        .call("cancel_job", args(&format!(r#"{{"job_id":"{id}"}}"#)))
        .await
        .unwrap();
    assert!(r.ok, "{}", r.raw);
    let done = finish(&mut c, &id).await;
    assert_eq!(done.error_code(), Some("job_cancelled"), "{}", done.raw);
    all_gone(&pids).await;
}

#[tokio::test]
async fn a_worker_stopping_ends_its_tools_after_the_grace_period_and_gives_the_job_back() {
    let (_keep, dir) = scratch();
    let pids = dir.join("pids");
    let env = env_with(&sh_tool_argv(
        "sleeper",
        "sleeper.sh",
        &[&pids],
        "kill_grace_secs = 1",
    ))
    .set("MCPQ__WORKER__GRACE_PERIOD_MS", "300");
    let d = env.spawn_daemon().await;
    let mut w = env.spawn_worker(1).await;
    let mut c = env.client(&d).await;
    let id = start(&mut c, "sleeper", "{}").await;
    let pids = pids_in(&pids).await;
    assert!(w.sigterm().await.success(), "{}", w.logs());
    // Nothing of the tool is left running once the worker has exited (SIGKILL is sent to
    // the whole group before the worker exits; its delivery is only not instantaneous).
    all_gone(&pids).await;
    // A retry tool's job goes back to the queue without losing its attempt.
    let r = c
        .call("poll_job", args(&format!(r#"{{"job_id":"{id}"}}"#)))
        .await
        .unwrap();
    assert_eq!(r.status, Status::Accepted, "{}", r.raw);
    assert!(r.raw.contains(r#""attempt":0"#), "{}", r.raw);
}

#[tokio::test]
async fn bad_output_fails_the_attempt_for_good() {
    let env = env_with(&format!(
        "{}{}{}",
        sh_tool("spew", "spew.sh", "max_output_bytes = 1000"),
        sh_tool("notjson", "notjson.sh", ""),
        sh_tool(
            "shaped",
            "bad_output.sh",
            "output_schema = { type = \"object\", properties = { count = { type = \"integer\" } } }"
        ),
    ));
    let d = env.spawn_daemon().await;
    let _w = env.spawn_worker(1).await;
    let mut c = env.client(&d).await;
    for (tool, want) in [
        ("spew", "output_too_large: stdout exceeded 1000 bytes"),
        ("notjson", "invalid_output"),
        (
            "shaped",
            "output_schema: the result does not match: at /count",
        ),
    ] {
        let id = start(&mut c, tool, "{}").await;
        let done = finish(&mut c, &id).await;
        assert_eq!(
            done.error_code(),
            Some("job_failed"),
            "{tool}: {}",
            done.raw
        );
        assert!(
            done.raw.contains("after 1 attempt(s)"),
            "{tool}: {}",
            done.raw
        );
        assert!(done.raw.contains(want), "{tool}: {}", done.raw);
    }
}

#[tokio::test]
async fn shell_metacharacters_in_args_are_inert() {
    let (_keep, dir) = scratch();
    let marker = dir.join("pwned");
    let env = env_with(&sh_tool("echo", "echo_tool.sh", "mode = \"sync\""));
    let d = env.spawn_daemon().await;
    let mut c = env.client(&d).await;
    let m = marker.display();
    let nasty = format!(
        r#"$(touch {m}); `touch {m}`; touch {m} && echo hi | tee {m} > {m}; ' " \ * ? ~ {{a,b}}"#
    );
    let mut a = mcpq::json::Object::new();
    a.insert("cmd".into(), Json::str(nasty.clone()));
    let r = c.call("echo", a).await.unwrap();
    assert!(r.ok, "{}", r.raw);
    let result = r.result.unwrap();
    let echoed = result.get("args").and_then(Json::as_object).unwrap();
    assert_eq!(echoed.get("cmd"), Some(&Json::str(nasty)));
    assert!(!marker.exists(), "an argument was executed");
}

#[tokio::test]
async fn arguments_failing_the_schema_are_refused_and_create_no_row() {
    let env = env_with(&sh_tool(
        "transcode",
        "echo_tool.sh",
        "input_schema = { type = \"object\", required = [\"url\"], additionalProperties = false, properties = { url = { type = \"string\" } } }",
    ));
    let d = env.spawn_daemon().await;
    let mut c = env.client(&d).await;
    for (bad, want) in [
        (r#"{"url":5}"#, "at /url: "),
        (r#"{}"#, "at /: "),
        (r#"{"url":"x","extra":1}"#, "(rule: additionalProperties)"),
    ] {
        let r = c.call("transcode", args(bad)).await.unwrap();
        assert_eq!(r.error_code(), Some("invalid_args"), "{bad}: {}", r.raw);
        assert!(r.raw.contains(want), "{bad}: {}", r.raw);
    }
    let r = c.call("transcode", args(r#"{"url":5}"#)).await.unwrap();
    assert!(r.raw.contains("(rule: type)"), "{}", r.raw);
    let pool = db(&env.db_path()).await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 0, "a refused call stores nothing");
    // A valid call is accepted.
    start(&mut c, "transcode", r#"{"url":"http://x/v.mp4"}"#).await;
}

#[tokio::test]
async fn a_concurrency_limit_holds_across_three_worker_processes() {
    let (_keep, dir) = scratch();
    let log = dir.join("overlap.log");
    let env = env_with(&format!(
        "[tools.limited]\ndescription = \"d\"\ncommand = [\"{}\", \"{}\"]\nconcurrency = 2\n",
        python(),
        fixture("overlap.py")
    ));
    let d = env.spawn_daemon().await;
    let _w: Vec<Proc> = futures_util::future::join_all((1..=3).map(|n| env.spawn_worker(n))).await;
    let mut c = env.client(&d).await;
    let mut ids = Vec::new();
    for _ in 0..8 {
        let a = format!(r#"{{"log":"{}","seconds":0.3}}"#, log.display());
        ids.push(start(&mut c, "limited", &a).await);
    }
    for id in &ids {
        let done = finish(&mut c, id).await;
        assert_eq!(done.status, Status::Done, "{}", done.raw);
    }
    let mut events: Vec<(f64, i32)> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| {
            let (what, at) = l.split_once(' ').unwrap();
            // At equal times, count ends before starts.
            (at.parse().unwrap(), if what == "start" { 1 } else { -1 })
        })
        .collect();
    assert_eq!(events.len(), 16);
    events.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let (mut running, mut peak) = (0, 0);
    for (_, delta) in events {
        running += delta;
        peak = peak.max(running);
    }
    assert!(peak <= 2, "{peak} ran at once with concurrency = 2");
}

async fn crash_story(policy: &str) -> (TestEnv, mcpq::client::Client, Daemon, String, PathBuf) {
    let (keep, dir) = scratch();
    let pids = dir.join("pids");
    let log = dir.join("attempts");
    let env = env_with(&sh_tool_argv(
        "charge",
        "crashy.sh",
        &[&pids, &log],
        &format!("on_worker_crash = \"{policy}\"\nmax_attempts = 3"),
    ));
    std::mem::forget(keep); // the config names files in it for the test's whole life
    let d = env.spawn_daemon().await;
    let mut w1 = env.spawn_worker(1).await;
    let mut c = env.client(&d).await;
    let id = start(&mut c, "charge", "{}").await;
    let tool_pids = pids_in(&pids).await;
    w1.kill9().await;
    // A worker killed outright cannot end its tool's processes; under systemd the unit's
    // cgroup is killed with it (KillMode=control-group). Do what systemd would.
    // SAFETY: plain syscall on the tool's process group.
    unsafe { libc::kill(-tool_pids[0], libc::SIGKILL) };
    all_gone(&tool_pids).await;
    (env, c, d, id, log)
}

#[tokio::test]
async fn on_worker_crash_retry_runs_the_job_again() {
    let (env, mut c, _d, id, log) = crash_story("retry").await;
    let _w2 = env.spawn_worker(2).await;
    let done = finish(&mut c, &id).await;
    assert_eq!(done.status, Status::Done, "{}", done.raw);
    assert!(
        done.raw.contains(r#""result":{"attempt":2}"#),
        "{}",
        done.raw
    );
    assert_eq!(
        std::fs::read_to_string(log).unwrap(),
        "attempt 1\nattempt 2\n"
    );
}

#[tokio::test]
async fn on_worker_crash_fail_never_runs_the_job_twice() {
    let (env, mut c, _d, id, log) = crash_story("fail").await;
    let _w2 = env.spawn_worker(2).await;
    let done = finish(&mut c, &id).await;
    assert_eq!(done.error_code(), Some("job_failed"), "{}", done.raw);
    assert!(done.raw.contains("worker_lost"), "{}", done.raw);
    // A live worker was there to run it again; it did not (and a failed job is terminal).
    assert_eq!(std::fs::read_to_string(log).unwrap(), "attempt 1\n");
}

#[tokio::test]
async fn on_worker_crash_hold_waits_in_doubt_for_an_operator() {
    let (env, mut c, _d, id, log) = crash_story("hold").await;
    let _w2 = env.spawn_worker(2).await;
    let held = poll_until(&mut c, &id, Duration::from_secs(20), "in doubt", |r| {
        r.error_code() == Some("in_doubt")
    })
    .await;
    assert!(held.raw.contains("worker_lost"), "{}", held.raw);
    // The client cannot cancel it away.
    let r = c
        .call("cancel_job", args(&format!(r#"{{"job_id":"{id}"}}"#)))
        .await
        .unwrap();
    assert_eq!(r.error_code(), Some("in_doubt"), "{}", r.raw);
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "attempt 1\n");
    // An operator decides to run it again, with the admin command.
    let (code, out, err) = env.run(&["jobs", "retry", &id, "--json"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(r#""outcome":"queued""#), "{out}");
    let done = finish(&mut c, &id).await;
    assert_eq!(done.status, Status::Done, "{}", done.raw);
    assert_eq!(
        std::fs::read_to_string(log).unwrap(),
        "attempt 1\nattempt 2\n"
    );
}

#[tokio::test]
async fn an_operator_fails_an_in_doubt_job_and_the_history_says_who() {
    let (env, mut c, _d, id, log) = crash_story("hold").await;
    let _w2 = env.spawn_worker(2).await;
    poll_until(&mut c, &id, Duration::from_secs(20), "in doubt", |r| {
        r.error_code() == Some("in_doubt")
    })
    .await;
    let (code, out, _) = env
        .run(&["jobs", "list", "--state", "in_doubt", "--json"])
        .await;
    assert_eq!(code, 0);
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed[0]["id"], id.as_str(), "{out}");
    let (code, out, err) = env.run(&["jobs", "fail", &id]).await;
    assert_eq!(code, 0, "{out}{err}");
    let done = finish(&mut c, &id).await;
    assert_eq!(done.error_code(), Some("job_failed"), "{}", done.raw);
    // Failing it again is refused: exit 4, nothing changes.
    let (code, _, err) = env.run(&["jobs", "fail", &id]).await;
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("the job is failed"), "{err}");
    let (code, out, _) = env.run(&["jobs", "show", &id, "--json"]).await;
    assert_eq!(code, 0);
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    let history = shown["history"].as_array().unwrap();
    let last = history.last().unwrap()["error"].as_str().unwrap();
    assert!(
        last.contains("failed by operator") && last.contains("(mcpq jobs)"),
        "{out}"
    );
    assert_eq!(std::fs::read_to_string(log).unwrap(), "attempt 1\n");
}

#[tokio::test]
async fn a_worker_never_runs_a_job_under_a_definition_it_does_not_have() {
    let v1 = sh_tool("rollout", "echo_tool.sh", "timeout_secs = 60");
    let env = env_with(&v1);
    // The same tool, changed: a worker still on the other version of the config.
    let v2_path = env.dir.path().join("v2.toml");
    std::fs::write(
        &v2_path,
        std::fs::read_to_string(&env.config)
            .unwrap()
            .replace("timeout_secs = 60", "timeout_secs = 61"),
    )
    .unwrap();
    let d = env.spawn_daemon().await;
    let mut c = env.client(&d).await;
    let id = start(&mut c, "rollout", r#"{"v":1}"#).await;
    let w2 = env.spawn_worker_with(2, &v2_path).await;
    eventually(
        Duration::from_secs(20),
        "the v2 worker says it leaves the job",
        || async { w2.logs().contains("does not have") },
    )
    .await;
    let logs = w2.logs();
    assert_eq!(
        logs.matches("does not have").count(),
        1,
        "said once: {logs}"
    );
    let r = c
        .call("poll_job", args(&format!(r#"{{"job_id":"{id}"}}"#)))
        .await
        .unwrap();
    assert_eq!(r.status, Status::Accepted, "still queued: {}", r.raw);
    let _w1 = env.spawn_worker(1).await;
    let done = finish(&mut c, &id).await;
    assert_eq!(done.status, Status::Done, "{}", done.raw);
}

/// Starts `tests/fixtures/http_tool.py`; returns the child, its base URL and its request log.
async fn http_service(dir: &Path) -> (tokio::process::Child, String, PathBuf) {
    let log = dir.join("requests.log");
    let mut child = tokio::process::Command::new(python())
        .arg(fixture("http_tool.py"))
        .arg("0")
        .arg(&log)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let port = line.strip_prefix("port ").unwrap().to_string();
    (child, format!("http://127.0.0.1:{port}"), log)
}

fn http_tool(name: &str, url: &str, extra: &str) -> String {
    format!("[tools.{name}]\ndescription = \"{name}\"\nurl = \"{url}\"\n{extra}\n")
}

fn requests(log: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn http_tools_succeed_retry_and_fail_as_the_service_answers() {
    let (_keep, dir) = scratch();
    let (_svc, base, log) = http_service(&dir).await;
    let token = dir.join("token");
    std::fs::write(&token, "Bearer s3cret-token\n").unwrap();
    let env = env_with(&format!(
        "{}{}{}{}{}{}",
        http_tool(
            "echo",
            &format!("{base}/echo"),
            &format!(
                "headers = {{ X-Team = \"agents\" }}\nheader_files = {{ Authorization = \"{}\" }}",
                token.display()
            )
        ),
        http_tool("flaky", &format!("{base}/flaky"), ""),
        http_tool(
            "limited",
            &format!("{base}/ratelimited"),
            "retry_base_ms = 10\nretry_max_ms = 10"
        ),
        http_tool("bad", &format!("{base}/bad"), "max_attempts = 3"),
        http_tool(
            "slow",
            &format!("{base}/slow"),
            "timeout_secs = 1\nmax_attempts = 1"
        ),
        http_tool("now", &format!("{base}/echo"), "mode = \"sync\""),
    ));
    let d = env.spawn_daemon().await;
    let _w = env.spawn_worker(1).await;
    let mut c = env.client(&d).await;

    let id = start(&mut c, "echo", r#"{"q":"x"}"#).await;
    let done = finish(&mut c, &id).await;
    assert_eq!(done.status, Status::Done, "{}", done.raw);
    let headers = done.result.unwrap();
    let headers = headers.get("headers").and_then(Json::as_object).unwrap();
    assert_eq!(headers.get("idempotency-key"), Some(&Json::str(&id)));
    assert_eq!(headers.get("mcpq-job-id"), Some(&Json::str(&id)));
    assert_eq!(headers.get("mcpq-tool"), Some(&Json::str("echo")));
    assert_eq!(headers.get("x-team"), Some(&Json::str("agents")));
    assert_eq!(
        headers.get("authorization"),
        Some(&Json::str("Bearer s3cret-token"))
    );

    let id = start(&mut c, "flaky", "{}").await;
    let done = finish(&mut c, &id).await;
    assert!(
        done.raw.contains(r#""result":{"attempt":2}"#),
        "{}",
        done.raw
    );
    let keys: Vec<_> = requests(&log)
        .into_iter()
        .filter(|r| r["path"] == "/flaky")
        .map(|r| r["headers"]["idempotency-key"].clone())
        .collect();
    assert_eq!(
        keys,
        vec![serde_json::json!(id), serde_json::json!(id)],
        "the same key on every delivery"
    );

    let id = start(&mut c, "limited", "{}").await;
    let done = finish(&mut c, &id).await;
    assert_eq!(done.status, Status::Done, "{}", done.raw);
    let at: Vec<f64> = requests(&log)
        .into_iter()
        .filter(|r| r["path"] == "/ratelimited")
        .map(|r| r["at"].as_f64().unwrap())
        .collect();
    assert_eq!(at.len(), 2);
    assert!(
        at[1] - at[0] >= 0.95,
        "Retry-After: 1 honoured over a 10 ms back-off: {at:?}"
    );

    let id = start(&mut c, "bad", "{}").await;
    let done = finish(&mut c, &id).await;
    assert!(
        done.raw.contains("after 1 attempt(s): http 400"),
        "{}",
        done.raw
    );

    let id = start(&mut c, "slow", "{}").await;
    let done = finish(&mut c, &id).await;
    assert!(done.raw.contains("timeout"), "{}", done.raw);

    let r = c.call("now", args(r#"{"a":1}"#)).await.unwrap();
    assert!(r.ok, "{}", r.raw);
    assert_eq!(r.status, Status::Ok);
}

#[tokio::test]
async fn a_sync_tool_over_its_concurrency_cap_answers_busy() {
    // The tool's own cap, then the daemon's cap on tool processes (worker.max_processes).
    for (extra, max_processes) in [("concurrency = 1", "64"), ("concurrency = 2", "1")] {
        let (_keep, dir) = scratch();
        let running = dir.join("running");
        let env = env_with(&sh_tool_argv(
            "slow",
            "slow_sync.sh",
            &[&running],
            &format!("mode = \"sync\"\n{extra}"),
        ))
        .set("MCPQ__WORKER__MAX_PROCESSES", max_processes);
        let d = env.spawn_daemon().await;
        let mut c1 = env.client(&d).await;
        let mut c2 = env.client(&d).await;
        let (a, b) = tokio::join!(c1.call("slow", args("{}")), async {
            // Once the first call's process runs, it holds the only slot.
            eventually(Duration::from_secs(20), "the first call runs", || async {
                running.exists()
            })
            .await;
            let env2 = c2.envelope("slow", args("{}"));
            c2.send(&env2).await
        });
        let a = a.unwrap();
        assert!(a.ok, "{}", a.raw);
        let (http, b) = b.unwrap();
        assert_eq!(b.error_code(), Some("busy"), "{extra}: {}", b.raw);
        assert_eq!(http, 503);
    }
}

#[tokio::test]
async fn config_tools_are_listed_and_the_demo_tools_can_be_switched_off() {
    let env = env_with(&sh_tool(
        "shaped",
        "echo_tool.sh",
        "output_schema = { type = \"object\" }",
    ))
    .set("MCPQ__SERVER__DEMO_TOOLS", "false");
    let d = env.spawn_daemon().await;
    let mut c = env.client(&d).await;
    let r = c.call("server_identity", args("{}")).await.unwrap();
    let tools = r.raw.clone();
    assert!(tools.contains(r#""name":"shaped""#), "{tools}");
    assert!(
        tools.contains(r#""output_schema":{"type":"object"}"#),
        "{tools}"
    );
    assert!(
        !tools.contains("start_long_task") && !tools.contains("batch_sum"),
        "{tools}"
    );
    let r = c
        .call("batch_sum", args(r#"{"numbers":[1]}"#))
        .await
        .unwrap();
    assert_eq!(r.error_code(), Some("unknown_tool"));
}

#[test]
fn a_bad_tool_table_stops_serve_and_worker_naming_tool_and_key() {
    for (table, want) in [
        (
            "[tools.t]\ndescription = \"d\"\ncommand = [\"/bin/true\"]\npaht = \"/x\"\n",
            "tools.t: unknown field `paht`",
        ),
        (
            "[tools.t]\ndescription = \"d\"\ncommand = [\"/bin/true\"]\ninput_schema = { type = \"nope\" }\n",
            "tools.t: input_schema is not a valid JSON Schema",
        ),
        (
            "[tools.poll_job]\ndescription = \"d\"\ncommand = [\"/bin/true\"]\n",
            "tools.poll_job: a built-in tool has this name",
        ),
    ] {
        let env = TestEnv::new(table);
        for cmd in ["serve", "worker"] {
            let out = std::process::Command::new(BIN)
                .arg("--config")
                .arg(&env.config)
                .arg(cmd)
                .envs(env.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{cmd} started with {table}");
            assert!(stderr.contains(want), "{cmd}: {stderr}");
        }
    }
}

/// `dedupe_secs`: a client repeating a call (same canonical arguments, keys in any order)
/// within the window gets the first call's job, which runs once; other arguments or another
/// client get jobs of their own. A window of 0 is refused at start, naming the tool.
#[tokio::test]
async fn a_repeated_call_within_the_dedupe_window_gets_the_first_job() {
    let env = env_with(&sh_tool("report", "echo_tool.sh", "dedupe_secs = 600"));
    let d = env.spawn_daemon().await;
    let mut c = env.client(&d).await;
    let first = start(&mut c, "report", r#"{"day":"2026-12-03","team":"a"}"#).await;
    let again = start(&mut c, "report", r#"{"team":"a","day":"2026-12-03"}"#).await;
    let other = start(&mut c, "report", r#"{"day":"2026-12-04","team":"a"}"#).await;
    assert_eq!(first, again, "the repeat reattached");
    assert_ne!(first, other);
    let mut c2 = mcpq::client::Client::connect(env.client2_settings(&d, CLIENT2_CURRENT))
        .await
        .unwrap();
    let theirs = start(&mut c2, "report", r#"{"day":"2026-12-03","team":"a"}"#).await;
    assert_ne!(first, theirs, "another client's call is its own");
    let _w = env.spawn_worker(1).await;
    let done = finish(&mut c, &first).await;
    assert!(done.ok, "{}", done.raw);
    let again = start(&mut c, "report", r#"{"day":"2026-12-03","team":"a"}"#).await;
    assert_eq!(
        first, again,
        "a finished job still answers within the window"
    );
    let pool = db(&env.db_path()).await;
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM jobs WHERE tool = 'report'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 3);

    let bad = TestEnv::new(&sh_tool("report", "echo_tool.sh", "dedupe_secs = 0"));
    let (code, out, err) = bad.run(&["config", "check"]).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("report") && err.contains("dedupe_secs"),
        "{err}"
    );
}
