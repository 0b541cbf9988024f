//! The command runner: one attempt of a command tool as a child process (docs/TOOLS.md).
//!
//! Owns the process contract: exec of the configured argv (never a shell), a cleared
//! environment plus the tool's `env` and the `MCPQ_*` variables, the configured working
//! directory, its own process group, the args as one JSON document on stdin then EOF, the
//! result as one JSON object on stdout (capped), progress as JSON lines on fd 3, the tail
//! of stderr for the error history, and the end of the whole process group on exit,
//! timeout, cancellation or drop (SIGTERM, then SIGKILL after the grace).
//!
//! It must not log stdout or stderr (they may carry payloads), and it decides only how an
//! attempt ended, not what happens to the job next.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{oneshot, Semaphore};

use super::{tail_text, Invocation};
use crate::config::tools::Target;
use crate::json::{self, Json, Object};
use crate::tools::JobError;

/// Starts the error of a sync call that found every process slot taken (`busy`).
pub const BUSY: &str = "busy: every tool process slot of this daemon is in use";

/// The exit code that asks for a retry (sysexits.h `EX_TEMPFAIL`).
pub const EXIT_TEMPFAIL: i32 = 75;
/// How much of stderr's end is kept for the error history.
pub const STDERR_TAIL_BYTES: usize = 4096;
/// A progress line longer than this is skipped, not buffered.
const MAX_PROGRESS_LINE: usize = 16 * 1024;
/// After the process group is gone, how long its pipes may stay open (a process that left
/// the group with `setsid` can hold them) before the readers are abandoned.
const PIPE_DRAIN: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct CommandRunner {
    /// Tool processes this process may run at once (`worker.max_processes`), shared by
    /// every command tool of the registry.
    slots: Arc<Semaphore>,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    working_dir: std::path::PathBuf,
    kill_grace: Duration,
    max_output: usize,
}

impl CommandRunner {
    pub fn new(target: &Target, max_output: usize, slots: Arc<Semaphore>) -> Option<CommandRunner> {
        match target {
            Target::Command {
                argv,
                env,
                working_dir,
                kill_grace,
            } => Some(CommandRunner {
                slots,
                argv: argv.clone(),
                env: env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                working_dir: working_dir.clone(),
                kill_grace: *kill_grace,
                max_output,
            }),
            Target::Http { .. } => None,
        }
    }

