//! Signals between the processes that share one SQLite database (a daemon, its worker
//! processes, another daemon on the same file): "jobs were enqueued" to workers, "these
//! jobs changed" to processes holding calls on them. One unix datagram socket per process
//! and kind in a directory beside the database (`<database>-signals/`, mode 0770), so a
//! worker claims as soon as a job is committed and a held call answers as soon as its job
//! finished, instead of when their back-off timers next fire.
//!
//! Signals are hints: a lost one (a full socket buffer, a process that bound late, a path
//! too long for a socket) costs latency, never a job, because every waiter keeps its
//! timer. It must not carry anything but wake-ups: no job data crosses these sockets, and
//! nothing trusts them (anyone who can write the directory can only cause re-reads).

use std::io::ErrorKind;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use tokio::sync::Notify;

use crate::store::changes::JobChanges;

/// Socket name prefixes: who listens for what.
const ENQUEUED: &str = "e-";
const CHANGED: &str = "c-";
/// A datagram naming more ids than fit in this many bytes says "all changed" instead.
const MAX_DATAGRAM: usize = 32 * 1024;

/// This process's end of the signals (cheap to share).
pub(super) struct Signals {
    dir: PathBuf,
    /// Unbound, non-blocking: sends to every listener.
    out: Option<UnixDatagram>,
    peers: Mutex<Peers>,
    /// Set once this process listens for enqueues (a worker).
    enqueued: OnceLock<Option<Arc<Notify>>>,
    /// Set once this process holds calls on jobs (a daemon).
    changes: OnceLock<Arc<JobChanges>>,
    /// The sockets this process bound, removed on close.
    bound: Mutex<Vec<PathBuf>>,
}

#[derive(Default)]
struct Peers {
    /// The directory's modification time when it was last read: a socket bound or removed
    /// since changes it, and only then is the directory read again (or while that time is
    /// recent: file times tick coarsely, so a bind in the same tick would not show).
    read_at: Option<SystemTime>,
    enqueued: Vec<PathBuf>,
    changed: Vec<PathBuf>,
}

impl Signals {
    /// The signals of the database at `db_path`. Nothing is bound until this process asks
    /// to listen; sending needs only the directory.
    pub(super) fn new(db_path: &Path) -> Signals {
        let mut dir = db_path.as_os_str().to_owned();
        dir.push("-signals");
        let dir = PathBuf::from(dir);
        let out = UnixDatagram::unbound()
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .map_err(|e| tracing::debug!(error = %e, "signal socket: sending disabled"))
            .ok();
        Signals {
            dir,
            out,
            peers: Mutex::new(Peers::default()),
            enqueued: OnceLock::new(),
            changes: OnceLock::new(),
            bound: Mutex::new(Vec::new()),
        }
    }

    /// Jobs were committed: wake the workers.
    pub(super) fn send_enqueued(&self) {
        self.send(&self.listeners(ENQUEUED), b"e");
    }

