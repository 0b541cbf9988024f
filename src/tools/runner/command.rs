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

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use super::{spawn, tail_text, Invocation};
use crate::config::tool_table::Target;
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
    argv_c: Vec<CString>,
    /// The tool's `env` as `KEY=VALUE`.
    env_c: Vec<CString>,
    /// Where a program named without a slash is looked for.
    path: Option<String>,
    cwd_c: CString,
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
                // Config validation refuses NUL bytes in argv; env and paths are checked here.
                argv_c: argv
                    .iter()
                    .filter_map(|a| CString::new(a.as_str()).ok())
                    .collect(),
                // `MCPQ_*` names are the daemon's, set on every run: a tool's own entry of
                // the same name would make a duplicate, and the daemon's value wins.
                env_c: env
                    .iter()
                    .filter(|(k, _)| !k.starts_with("MCPQ_"))
                    .filter_map(|(k, v)| CString::new(format!("{k}={v}")).ok())
                    .collect(),
                path: env
                    .get("PATH")
                    .cloned()
                    .or_else(|| std::env::var("PATH").ok()),
                cwd_c: CString::new(working_dir.as_os_str().as_bytes()).ok()?,
                kill_grace: *kill_grace,
                max_output,
            }),
            _ => None,
        }
    }

    /// The tool's environment plus the `MCPQ_*` variables of this call.
    fn envp(&self, inv: &Invocation<'_>) -> Vec<CString> {
        let mut envp = self.env_c.clone();
        let attempt = inv.attempt.to_string();
        let mut vars = vec![
            ("MCPQ_TOOL", inv.tool),
            ("MCPQ_CLIENT_ID", inv.client_id),
            ("MCPQ_JOB_ID", inv.job_id.unwrap_or("")),
            ("MCPQ_ATTEMPT", &attempt),
        ];
        if let Some(round) = inv.input {
            if let Some(c) = &round.client_capabilities {
                vars.push(("MCPQ_CLIENT_CAPABILITIES", c));
            }
            if let Some(r) = &round.input_responses {
                vars.push(("MCPQ_INPUT_RESPONSES", r));
            }
            if let Some(s) = &round.request_state {
                vars.push(("MCPQ_REQUEST_STATE", s));
            }
        }
        if let Some(t) = &inv.trace {
            // The call's context replaces any the daemon's own environment passed on.
            envp.retain(|e| {
                let b = e.as_bytes();
                !b.starts_with(b"TRACEPARENT=") && !b.starts_with(b"TRACESTATE=")
            });
            vars.push(("TRACEPARENT", &t.traceparent));
            if let Some(s) = &t.tracestate {
                vars.push(("TRACESTATE", s));
            }
        }
        for (k, v) in vars {
            if let Ok(c) = CString::new(format!("{k}={v}")) {
                envp.push(c);
            }
        }
        envp
    }

    /// The program to exec: `argv[0]` if it has a slash, else the first executable of that
    /// name on the tool's `PATH` (its `env.PATH`, else this process's).
    fn program(&self) -> std::io::Result<CString> {
        super::spawn::find_program(&self.argv[0], self.path.as_deref())
    }

    /// Runs one attempt to its end. A job attempt waits for a free process slot (keeping
    /// its lease); a sync call (no job id) does not wait: it is `busy`.
    pub async fn run(&self, inv: &Invocation<'_>) -> Result<Object, JobError> {
        let _slot = self.slot(inv).await?;
        let (mut child, pipes) = self.spawn(inv).await?;
        let group = Group(Some(child.pgid()));
        let (streams, overflow_rx) = self.streams(pipes, inv);
        let (end, status) = self.wait(&mut child, &group, inv, overflow_rx).await;
        // The attempt is over: whatever the tool left behind in its group goes too.
        group.signal(libc::SIGKILL);
        drop(group);
        let (out, err_tail) = streams.finish(inv.tool).await;
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

    /// A process slot: a job attempt waits for one (or its cancellation), a sync call
    /// takes one or is `busy`.
    async fn slot(&self, inv: &Invocation<'_>) -> Result<OwnedSemaphorePermit, JobError> {
        if inv.job_id.is_some() {
            tokio::select! {
                p = self.slots.clone().acquire_owned() => p.map_err(|_| JobError::Retryable("shutting down".into())),
                _ = inv.ctx.cancel.cancelled() => Err(JobError::Fatal("cancelled".into())),
            }
        } else {
            self.slots
                .clone()
                .try_acquire_owned()
                .map_err(|_| JobError::Retryable(BUSY.into()))
        }
    }

    /// Starts the process, in its own group.
    async fn spawn(&self, inv: &Invocation<'_>) -> Result<(spawn::Child, spawn::Pipes), JobError> {
        let envp = self.envp(inv);
        let program = self
            .program()
            .map_err(|e| JobError::Retryable(format!("spawn_failed: {}: {e}", self.argv[0])))?;
        // posix_spawn suspends the calling thread until the child has exec'd: off the
        // runtime's threads, so other jobs' I/O goes on meanwhile.
        let (argv, cwd) = (self.argv_c.clone(), self.cwd_c.clone());
        let spawned = tokio::task::spawn_blocking(move || {
            spawn::spawn(&spawn::Spec {
                program: &program,
                argv: &argv,
                envp: &envp,
                cwd: &cwd,
            })
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|r| r);
        spawned.map_err(|e| JobError::Retryable(format!("spawn_failed: {}: {e}", self.argv[0])))
    }

    /// Feeds the args to stdin and reads stdout (capped: the receiver hears of an
    /// overflow), stderr's tail and fd 3's progress and log lines.
    fn streams(
        &self,
        pipes: spawn::Pipes,
        inv: &Invocation<'_>,
    ) -> (Streams, oneshot::Receiver<()>) {
        let mut stdin = pipes.stdin;
        let args = inv.args_json.to_string();
        let writer = tokio::spawn(async move {
            // A tool that exits without reading its stdin is not an error.
            let _ = stdin.write_all(args.as_bytes()).await;
            let _ = stdin.shutdown().await;
        });
        let (overflow_tx, overflow_rx) = oneshot::channel();
        let stdout = tokio::spawn(read_capped(
            Some(pipes.stdout),
            self.max_output,
            overflow_tx,
        ));
        let stderr = tokio::spawn(read_tail(Some(pipes.stderr), STDERR_TAIL_BYTES));
        let progress_ctx = inv.ctx.clone();
        let progress_rx = pipes.progress;
        let progress = tokio::spawn(async move {
            read_progress(progress_rx, |p| match log_line(&p) {
                Some(message) => progress_ctx.log(message),
                None => progress_ctx.report_progress(p),
            })
            .await;
        });
        let streams = Streams {
            writer,
            stdout,
            stderr,
            progress,
        };
        (streams, overflow_rx)
    }

    /// Waits for the process to exit, or ends its group (SIGTERM, then SIGKILL after the
    /// grace) on timeout, cancellation or too much output. `None`: it exited by itself.
    async fn wait(
        &self,
        child: &mut spawn::Child,
        group: &Group,
        inv: &Invocation<'_>,
        overflow_rx: oneshot::Receiver<()>,
    ) -> (Option<End>, std::io::Result<ExitStatus>) {
        let end = tokio::select! {
            st = child.wait() => End::Exited(st),
            _ = tokio::time::sleep(inv.timeout) => End::TimedOut,
            _ = inv.ctx.cancel.cancelled() => End::Cancelled,
            Ok(()) = overflow_rx => End::Overflow,
        };
        match end {
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
        }
    }
}

/// Why the wait for a process ended.
enum End {
    Exited(std::io::Result<ExitStatus>),
    TimedOut,
    Cancelled,
    Overflow,
}

/// The tasks feeding and reading one process's pipes.
struct Streams {
    writer: tokio::task::JoinHandle<()>,
    stdout: tokio::task::JoinHandle<Vec<u8>>,
    stderr: tokio::task::JoinHandle<Vec<u8>>,
    progress: tokio::task::JoinHandle<()>,
}

impl Streams {
    /// Once the group is gone: stdout and stderr's tail as far as read within
    /// [`PIPE_DRAIN`] (a process that left the group may hold the pipes open).
    async fn finish(self, tool: &str) -> (Vec<u8>, Vec<u8>) {
        self.writer.abort();
        let out = join_within(self.stdout, PIPE_DRAIN)
            .await
            .unwrap_or_default();
        let err_tail = join_within(self.stderr, PIPE_DRAIN)
            .await
            .unwrap_or_default();
        if tokio::time::timeout(PIPE_DRAIN, self.progress)
            .await
            .is_err()
        {
            tracing::debug!(tool, "progress pipe still open after the group ended");
        }
        (out, err_tail)
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
/// An fd-3 line that is exactly `{"log": {...}}` is a log message, not progress.
fn log_line(line: &Object) -> Option<Object> {
    match (line.len(), line.get("log")) {
        (1, Some(Json::Object(m))) => Some(m.clone()),
        _ => None,
    }
}

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
