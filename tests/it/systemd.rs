//! The units in `systemd/`, exercised the way systemd runs them (this machine has no systemd
//! as PID 1): each unit's exact `ExecStart=` and `Environment=` lines, with `NOTIFY_SOCKET`
//! pointing at a datagram socket the test owns, `WATCHDOG_USEC` set, `CREDENTIALS_DIRECTORY`
//! holding the secrets, and, for the daemon, `LISTEN_FDS`/`LISTEN_PID` with a listening
//! socket the test opened (socket activation).

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::*;
use mcpq::config::ClientSettings;

const SERVER_SECRET: &str = "unit-test-server-secret-0123456789abcdef0123";
const CLIENT_SECRET: &str = "unit-test-client-secret-0123456789abcdef0123";

/// `ExecStart=` and `Environment=` of a unit file, and whether it loads credentials.
fn unit(name: &str) -> (Vec<String>, Vec<(String, String)>, bool) {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("systemd")
            .join(name),
    )
    .unwrap();
    let mut exec = Vec::new();
    let mut envs = Vec::new();
    let mut credentials = false;
    for line in text.lines() {
        credentials |= line.starts_with("LoadCredential=");
        if let Some(cmd) = line.strip_prefix("ExecStart=") {
            exec = cmd.split_whitespace().map(str::to_string).collect();
        } else if let Some(kv) = line.strip_prefix("Environment=") {
            let (k, v) = kv.split_once('=').unwrap();
            envs.push((k.to_string(), v.to_string()));
        }
    }
    assert_eq!(exec[0], "/usr/bin/mcpq", "{name}");
    assert_eq!(exec[1..3], ["--config", "/etc/mcpq/mcpq.toml"], "{name}");
    (exec, envs, credentials)
}

struct Host {
    dir: tempfile::TempDir,
    notify: UnixDatagram,
    notify_path: PathBuf,
}

impl Host {
    fn new() -> Host {
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("credentials");
        std::fs::create_dir(&creds).unwrap();
        std::fs::write(creds.join("server_secret"), SERVER_SECRET).unwrap();
        std::fs::write(creds.join("clients_client-001"), CLIENT_SECRET).unwrap();
        // The operator's /etc/mcpq/mcpq.toml: secrets only by credential name.
        std::fs::write(
            dir.path().join("mcpq.toml"),
            "[server]\nsecret_file = \"$CREDENTIALS_DIRECTORY/server_secret\"\n\
             [clients.client-001]\nsecret_file = \"$CREDENTIALS_DIRECTORY/clients_client-001\"\n",
        )
        .unwrap();
        let notify_path = dir.path().join("notify.sock");
        let notify = UnixDatagram::bind(&notify_path).unwrap();
        notify
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Host {
            dir,
            notify,
            notify_path,
        }
    }

