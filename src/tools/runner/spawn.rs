//! Starting a tool process: `posix_spawn` with the pipes on fds 0-3 (and no other
//! descriptor: everything from 4 up is closed in the child), its own process
//! group, default signal dispositions, a working directory, and a pidfd to await its exit.
//!
//! Why not `std::process::Command`: putting the progress pipe on fd 3 needs a `pre_exec`
//! hook, and any hook makes std fall back from `posix_spawn` (a vfork-style clone) to a
//! full `fork` of the worker. Measured on this 2-core box (BENCHMARKS.md, "Config tools"):
//! 758 vs 1,316 `/bin/cat` jobs/s end to end, and 3x the worker CPU per job.
//!
//! It must not interpret what the process writes; [`super::command`] does.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use tokio::io::unix::AsyncFd;
use tokio::net::unix::pipe;

/// The program `name` names: itself when it has a slash, else the first executable file of
/// that name in `path`'s directories (the tool's `PATH`, not the daemon's).
pub fn find_program(name: &str, path: Option<&str>) -> io::Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    let found = if name.contains('/') {
        Some(std::path::PathBuf::from(name))
    } else {
        path.unwrap_or("").split(':').find_map(|dir| {
            let p = std::path::Path::new(if dir.is_empty() { "." } else { dir }).join(name);
            let executable = std::fs::metadata(&p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false);
            executable.then_some(p)
        })
    };
    let found = found
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "not found on the tool's PATH"))?;
    CString::new(found.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

/// The parent's ends of the child's stdin, stdout, stderr and fd 3.
pub struct Pipes {
    pub stdin: pipe::Sender,
    pub stdout: pipe::Receiver,
    pub stderr: pipe::Receiver,
    pub progress: pipe::Receiver,
}

/// A spawned process, leader of its own process group. Dropping it unreaped kills the group
/// and reaps the leader in the background: a dropped attempt leaves nothing behind.
pub struct Child {
    pid: libc::pid_t,
    exit: Option<AsyncFd<OwnedFd>>,
    reaped: bool,
}

/// What to run.
pub struct Spec<'a> {
    pub program: &'a CStr,
    pub argv: &'a [CString],
    pub envp: &'a [CString],
    pub cwd: &'a CStr,
}

/// A close-on-exec pipe whose ends are numbered 10 or above, so that no `dup2` onto
/// fds 0-3 in the child can clobber another source descriptor (or be a no-op that leaves
/// close-on-exec set, should a source already be that number).
fn high_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 fills both descriptors on success.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both were just created and are owned only here.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((raise(r)?, raise(w)?))
}

fn raise(fd: OwnedFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor we then own.
    let n = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `n` is a fresh descriptor; the old one is closed when `fd` drops.
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(r))
    }
}

