//! The disk under SQLite fails, for real: a small tmpfs the test fills to the last byte, and
//! an ext4 image the kernel turns read-only (as it does after an I/O error). The daemon must
//! answer the retryable `store_unavailable` (never `internal`), lose no acknowledged job,
//! say so on `/readyz` and in `mcpq_store_up`, keep its log short, and serve again by itself
//! once space is freed.
//!
//! Mounting needs root (CI runs as root); elsewhere these tests skip with a notice, unless
//! `CI` is set.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::*;
use mcpq::client::Client;
use mcpq::envelope::Status;

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn can_mount() -> bool {
    if is_root() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set but the disk-fault tests cannot mount (not root)"
    );
    eprintln!("notice: not root; skipping a disk-fault test");
    false
}

fn sh(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().expect("run");
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A filesystem the test mounted; unmounted (lazily, the daemon may still hold it) on drop.
struct Mount {
    dir: PathBuf,
    image: Option<PathBuf>,
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        if let Some(i) = &self.image {
            let _ = std::fs::remove_file(i);
        }
    }
}

fn tmpfs(parent: &Path, size: &str) -> Mount {
    let dir = parent.join("disk");
    std::fs::create_dir_all(&dir).unwrap();
    sh(
        "mount",
        &[
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size}"),
            "tmpfs",
            dir.to_str().unwrap(),
        ],
    );
    Mount { dir, image: None }
}

fn ext4(parent: &Path) -> Mount {
    let dir = parent.join("disk");
    std::fs::create_dir_all(&dir).unwrap();
    let image = parent.join("disk.img");
    let f = std::fs::File::create(&image).unwrap();
    f.set_len(32 << 20).unwrap();
    sh("mkfs.ext4", &["-q", image.to_str().unwrap()]);
    sh(
        "mount",
        &[
            "-o",
            "loop,errors=remount-ro",
            image.to_str().unwrap(),
            dir.to_str().unwrap(),
        ],
    );
    Mount {
        dir,
        image: Some(image),
    }
}

/// Writes zeros into `dir/filler` until the filesystem is full.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 64 << 10];
    while f.write_all(&chunk).is_ok() {}
    let small = vec![0u8; 512];
    while f.write_all(&small).is_ok() {}
    let _ = f.sync_all();
    path
}

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    raw_http(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
}

/// A datagram socket in the role of systemd's `NOTIFY_SOCKET`, collecting every message.
struct Notifications {
    path: PathBuf,
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Notifications {
    fn listen(dir: &Path) -> Notifications {
        let path = dir.join("notify.sock");
        let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = seen.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = sock.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                sink.lock().unwrap().push(msg);
            }
        });
        Notifications { path, seen }
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    fn since(&self, mark: usize) -> Vec<String> {
        self.seen.lock().unwrap()[mark..].to_vec()
    }
}

/// The whole HTTP answer (status line, headers, body) to a raw request.
async fn raw_text(addr: std::net::SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("answer in time")
        .unwrap();
    String::from_utf8_lossy(&buf).into_owned()
}

/// Calls `start_long_task` with a large payload (so every commit grows the WAL) until the
/// store refuses one; returns the ids of the accepted jobs.
async fn enqueue_until_refused(client: &mut Client) -> (Vec<String>, String) {
    let pad = "x".repeat(200_000);
    let mut accepted = Vec::new();
    for i in 0..400 {
        let env = client.envelope(
            "start_long_task",
            args(&format!(
                r#"{{"seconds":1,"payload":{{"i":{i},"pad":"{pad}"}}}}"#
            )),
        );
        let (http, r) = client.send(&env).await.expect("call");
        match r.status {
            Status::Accepted => accepted.push(job_id(&r)),
            Status::Error => {
                let err = r.error.clone().unwrap_or_default();
                assert!(
                    err.starts_with("store_unavailable: "),
                    "a disk fault is answered store_unavailable, not {err}"
                );
                assert_eq!(http, 503, "store_unavailable travels as 503");
                return (accepted, err);
            }
            other => panic!("unexpected status {other:?}: {}", r.raw),
        }
    }
    panic!("the store never refused a write on a full disk")
}

fn outage_lines(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .count()
}