    /// Runs one attempt to its end. A job attempt waits for a free process slot (keeping
    /// its lease); a sync call (no job id) does not wait: it is `busy`.
    pub async fn run(&self, inv: &Invocation<'_>) -> Result<Object, JobError> {
        let _slot = if inv.job_id.is_some() {
            tokio::select! {
                p = self.slots.clone().acquire_owned() => p.map_err(|_| JobError::Retryable("shutting down".into()))?,
                _ = inv.ctx.cancel.cancelled() => return Err(JobError::Fatal("cancelled".into())),
            }
        } else {
            self.slots
                .clone()
                .try_acquire_owned()
                .map_err(|_| JobError::Retryable(BUSY.into()))?
        };
        let (progress_read, progress_write) = pipe().map_err(|e| {
            JobError::Retryable(format!(
                "spawn_failed: cannot create the progress pipe: {e}"
            ))
        })?;
        let mut cmd = tokio::process::Command::new(&self.argv[0]);
        cmd.args(&self.argv[1..])
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("MCPQ_TOOL", inv.tool)
            .env("MCPQ_CLIENT_ID", inv.client_id)
            .env("MCPQ_JOB_ID", inv.job_id.unwrap_or(""))
            .env("MCPQ_ATTEMPT", inv.attempt.to_string())
            .current_dir(&self.working_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group, so the whole tree can be signalled at once.
            .process_group(0)
            .kill_on_drop(true);
        let fd = progress_write.as_raw_fd();
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: only async-signal-safe calls (prctl, getppid, dup2, fcntl) between fork
        // and exec.
        unsafe {
            cmd.pre_exec(move || {
                // If the worker is killed outright (kill -9), its tool dies with it instead
                // of running on unsupervised; the rescuer then applies the crash policy.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::getppid() != parent {
                    // The worker died between fork and prctl.
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
                if fd == 3 {
                    // dup2 onto itself would keep close-on-exec set.
                    let flags = libc::fcntl(3, libc::F_GETFD);
                    if flags < 0 || libc::fcntl(3, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(fd, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| JobError::Retryable(format!("spawn_failed: {}: {e}", self.argv[0])))?;
        drop(progress_write);
        let group = Group(child.id().map(|pid| pid as libc::pid_t));

        let stdin = child.stdin.take();
        let args = inv.args_json.to_string();
        let writer = tokio::spawn(async move {
            if let Some(mut stdin) = stdin {
                // A tool that exits without reading its stdin is not an error.
                let _ = stdin.write_all(args.as_bytes()).await;
                let _ = stdin.shutdown().await;
            }
        });
        let (overflow_tx, overflow_rx) = oneshot::channel();
        let stdout = tokio::spawn(read_capped(
            child.stdout.take(),
            self.max_output,
            overflow_tx,
        ));
        let stderr = tokio::spawn(read_tail(child.stderr.take(), STDERR_TAIL_BYTES));
        let progress = inv.ctx.clone();
        let progress = tokio::spawn(async move {
            if let Ok(rx) = tokio::net::unix::pipe::Receiver::from_owned_fd(progress_read) {
                read_progress(rx, |p| progress.report_progress(p)).await;
            }
        });

        enum End {
            Exited(std::io::Result<ExitStatus>),
            TimedOut,
            Cancelled,
            Overflow,
        }
        let end = tokio::select! {
            st = child.wait() => End::Exited(st),
            _ = tokio::time::sleep(inv.timeout) => End::TimedOut,
            _ = inv.ctx.cancel.cancelled() => End::Cancelled,
            Ok(()) = overflow_rx => End::Overflow,
        };
        let (end, status) = match end {
            End::Exited(st) => (None, st),
            other => {
                group.signal(libc::SIGTERM);
                let st = match tokio::time::timeout(self.kill_grace, child.wait()).await {
                    Ok(st) => st,
                    Err(_) => {
                        group.signal(libc::SIGKILL);
                        child.wait().await
                    }
                };
                (Some(other), st)
            }
        };
        // The attempt is over: whatever the tool left behind in its group goes too.
        group.signal(libc::SIGKILL);
        drop(group);
        writer.abort();
        let out = join_within(stdout, PIPE_DRAIN).await.unwrap_or_default();
        let err_tail = join_within(stderr, PIPE_DRAIN).await.unwrap_or_default();
        if tokio::time::timeout(PIPE_DRAIN, progress).await.is_err() {
            tracing::debug!(
                tool = inv.tool,
                "progress pipe still open after the group ended"
            );
        }
        let with_stderr = |msg: String| {
            let tail = tail_text(&err_tail);
            if tail.is_empty() {
                msg
            } else {
                format!("{msg}; stderr: {tail}")
            }
        };
        match end {
            None => {}
            Some(End::Cancelled) => return Err(JobError::Fatal("cancelled".into())),
            Some(End::TimedOut) => {
                return Err(JobError::Retryable(with_stderr(format!(
                    "timeout: no result within {} s; the process group was terminated",
                    inv.timeout.as_secs()
                ))))
            }
            Some(End::Overflow) => {
                return Err(JobError::Fatal(format!(
                    "output_too_large: stdout exceeded {} bytes",
                    self.max_output
                )))
            }
            Some(End::Exited(_)) => {}
        }
        let status = status.map_err(|e| JobError::Retryable(format!("wait_failed: {e}")))?;
        classify(status, &out, self.max_output, with_stderr)
    }
}

/// How a finished process's attempt ended.
fn classify(
    status: ExitStatus,
    stdout: &[u8],
    max_output: usize,
    with_stderr: impl Fn(String) -> String,
) -> Result<Object, JobError> {
    use std::os::unix::process::ExitStatusExt;
    match status.code() {
        Some(0) => {
            if stdout.len() > max_output {
                return Err(JobError::Fatal(format!(
                    "output_too_large: stdout exceeded {max_output} bytes"
                )));
            }
            match json::parse(stdout) {
                Ok(Json::Object(o)) => Ok(o),
                Ok(other) => Err(JobError::Fatal(format!(
                    "invalid_output: stdout must be one JSON object, got {}",
                    other.type_name()
                ))),
                Err(e) => Err(JobError::Fatal(with_stderr(format!(
                    "invalid_output: stdout is not one JSON object ({e})"
                )))),
            }
        }
        Some(EXIT_TEMPFAIL) => Err(JobError::Retryable(with_stderr(format!(
            "exit {EXIT_TEMPFAIL} (temporary failure)"
        )))),
        Some(code) => Err(JobError::Fatal(with_stderr(format!("exit {code}")))),
        None => Err(JobError::Retryable(with_stderr(format!(
            "killed by signal {}",
            status.signal().unwrap_or(0)
        )))),
    }
}

/// A process group that is killed when dropped (a dropped attempt leaves nothing running).
struct Group(Option<libc::pid_t>);

impl Group {
    fn signal(&self, sig: libc::c_int) {
        if let Some(pgid) = self.0 {
            // SAFETY: plain syscall; ESRCH (group already gone) is expected and ignored.
            unsafe {
                libc::kill(-pgid, sig);
            }
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.signal(libc::SIGKILL);
    }
}

/// A pipe with both ends close-on-exec: (read, write).
fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 fills both descriptors on success; each is owned exactly once below.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are not owned elsewhere.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

async fn join_within<T: Default>(h: tokio::task::JoinHandle<T>, limit: Duration) -> Option<T> {
    let abort = h.abort_handle();
    match tokio::time::timeout(limit, h).await {
        Ok(Ok(v)) => Some(v),
        _ => {
            abort.abort();
            None
        }
    }
}

/// Reads up to `cap + 1` bytes; one byte over the cap signals `overflow` and stops reading.
async fn read_capped(
    r: Option<impl AsyncRead + Unpin>,
    cap: usize,
    overflow: oneshot::Sender<()>,
) -> Vec<u8> {
    let mut out = Vec::new();
    let Some(r) = r else { return out };
    let mut limited = r.take(cap as u64 + 1);
    let _ = limited.read_to_end(&mut out).await;
    if out.len() > cap {
        let _ = overflow.send(());
    }
    out
}

/// Reads to EOF keeping only the last `keep` bytes.
async fn read_tail(r: Option<impl AsyncRead + Unpin>, keep: usize) -> Vec<u8> {
    let mut tail = Vec::new();
    let Some(mut r) = r else { return tail };
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return tail,
            Ok(n) => {
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > keep {
                    tail.drain(..tail.len() - keep);
                }
            }
        }
    }
}

/// Reads JSON lines; each line that is a JSON object is reported. Other lines are skipped.
async fn read_progress(mut r: impl AsyncRead + Unpin, mut report: impl FnMut(Object)) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut skipping = false;
    loop {
        let n = match r.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        for &b in &chunk[..n] {
            if b == b'\n' {
                if !skipping {
                    if let Ok(Json::Object(o)) = json::parse(&buf) {
                        report(o);
                    }
                }
                buf.clear();
                skipping = false;
            } else if !skipping {
                buf.push(b);
                if buf.len() > MAX_PROGRESS_LINE {
                    buf.clear();
                    skipping = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn progress_lines_that_are_objects_are_reported_and_the_rest_skipped() {
        let long = format!("{{\"x\":\"{}\"}}\n", "a".repeat(MAX_PROGRESS_LINE + 1));
        let input = format!(
            "{{\"progress\":0.5}}\nnot json\n[1]\n{long}{{\"progress\":1,\"message\":\"done\"}}\n{{\"partial\":"
        );
        let mut seen = Vec::new();
        read_progress(input.as_bytes(), |o| {
            seen.push(Json::Object(o).to_canonical())
        })
        .await;
        assert_eq!(
            seen,
            [r#"{"progress":0.5}"#, r#"{"message":"done","progress":1}"#]
        );
    }

    #[tokio::test]
    async fn stderr_keeps_only_its_tail() {
        let input = format!("{}END", "x".repeat(10_000));
        let tail = read_tail(Some(input.as_bytes()), 8).await;
        assert_eq!(tail, b"xxxxxEND");
    }
}