/// Starts the process. The parent keeps no descriptor of the child's ends.
pub fn spawn(spec: &Spec<'_>) -> io::Result<(Child, Pipes)> {
    let (stdin_r, stdin_w) = high_pipe()?;
    let (stdout_r, stdout_w) = high_pipe()?;
    let (stderr_r, stderr_w) = high_pipe()?;
    let (progress_r, progress_w) = high_pipe()?;

    let mut argv: Vec<*mut libc::c_char> = spec.argv.iter().map(|a| a.as_ptr() as *mut _).collect();
    argv.push(std::ptr::null_mut());
    let mut envp: Vec<*mut libc::c_char> = spec.envp.iter().map(|e| e.as_ptr() as *mut _).collect();
    envp.push(std::ptr::null_mut());

    let mut pid: libc::pid_t = 0;
    // SAFETY: the file actions and attributes are initialised before use and destroyed on
    // every path; every pointer handed to posix_spawn outlives the call.
    unsafe {
        let mut fa: libc::posix_spawn_file_actions_t = std::mem::zeroed();
        check(libc::posix_spawn_file_actions_init(&mut fa))?;
        let mut attr: libc::posix_spawnattr_t = std::mem::zeroed();
        if let Err(e) = check(libc::posix_spawnattr_init(&mut attr)) {
            libc::posix_spawn_file_actions_destroy(&mut fa);
            return Err(e);
        }
        let result = (|| {
            for (src, dst) in [
                (stdin_r.as_raw_fd(), 0),
                (stdout_w.as_raw_fd(), 1),
                (stderr_w.as_raw_fd(), 2),
                (progress_w.as_raw_fd(), 3),
            ] {
                check(libc::posix_spawn_file_actions_adddup2(
                    &mut fa,
                    src,
                    dst as RawFd,
                ))?;
            }
            // Nothing else crosses into the tool: descriptors the daemon inherited without
            // close-on-exec (a shell's, a supervisor's) would otherwise leak to every tool.
            check(libc::posix_spawn_file_actions_addclosefrom_np(&mut fa, 4))?;
            check(libc::posix_spawn_file_actions_addchdir_np(
                &mut fa,
                spec.cwd.as_ptr(),
            ))?;
            // Its own process group (so the whole tree can be signalled), no blocked
            // signals, and SIGPIPE back to its default (Rust runtimes ignore it, and an
            // ignored signal survives exec).
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            check(libc::posix_spawnattr_setsigmask(&mut attr, &empty))?;
            let mut dfl: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut dfl);
            libc::sigaddset(&mut dfl, libc::SIGPIPE);
            check(libc::posix_spawnattr_setsigdefault(&mut attr, &dfl))?;
            check(libc::posix_spawnattr_setpgroup(&mut attr, 0))?;
            check(libc::posix_spawnattr_setflags(
                &mut attr,
                (libc::POSIX_SPAWN_SETPGROUP
                    | libc::POSIX_SPAWN_SETSIGMASK
                    | libc::POSIX_SPAWN_SETSIGDEF) as libc::c_short,
            ))?;
            check(libc::posix_spawn(
                &mut pid,
                spec.program.as_ptr(),
                &fa,
                &attr,
                argv.as_ptr(),
                envp.as_ptr(),
            ))
        })();
        libc::posix_spawn_file_actions_destroy(&mut fa);
        libc::posix_spawnattr_destroy(&mut attr);
        result?;
    }
    drop((stdin_r, stdout_w, stderr_w, progress_w));
    let mut child = Child {
        pid,
        exit: None,
        reaped: false,
    };
    // SAFETY: plain syscall; the pid is our unreaped child, so it cannot be reused.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if pidfd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pidfd_open returned a new descriptor we own.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) };
    // SAFETY: an OwnedFd stays open and the same descriptor for the AsyncFd's whole life.
    let exit = unsafe { AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) };
    child.exit = Some(exit.map_err(|e| io::Error::other(e.to_string()))?);
    let pipes = Pipes {
        stdin: pipe::Sender::from_owned_fd(stdin_w)?,
        stdout: pipe::Receiver::from_owned_fd(stdout_r)?,
        stderr: pipe::Receiver::from_owned_fd(stderr_r)?,
        progress: pipe::Receiver::from_owned_fd(progress_r)?,
    };
    Ok((child, pipes))
}

impl Child {
    /// The process group id (the leader's pid).
    pub fn pgid(&self) -> libc::pid_t {
        self.pid
    }

    fn try_reap(&mut self) -> io::Result<Option<ExitStatus>> {
        let mut status = 0;
        // SAFETY: waitpid on our own child.
        let r = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
        match r {
            0 => Ok(None),
            r if r == self.pid => {
                self.reaped = true;
                Ok(Some(ExitStatus::from_raw(status)))
            }
            _ => Err(io::Error::last_os_error()),
        }
    }

    /// Waits for the leader to exit and reaps it.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        loop {
            if let Some(st) = self.try_reap()? {
                return Ok(st);
            }
            let Some(exit) = &self.exit else {
                return Err(io::Error::other("no pidfd"));
            };
            // A pidfd becomes readable when the process exits.
            let mut ready = exit.readable().await?;
            ready.clear_ready();
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        // SAFETY: plain syscalls on our own child and its group.
        unsafe {
            libc::kill(-self.pid, libc::SIGKILL);
        }
        if matches!(self.try_reap(), Ok(Some(_))) {
            return;
        }
        // Reap it once it is gone, so no zombie is left behind.
        let pid = self.pid;
        let exit = self.exit.take();
        if let (Ok(rt), Some(exit)) = (tokio::runtime::Handle::try_current(), exit) {
            rt.spawn(async move {
                let _ = exit.readable().await;
                let mut status = 0;
                // SAFETY: waitpid on our own (now exited) child.
                unsafe { libc::waitpid(pid, &mut status, 0) };
            });
        }
    }
}