async fn all_done(client: &mut Client, ids: &[String]) {
    for id in ids {
        let r = poll_until_finished(client, id, Duration::from_secs(60)).await;
        assert_eq!(r.status, Status::Done, "job {id}: {}", r.raw);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_answers_store_unavailable_and_serves_again_once_space_is_freed() {
    if !can_mount() {
        return;
    }
    let env = TestEnv::new("");
    let disk = tmpfs(env.dir.path(), "24m");
    // The service manager's side: what the daemon says in STATUS= and whether it keeps its
    // watchdog pings while the store is down.
    let notify = Notifications::listen(env.dir.path());
    let env = env
        .set(
            "MCPQ__DATABASE__PATH",
            disk.dir.join("mcpq.db").to_str().unwrap(),
        )
        .set("RUST_LOG", "info")
        .set("NOTIFY_SOCKET", notify.path.to_str().unwrap())
        .set("WATCHDOG_USEC", "400000");
    let d = env.spawn_daemon().await;
    let mut client = env.client(&d).await;
    // A job running while the disk fills: its completion must wait for space, not vanish.
    let r = client
        .call(
            "start_long_task",
            args(r#"{"seconds":2,"payload":{"n":"first"}}"#),
        )
        .await
        .unwrap();
    let mut ids = vec![job_id(&r)];

    let filler = fill(&disk.dir);
    let before = outage_lines(&d.proc.logs());
    let (accepted, err) = enqueue_until_refused(&mut client).await;
    ids.extend(accepted);
    assert!(err.contains("disk is full"), "{err}");
    // More calls while full: each refused the same way, none acknowledged and lost. Every
    // other one carries an idempotency key, so its batch takes the writer's explicit
    // transaction: one that fails on the full disk must not leave the connection refusing
    // the transactions after it.
    for i in 0..50 {
        let a = if i % 2 == 0 {
            r#"{"seconds":1,"payload":{"pad":"x"}}"#.to_string()
        } else {
            format!(r#"{{"seconds":1,"idempotency_key":"full-{i}","payload":{{"pad":"x"}}}}"#)
        };
        let r = client.call("start_long_task", args(&a)).await.unwrap();
        match r.status {
            Status::Accepted => ids.push(job_id(&r)),
            _ => assert!(r
                .error
                .as_deref()
                .unwrap_or("")
                .starts_with("store_unavailable")),
        }
    }
    let (code, body) = get(d.addr, "/readyz").await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("database unreachable for"), "{body}");
    // The same on /mcp: JSON-RPC -32000 store_unavailable, HTTP 503, Retry-After.
    let (headers, body) = modern_request(
        "dev-only-mcp-token-00000000000000000000000000000000",
        "tools/call",
        serde_json::json!({"name": "start_long_task", "arguments": {"seconds": 1}}),
        serde_json::json!({}),
    );
    let mut req = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
         Content-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    let text = raw_text(d.addr, req.as_bytes()).await;
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("retry-after: 1\r\n"),
        "{text}"
    );
    assert!(text.contains(r#""code":-32000"#), "{text}");
    assert!(
        text.contains("store_unavailable: the disk is full"),
        "{text}"
    );
    let (_, metrics) = get(d.metrics.expect("metrics"), "/metrics").await;
    assert!(metrics.contains("mcpq_store_up 0"), "{metrics}");
    let mark = notify.count();
    eventually(
        Duration::from_secs(10),
        "STATUS= says the database is unreachable",
        || async {
            notify.since(mark).iter().any(|m| {
                m.contains("STATUS=")
                    && m.contains("database unreachable for")
                    && m.contains("WATCHDOG=1")
            })
        },
    )
    .await;
    // The job that was running finishes meanwhile: its completion cannot be written, and is
    // retried rather than dropped.
    eventually(
        Duration::from_secs(15),
        "a completion retried on the full disk",
        || async {
            get(d.metrics.unwrap(), "/metrics")
                .await
                .1
                .contains(r#"mcpq_faults_total{site="completion"}"#)
        },
    )
    .await;

    std::fs::remove_file(filler).unwrap();
    eventually(Duration::from_secs(20), "/readyz is 200 again", || async {
        get(d.addr, "/readyz").await.0 == 200
    })
    .await;
    let r = client
        .call(
            "start_long_task",
            args(r#"{"seconds":1,"payload":{"n":"after"}}"#),
        )
        .await
        .unwrap();
    assert_eq!(r.status, Status::Accepted, "{}", r.raw);
    ids.push(job_id(&r));
    let r = client
        .call(
            "start_long_task",
            args(r#"{"seconds":1,"idempotency_key":"after","payload":{"n":"keyed"}}"#),
        )
        .await
        .unwrap();
    assert_eq!(
        r.status,
        Status::Accepted,
        "a keyed call after the outage: {}",
        r.raw
    );
    ids.push(job_id(&r));
    all_done(&mut client, &ids).await;
    let (_, metrics) = get(d.metrics.unwrap(), "/metrics").await;
    assert!(metrics.contains("mcpq_store_up 1"), "{metrics}");
    let mark = notify.count();
    eventually(
        Duration::from_secs(10),
        "STATUS= back to the queue's summary",
        || async {
            notify
                .since(mark)
                .iter()
                .any(|m| m.contains("STATUS=") && !m.contains("unreachable"))
        },
    )
    .await;

    let log = d.proc.logs();
    assert_eq!(log.matches("store unreachable").count(), 1, "{log}");
    assert!(log.contains("store reachable again after"), "{log}");
    let during = outage_lines(&log) - before;
    assert!(
        during <= 30,
        "the outage took {during} warning lines:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_filesystem_answers_store_unavailable_and_loses_no_acknowledged_job() {
    if !can_mount() {
        return;
    }
    let env = TestEnv::new("");
    let disk = ext4(env.dir.path());
    let db = disk.dir.join("mcpq.db");
    let env = env
        .set("MCPQ__DATABASE__PATH", db.to_str().unwrap())
        .set("RUST_LOG", "info");
    let mut d = env.spawn_daemon().await;
    let mut client = env.client(&d).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let r = client
            .call(
                "start_long_task",
                args(&format!(r#"{{"seconds":3,"payload":{{"i":{i}}}}}"#)),
            )
            .await
            .unwrap();
        assert_eq!(r.status, Status::Accepted);
        ids.push(job_id(&r));
    }

    // The kernel turns an ext4 filesystem read-only after an I/O error (errors=remount-ro);
    // ext4's own test hook raises one. (A plain `mount -o remount,ro` is refused while the
    // database is open for writing, so this is how a disk goes read-only under a daemon.)
    let loopdev = String::from_utf8(
        Command::new("findmnt")
            .args(["-no", "SOURCE"])
            .arg(&disk.dir)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let dev = Path::new(loopdev.trim())
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    std::fs::write(format!("/sys/fs/ext4/{dev}/trigger_fs_error"), "mcpq test").unwrap();

    let mut refused = 0;
    for i in 0..20 {
        let r = client
            .call(
                "start_long_task",
                args(&format!(r#"{{"seconds":1,"payload":{{"ro":{i}}}}}"#)),
            )
            .await
            .unwrap();
        match r.status {
            Status::Accepted => ids.push(job_id(&r)),
            Status::Error => {
                let err = r.error.unwrap_or_default();
                assert!(err.starts_with("store_unavailable: "), "{err}");
                refused += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(refused > 0, "a read-only database refuses writes");
    let (code, body) = get(d.addr, "/readyz").await;
    assert_eq!(code, 503, "{body}");
    // Polls still answer from the readable file.
    let r = client
        .call("poll_job", args(&format!(r#"{{"job_id":"{}"}}"#, ids[0])))
        .await
        .unwrap();
    assert_ne!(r.status, Status::Error, "{}", r.raw);
    let log = d.proc.logs();
    assert!(log.contains("store unreachable"), "{log}");
    assert!(outage_lines(&log) <= 30, "{log}");

    // A filesystem the kernel made read-only needs an fsck before it is writable again: the
    // operator stops the daemon, repairs, remounts and starts it. Nothing acknowledged is lost.
    d.proc.kill9().await;
    sh("umount", &[disk.dir.to_str().unwrap()]);
    let image = disk.image.clone().unwrap();
    let _ = Command::new("e2fsck")
        .args(["-fy", image.to_str().unwrap()])
        .output();
    sh(
        "mount",
        &[
            "-o",
            "loop",
            image.to_str().unwrap(),
            disk.dir.to_str().unwrap(),
        ],
    );
    let d = env.spawn_daemon().await;
    let mut client = env.client(&d).await;
    all_done(&mut client, &ids).await;
}