    /// These jobs changed: wake this process's waiters on them and tell other processes.
    pub(super) fn send_changed<'a>(&self, ids: impl Iterator<Item = &'a str> + Clone) {
        if let Some(local) = self.changes.get() {
            local.changed(ids.clone());
        }
        let listeners = self.listeners(CHANGED);
        if listeners.is_empty() {
            return;
        }
        let mut msg = Vec::with_capacity(1024);
        msg.push(b'c');
        for id in ids {
            if msg.len() + id.len() + 1 > MAX_DATAGRAM {
                msg.truncate(1);
                msg[0] = b'*';
                break;
            }
            msg.push(b'\n');
            msg.extend_from_slice(id.as_bytes());
        }
        self.send(&listeners, &msg);
    }

    /// Wakes on other processes' enqueues; `None` if this process cannot listen.
    pub(super) fn enqueued(&self) -> Option<Arc<Notify>> {
        self.enqueued
            .get_or_init(|| {
                let notify = Arc::new(Notify::new());
                let wake = notify.clone();
                self.listen(ENQUEUED, move |_| wake.notify_one())
                    .map(|()| notify)
            })
            .clone()
    }

    /// This process's waiters on jobs, woken by its own completions and other processes'.
    pub(super) fn changes(&self) -> Arc<JobChanges> {
        self.changes
            .get_or_init(|| {
                let changes = JobChanges::new();
                let local = changes.clone();
                // Unbound (a path too long, no directory): only this process's own
                // completions wake its waiters; their timers cover the rest.
                let _ = self.listen(CHANGED, move |msg| match msg.first() {
                    Some(b'c') => local.changed(
                        msg[1..]
                            .split(|b| *b == b'\n')
                            .filter_map(|id| std::str::from_utf8(id).ok())
                            .filter(|id| !id.is_empty()),
                    ),
                    _ => local.all_changed(),
                });
                changes
            })
            .clone()
    }

    /// Removes the sockets this process bound (a clean stop; a killed process's are
    /// removed by the next sender that finds nobody behind them).
    pub(super) fn close(&self) {
        for p in lock(&self.bound).drain(..) {
            let _ = std::fs::remove_file(p);
        }
    }

    /// Binds a socket of `kind` and hands each datagram to `on`. `None` if it cannot.
    fn listen(&self, kind: &str, on: impl Fn(&[u8]) + Send + 'static) -> Option<()> {
        let made = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o770)
            .create(&self.dir);
        let path = self.dir.join(format!(
            "{kind}{}-{}.sock",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        let socket = made.and_then(|()| tokio::net::UnixDatagram::bind(&path));
        let socket = match socket {
            Ok(s) => s,
            Err(e) => {
                tracing::info!(path = %path.display(), error = %e,
                    "no signal socket: waits fall back to polling");
                return None;
            }
        };
        lock(&self.bound).push(path);
        tokio::spawn(async move {
            let mut buf = vec![0u8; MAX_DATAGRAM + 64];
            while let Ok(n) = socket.recv(&mut buf).await {
                on(&buf[..n]);
            }
        });
        Some(())
    }

    fn listeners(&self, kind: &str) -> Vec<PathBuf> {
        let mut peers = lock(&self.peers);
        let modified = std::fs::metadata(&self.dir).and_then(|m| m.modified()).ok();
        let recent = modified.is_none_or(|m| {
            m.elapsed()
                .map_or(true, |age| age < std::time::Duration::from_millis(100))
        });
        if recent || peers.read_at != modified {
            let own = lock(&self.bound).clone();
            let (mut enqueued, mut changed) = (Vec::new(), Vec::new());
            for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if own.contains(&path) {
                    continue;
                }
                match entry.file_name().to_str() {
                    Some(n) if n.starts_with(ENQUEUED) => enqueued.push(path),
                    Some(n) if n.starts_with(CHANGED) => changed.push(path),
                    _ => {}
                }
            }
            *peers = Peers {
                read_at: modified,
                enqueued,
                changed,
            };
        }
        match kind {
            ENQUEUED => peers.enqueued.clone(),
            _ => peers.changed.clone(),
        }
    }

    fn send(&self, listeners: &[PathBuf], msg: &[u8]) {
        let Some(out) = &self.out else { return };
        for path in listeners {
            match out.send_to(msg, path) {
                Ok(_) => {}
                // Nobody bound behind it: the process that did is gone.
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => forget(&self.peers, path),
                Err(e) if e.kind() == ErrorKind::NotFound => forget(&self.peers, path),
                // A full buffer already holds a wake-up for that listener.
                Err(_) => {}
            }
        }
    }
}

/// A dead listener's socket: removed, and dropped from the cached list.
fn forget(peers: &Mutex<Peers>, path: &Path) {
    let _ = std::fs::remove_file(path);
    let mut peers = lock(peers);
    peers.enqueued.retain(|p| p != path);
    peers.changed.retain(|p| p != path);
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
