//! Test harness: starts the real `mcpq` binary on a free port with a temporary
//! database, and real `mcpq worker` processes against the same file.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

pub mod in_process;

use mcpq::client::Client;
use mcpq::config::{ClientSettings, Secret, Settings};
use mcpq::envelope::VerifiedResponse;
use mcpq::json::{Json, Object};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const BIN: &str = env!("CARGO_BIN_EXE_mcpq");

/// A second client with two live secrets (rotation).
pub const CLIENT2: &str = "client-002";
pub const CLIENT2_CURRENT: &str = "client-two-current-secret-000000000000000000";
pub const CLIENT2_PREVIOUS: &str = "client-two-previous-secret-00000000000000000";

/// A temp directory holding a config file and the database; daemons and workers share it.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub env: Vec<(String, String)>,
    /// (server URL, schema) when the processes use PostgreSQL; the schema is dropped with
    /// the environment.
    pub pg: Option<(String, String)>,
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if let Some((url, schema)) = self.pg.take() {
            drop_pg_schema(url, schema);
        }
    }
}

/// The PostgreSQL server for tests (`MCPQ_TEST_PG_URL`, e.g.
/// `postgres://mcpq:mcpq@127.0.0.1/mcpq_test?sslmode=disable`). Unset: a local run skips the
/// PostgreSQL tests with a notice; CI sets `MCPQ_REQUIRE_PG=1`, and then they may not skip.
pub fn pg_test_url() -> Option<String> {
    match std::env::var("MCPQ_TEST_PG_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            assert!(
                std::env::var("MCPQ_REQUIRE_PG").is_err(),
                "MCPQ_REQUIRE_PG is set but MCPQ_TEST_PG_URL is not: the PostgreSQL tests may not skip"
            );
            eprintln!("notice: MCPQ_TEST_PG_URL is not set; skipping a PostgreSQL test");
            None
        }
    }
}

/// Drops a test schema from a thread of its own (callable from `Drop`, inside or outside a
/// runtime).
pub fn drop_pg_schema(url: String, schema: String) {
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            use sqlx::Connection;
            if let Ok(mut c) = sqlx::PgConnection::connect(&url).await {
                let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                    .execute(&mut c)
                    .await;
            }
        });
    })
    .join();
}

pub struct Proc {
    pub child: Child,
    pub stderr_path: PathBuf,
    /// Process groups the process started (stdio upstreams, tool processes) that outlived
    /// its kill -9: ended when the test is, as systemd ends a unit's control group.
    orphans: Vec<i32>,
}

impl Proc {
    pub fn new(child: Child, stderr_path: PathBuf) -> Proc {
        Proc {
            child,
            stderr_path,
            orphans: Vec::new(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("process has a pid")
    }

    /// SIGKILL: the process gets no chance to clean up. The process groups it had started
    /// live on until the test ends (as they would until systemd ends the unit).
    pub async fn kill9(&mut self) {
        let groups = self.child.id().map(own_group_children).unwrap_or_default();
        self.child.start_kill().expect("kill -9");
        self.child.wait().await.expect("reap");
        self.orphans.extend(groups);
    }

    /// SIGTERM, then wait for a clean exit.
    pub async fn sigterm(&mut self) -> std::process::ExitStatus {
        let st = std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(st.success());
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("process exits after SIGTERM")
            .expect("wait")
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Killed first, so that it cannot start another in their place.
        if let Some(pid) = self.child.id() {
            self.orphans.extend(own_group_children(pid));
            let _ = self.child.start_kill();
        }
        for g in self.orphans.drain(..) {
            // Only while it still leads the group it led: its pid may not have been reused.
            if group_of(g) == Some(g) {
                // SAFETY: kill(2) with a negative pid signals that process group; no memory
                // is involved.
                unsafe { libc::kill(-g, libc::SIGKILL) };
            }
        }
    }
}

/// The children of `pid` that lead a process group of their own (mcpq starts stdio
/// upstreams and tool processes that way).
fn own_group_children(pid: u32) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
                .collect::<Vec<_>>()
        })
        .filter(|c| group_of(*c) == Some(*c))
        .collect()
}

/// The process group of `pid` (`/proc/PID/stat`, the field after the state).
fn group_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; the fields after it do not.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(2)?.parse().ok()
}

pub struct Daemon {
    pub addr: SocketAddr,
    /// The metrics endpoint, when on (each test daemon gets its own port).
    pub metrics: Option<SocketAddr>,
    pub proc: Proc,
}