    /// Starts a unit's ExecStart like systemd: its environment, the notify socket, a
    /// watchdog, the credentials, and `listener` as fd 3 with LISTEN_FDS=1.
    fn start(
        &self,
        unit_name: &str,
        listener: Option<&std::net::TcpListener>,
    ) -> std::process::Child {
        let (exec, envs, credentials) = unit(unit_name);
        let config = self.dir.path().join("mcpq.toml");
        let mut args: Vec<String> = exec[1..].to_vec();
        args[1] = config.display().to_string();
        // `sh` sets LISTEN_PID to its own pid and then becomes mcpq (exec keeps the pid),
        // as systemd sets it between fork and exec.
        let mut cmd = std::process::Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(if listener.is_some() {
                "LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" \"$@\""
            } else {
                "exec \"$0\" \"$@\""
            })
            .arg(BIN)
            .args(&args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("RUST_LOG", "debug,sqlx=warn,hyper=info")
            .env("NOTIFY_SOCKET", &self.notify_path)
            .env("WATCHDOG_USEC", "300000")
            .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            // The unit's state directory, here.
            .env("MCPQ__DATABASE__PATH", self.dir.path().join("mcpq.db"))
            // Tests run side by side: no fixed metrics port.
            .env("MCPQ__METRICS__LISTEN", "127.0.0.1:0")
            .stdout(std::process::Stdio::null())
            .stderr(
                std::fs::File::create(self.dir.path().join(format!("{unit_name}.log"))).unwrap(),
            );
        // Only a unit with LoadCredential= gets a credentials directory (the worker has
        // none: it must start without secrets).
        if credentials {
            cmd.env("CREDENTIALS_DIRECTORY", self.dir.path().join("credentials"));
        }
        if let Some(l) = listener {
            let fd = l.as_raw_fd();
            // SAFETY: dup2 is async-signal-safe; it clears close-on-exec on fd 3.
            unsafe {
                use std::os::unix::process::CommandExt;
                cmd.pre_exec(move || {
                    if libc::dup2(fd, 3) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        cmd.spawn().unwrap()
    }

    /// Notification datagrams until `want` is among the lines of one (or the deadline).
    fn wait_for(&self, want: &str, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = self.notify.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                let hit = msg.lines().any(|l| l == want);
                seen.push(msg);
                if hit {
                    return seen;
                }
            }
        }
        panic!("no {want} within {within:?}; got {seen:?}");
    }
}

fn client_settings(addr: std::net::SocketAddr) -> ClientSettings {
    ClientSettings {
        url: format!("http://{addr}"),
        client_id: "client-001".into(),
        server_id: "mcp-server-001".into(),
        secret: mcpq::config::Secret::new(CLIENT_SECRET.as_bytes().to_vec()),
        server_secret: mcpq::config::Secret::new(SERVER_SECRET.as_bytes().to_vec()),
    }
}

async fn signed_call_works(addr: std::net::SocketAddr) -> bool {
    let Ok(mut c) = mcpq::client::Client::connect(client_settings(addr)).await else {
        return false;
    };
    matches!(c.call("batch_sum", args(r#"{"numbers":[1,2]}"#)).await, Ok(r) if r.ok)
}

fn signal(child: &std::process::Child, sig: &str) {
    let st = std::process::Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

async fn wait_exit(child: &mut std::process::Child, log: &Path) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        assert!(
            Instant::now() < deadline,
            "did not exit; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_daemon_unit_notifies_ready_watchdog_reloading_and_stopping() {
    let host = Host::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut d = host.start("mcpq.service", Some(&listener));
    let seen = host.wait_for("READY=1", Duration::from_secs(30));
    // READY only once a signed call succeeds (on the socket systemd holds, secrets from
    // the credentials directory).
    assert!(
        signed_call_works(addr).await,
        "READY before serving: {seen:?}"
    );
    assert!(
        seen.iter().any(|m| m.contains("STATUS=serving on")),
        "{seen:?}"
    );
    // The watchdog is fed while healthy, and the status line shows the queue: this unit
    // runs no embedded worker, so an accepted job stays queued.
    let mut c = mcpq::client::Client::connect(client_settings(addr))
        .await
        .unwrap();
    let r = c
        .call("start_long_task", args(r#"{"seconds":1}"#))
        .await
        .unwrap();
    assert!(r.ok, "{}", r.raw);
    let seen = host.wait_for("WATCHDOG=1", Duration::from_secs(5));
    let seen = [seen, host.wait_for("WATCHDOG=1", Duration::from_secs(5))].concat();
    assert!(
        seen.iter()
            .any(|m| m.contains("STATUS=serving on") && m.contains("1 queued (oldest waiting")),
        "{seen:?}"
    );
    // Reload: RELOADING, then READY again.
    signal(&d, "-HUP");
    host.wait_for("RELOADING=1", Duration::from_secs(10));
    let seen = host.wait_for("READY=1", Duration::from_secs(10));
    assert!(
        seen.iter().any(|m| m.contains("configuration reloaded")),
        "{seen:?}"
    );
    // Stop: STOPPING, then a clean exit.
    signal(&d, "-TERM");
    host.wait_for("STOPPING=1", Duration::from_secs(10));
    assert!(wait_exit(&mut d, &host.dir.path().join("mcpq.service.log"))
        .await
        .success());
}

#[tokio::test]
async fn the_worker_unit_notifies_ready_and_stopping() {
    let host = Host::new();
    let mut w = host.start("mcpq-worker@.service", None);
    let seen = host.wait_for("READY=1", Duration::from_secs(30));
    assert!(seen.iter().any(|m| m.contains("claiming")), "{seen:?}");
    host.wait_for("WATCHDOG=1", Duration::from_secs(5));
    signal(&w, "-TERM");
    host.wait_for("STOPPING=1", Duration::from_secs(10));
    assert!(
        wait_exit(&mut w, &host.dir.path().join("mcpq-worker@.service.log"))
            .await
            .success()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_under_socket_activation_refuses_no_request() {
    let host = Host::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut d = host.start("mcpq.service", Some(&listener));
    host.wait_for("READY=1", Duration::from_secs(30));

    // Calls on fresh connections, one after another, across the restart.
    let caller = tokio::spawn(async move {
        let (mut ok, mut failed) = (0, Vec::new());
        let until = Instant::now() + Duration::from_secs(4);
        while Instant::now() < until {
            match mcpq::client::Client::connect(client_settings(addr)).await {
                Ok(mut c) => match c.call("batch_sum", args(r#"{"numbers":[1]}"#)).await {
                    Ok(r) if r.ok => ok += 1,
                    other => failed.push(format!("{other:?}")),
                },
                Err(e) => failed.push(e.to_string()),
            }
        }
        (ok, failed)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    signal(&d, "-TERM");
    assert!(wait_exit(&mut d, &host.dir.path().join("mcpq.service.log"))
        .await
        .success());
    // systemd keeps the socket and starts the new daemon on it; meanwhile connections
    // wait in its backlog.
    let mut d2 = host.start("mcpq.service", Some(&listener));
    let (ok, failed) = caller.await.unwrap();
    assert!(
        failed.is_empty(),
        "{} refused or failed: {failed:?}",
        failed.len()
    );
    assert!(ok > 10, "{ok} calls");
    signal(&d2, "-TERM");
    assert!(
        wait_exit(&mut d2, &host.dir.path().join("mcpq.service.log"))
            .await
            .success()
    );
}
