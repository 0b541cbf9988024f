//! Runs `tests/seed_compat.py` (the seed's own Python models and signing code) against
//! the real `mcpq serve` binary over HTTP.
//!
//! Needs `<repo>/.venv/bin/python3` with pydantic>=2 (`bash .ci/run` creates it) and
//! the seed reference `seed_mcp.py` (see `tests/seed_compat.py` for where it is looked up).
//! Self-contained on purpose: it does not use `tests/common`.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mcpq::config::Settings;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// Kills the child (SIGKILL) and reaps it when dropped, so no daemon outlives a failed test.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn venv_python() -> PathBuf {
    let python = Path::new(REPO).join(".venv/bin/python3");
    if !python.exists() {
        panic!(
            "{} does not exist. The seed compatibility test runs the seed's Python code and needs a \
             virtualenv with pydantic>=2: run `bash .ci/run`, or create it with\n    \
             python3 -m venv .venv && .venv/bin/pip install 'pydantic>=2'\n(from {REPO})",
            python.display()
        );
    }
    python
}

/// Reads a pipe to the end on a thread; the receiver gets the whole text.
fn collect(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
    });
    rx
}

/// Starts `mcpq serve` on 127.0.0.1:0 with its database in `dir`; returns it and its address.
fn start_daemon(dir: &Path) -> (KillOnDrop, String) {
    let log = std::fs::File::create(dir.join("daemon.log")).expect("create daemon.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_mcpq"))
        .arg("serve")
        .env_remove("MCPQ_CONFIG")
        .env("MCPQ__DATABASE__PATH", dir.join("mcpq.db"))
        .env("MCPQ__SERVER__LISTEN", "127.0.0.1:0")
        .env("MCPQ__METRICS__LISTEN", "")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("spawn mcpq serve");
    let stdout = child.stdout.take().expect("daemon stdout");
    let daemon = KillOnDrop(child);

    // The first stdout line is `listening on ADDR`. Keep draining stdout afterwards so
    // a later print can never hit a closed pipe.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let _ = tx.send(lines.next());
        for _ in lines {}
    });
    let first = rx.recv_timeout(Duration::from_secs(60));
    let log_text = || std::fs::read_to_string(dir.join("daemon.log")).unwrap_or_default();
    let line = match first {
        Ok(Some(Ok(line))) => line,
        other => panic!(
            "mcpq serve did not print `listening on ADDR` ({other:?}); its log:\n{}",
            log_text()
        ),
    };
    let addr = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}; log:\n{}", log_text()))
        .trim()
        .to_string();
    (daemon, addr)
}

/// Waits for `child` up to `limit`, killing it if it takes longer.
fn wait_with_timeout(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn seed_python_client_interoperates_with_the_daemon() {
    let python = venv_python();
    let settings = Settings::load(None).expect("default settings load");
    let client_id = settings.client.client_id.clone();
    let client_keys = settings
        .clients
        .get(&client_id)
        .unwrap_or_else(|| panic!("config/default.toml has no [clients.{client_id}]"));
    let client_secret = String::from_utf8(client_keys.secrets[0].expose().to_vec())
        .expect("client secret is UTF-8");
    let server_secret = String::from_utf8(settings.server.secret.expose().to_vec())
        .expect("server secret is UTF-8");

    let dir = tempfile::tempdir().expect("tempdir");
    let (mut daemon, addr) = start_daemon(dir.path());

    let mut py = Command::new(&python)
        .arg(Path::new(REPO).join("tests/seed_compat.py"))
        .env("MCPQ_URL", format!("http://{addr}"))
        .env("MCPQ_CLIENT_ID", &client_id)
        .env("MCPQ_CLIENT_SECRET", &client_secret)
        .env("MCPQ_SERVER_ID", &settings.server.id)
        .env("MCPQ_SERVER_SECRET", &server_secret)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    let out = collect(py.stdout.take().expect("python stdout"));
    let err = collect(py.stderr.take().expect("python stderr"));
    let status = wait_with_timeout(&mut py, Duration::from_secs(300));
    let out = out.recv().unwrap_or_default();
    let err = err.recv().unwrap_or_default();
    println!("{out}");
    eprintln!("{err}");

    let still_running = daemon.0.try_wait().expect("try_wait daemon").is_none();
    drop(daemon); // kill -9 and reap
    let log = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default();
    match status {
        Some(s) if s.success() => {}
        Some(s) => panic!(
            "tests/seed_compat.py failed ({s}):\n--- stdout\n{out}\n--- stderr\n{err}\n--- daemon log\n{log}"
        ),
        None => panic!(
            "tests/seed_compat.py did not finish within 300 s:\n--- stdout\n{out}\n--- stderr\n{err}\n--- daemon log\n{log}"
        ),
    }
    assert!(
        still_running,
        "the daemon exited during the test; its log:\n{log}"
    );
}