impl Daemon {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl TestEnv {
    /// `extra` is appended to the generated config file (whole TOML tables only).
    pub fn new(extra: &str) -> TestEnv {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("mcpq.toml");
        let db = dir.path().join("mcpq.db");
        let toml = format!(
            r#"
[clients.{CLIENT2}]
secret = "{CLIENT2_CURRENT}"
previous_secret = "{CLIENT2_PREVIOUS}"
{extra}
"#
        );
        std::fs::write(&config, toml).expect("write config");
        TestEnv {
            dir,
            config,
            env: vec![
                ("MCPQ__DATABASE__PATH".into(), db.display().to_string()),
                ("MCPQ__SERVER__LISTEN".into(), "127.0.0.1:0".into()),
                ("MCPQ__METRICS__LISTEN".into(), "127.0.0.1:0".into()),
            ],
            pg: None,
        }
    }

    /// As [`TestEnv::new`], with every process on PostgreSQL in a fresh schema (dropped with
    /// the environment). `None` when no test server is configured (see [`pg_test_url`]).
    pub fn postgres(extra: &str) -> Option<TestEnv> {
        let url = pg_test_url()?;
        let schema = format!("mcpq_it_{}", uuid::Uuid::new_v4().simple());
        let mut env = TestEnv::new(extra)
            .set("MCPQ__DATABASE__URL", &url)
            .set("MCPQ__POSTGRES__SCHEMA", &schema)
            // Several processes per test, tests in parallel: keep each one's pool small.
            .set("MCPQ__POSTGRES__MAX_CONNECTIONS", "4");
        env.pg = Some((url, schema));
        Some(env)
    }

    /// A pool on this environment's PostgreSQL schema (for checks the wire cannot make).
    pub async fn pg_pool(&self) -> sqlx::PgPool {
        let (url, schema) = self.pg.clone().expect("a PostgreSQL environment");
        let opts: sqlx::postgres::PgConnectOptions = url.parse().expect("url");
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect_with(opts.options([("search_path", schema.as_str())]))
            .await
            .expect("connect to the test PostgreSQL")
    }

    /// Adds an environment override (`MCPQ__SECTION__KEY`) for every process started afterwards.
    pub fn set(mut self, key: &str, value: &str) -> TestEnv {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("mcpq.db")
    }

    pub fn settings(&self) -> Settings {
        Settings::load(Some(&self.config)).expect("settings")
    }

    fn command(&self, args: &[&str], log_name: &str) -> (Command, PathBuf) {
        self.command_with(&self.config, args, log_name)
    }

    fn command_with(&self, config: &Path, args: &[&str], log_name: &str) -> (Command, PathBuf) {
        let stderr_path = self.dir.path().join(log_name);
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&stderr_path)
            .expect("log file");
        let mut cmd = Command::new(BIN);
        cmd.arg("--config")
            .arg(config)
            .args(args)
            .env("RUST_LOG", "debug,sqlx=warn,hyper=info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true);
        (cmd, stderr_path)
    }

    /// Runs a one-shot `mcpq` command (an operator's) to completion: (exit code, stdout,
    /// stderr).
    pub async fn run(&self, args: &[&str]) -> (i32, String, String) {
        self.run_with(&[], args).await
    }

    /// [`TestEnv::run`] with extra environment variables for this command only.
    pub async fn run_with(&self, vars: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
        let (mut cmd, _) = self.command(args, "oneshot.log");
        cmd.envs(vars.iter().copied());
        let out = cmd.stderr(Stdio::piped()).output().await.expect("run mcpq");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Starts `mcpq serve` and waits until it is listening.
    pub async fn spawn_daemon(&self) -> Daemon {
        self.spawn_daemon_logging_to("daemon.log").await
    }

    /// [`TestEnv::spawn_daemon`] with a log file of its own (several daemons in one test).
    pub async fn spawn_daemon_logging_to(&self, log_name: &str) -> Daemon {
        let (mut cmd, stderr_path) = self.command(&["serve"], log_name);
        let mut child = cmd.spawn().expect("spawn mcpq serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut metrics = None;
        let line = loop {
            let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
                .await
                .expect("daemon printed its address in time")
                .expect("read stdout")
                .unwrap_or_else(|| {
                    panic!(
                        "daemon exited before listening; log:\n{}",
                        std::fs::read_to_string(&stderr_path).unwrap_or_default()
                    )
                });
            match line.strip_prefix("metrics on ") {
                Some(a) => metrics = Some(a.parse().expect("metrics address")),
                None => break line,
            }
        };
        let addr = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .expect("address");
        // Keep draining stdout so the daemon never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Daemon {
            addr,
            metrics,
            proc: Proc::new(child, stderr_path),
        }
    }

    /// Starts `mcpq worker` and waits until it has started.
    pub async fn spawn_worker(&self, n: usize) -> Proc {
        self.spawn_worker_with(n, &self.config.clone()).await
    }

    /// Starts `mcpq worker` with another config file (a different version of it).
    pub async fn spawn_worker_with(&self, n: usize, config: &Path) -> Proc {
        let (mut cmd, stderr_path) =
            self.command_with(config, &["worker"], &format!("worker{n}.log"));
        let mut child = cmd.spawn().expect("spawn mcpq worker");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("worker started in time")
            .expect("read stdout");
        assert!(
            line.as_deref().is_some_and(|l| l.starts_with("worker ")),
            "unexpected worker output {line:?}"
        );
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Proc::new(child, stderr_path)
    }

    pub fn client_settings(&self, daemon: &Daemon) -> ClientSettings {
        let mut c = self.settings().client;
        c.url = daemon.url();
        c
    }

    pub fn client2_settings(&self, daemon: &Daemon, secret: &str) -> ClientSettings {
        let mut c = self.client_settings(daemon);
        c.client_id = CLIENT2.into();
        c.secret = Secret::new(secret.as_bytes().to_vec());
        c
    }

    pub async fn client(&self, daemon: &Daemon) -> Client {
        Client::connect(self.client_settings(daemon))
            .await
            .expect("connect")
    }
}

pub fn args(json: &str) -> Object {
    match mcpq::json::parse(json.as_bytes()).expect("test args parse") {
        Json::Object(o) => o,
        _ => panic!("args must be an object"),
    }
}

pub fn job_id(resp: &VerifiedResponse) -> String {
    resp.result
        .as_ref()
        .and_then(|r| r.get("job_id"))
        .and_then(Json::as_str)
        .unwrap_or_else(|| panic!("no job_id in {}", resp.raw))
        .to_string()
}

/// Polls `cond` every 25 ms until it holds or `timeout` passes (waiting for an eventual state, not a race).
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond().await {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Polls a job every 50 ms until `pred` holds for the response (waiting for an eventual state).
pub async fn poll_until(
    client: &mut Client,
    id: &str,
    timeout: Duration,
    what: &str,
    pred: impl Fn(&VerifiedResponse) -> bool,
) -> VerifiedResponse {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let r = client
            .call("poll_job", args(&format!(r#"{{"job_id":"{id}"}}"#)))
            .await
            .expect("poll");
        if pred(&r) {
            return r;
        }
        if tokio::time::Instant::now() > deadline {
            panic!(
                "timed out waiting for {what} of job {id}; last poll {}",
                r.raw
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls a job until its status is terminal; returns the final response.
pub async fn poll_until_finished(
    client: &mut Client,
    id: &str,
    timeout: Duration,
) -> VerifiedResponse {
    poll_until(client, id, timeout, "a terminal status", |r| {
        matches!(
            r.status,
            mcpq::envelope::Status::Done | mcpq::envelope::Status::Error
        )
    })
    .await
}

/// A read-only view of the database file for asserting on rows.
pub async fn db(path: &Path) -> sqlx::SqlitePool {
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .read_only(true);
    sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(opts)
        .await
        .expect("open db")
}

/// Sends raw bytes (a whole HTTP/1.1 request with `Connection: close`) and returns status and body.
pub async fn raw_http(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(request).await.expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("response in time")
        .expect("read");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Verifies a response body with the development server key and returns it.
pub fn verified(body: &str) -> VerifiedResponse {
    let key = Settings::load(None).expect("defaults").server.secret;
    mcpq::envelope::verify_response(body.as_bytes(), key.expose())
        .unwrap_or_else(|e| panic!("response does not verify ({e}): {body}"))
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A standard-MCP 2026-07-28 request with `caps` declared: its headers (bearer token,
/// version, `Mcp-Method`, and `Mcp-Name` for the methods that name something) and body.
pub fn modern_request(
    token: &str,
    method: &str,
    mut params: serde_json::Value,
    caps: serde_json::Value,
) -> (Vec<(&'static str, String)>, String) {
    const MODERN: &str = "2026-07-28";
    params["_meta"] = serde_json::json!({
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": caps,
    });
    let mut headers = vec![
        ("Authorization", format!("Bearer {token}")),
        ("MCP-Protocol-Version", MODERN.to_string()),
        ("Mcp-Method", method.to_string()),
    ];
    let name = params
        .get("name")
        .or_else(|| params.get("taskId"))
        .or_else(|| params.get("uri"))
        .and_then(serde_json::Value::as_str);
    if let Some(n) = name {
        headers.push(("Mcp-Name", n.to_string()));
    }
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 9, "method": method, "params": params})
        .to_string();
    (headers, body)
}

/// Runs `tests/mcp_sdk_tasks.py COMMAND http://ADDR/mcp TOKEN ARGS...`, the Python MCP SDK's
/// client against the daemon (from `.venv`, which `.ci/run` installs), and returns the one
/// JSON line it prints; fails the test with its output if it does not succeed.
pub async fn sdk_client(
    addr: SocketAddr,
    token: &str,
    command: &str,
    args: &[&str],
) -> serde_json::Value {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = tokio::process::Command::new(dir.join(".venv/bin/python3"))
        .arg(dir.join("tests/mcp_sdk_tasks.py"))
        .args([command, &format!("http://{addr}/mcp"), token])
        .args(args)
        .output()
        .await
        .expect("start the Python SDK client (.venv: .ci/run)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{command} {args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}
