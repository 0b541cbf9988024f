//! `mcpq backup PATH`: a consistent copy of the SQLite database while the daemon and
//! workers keep running.
//!
//! The copy is one `VACUUM INTO` (a snapshot at a single read transaction: every job
//! committed before it began is in the copy, nothing half-written is), written to
//! `PATH.partial`, checked (`PRAGMA quick_check`), fsynced, and only then renamed to `PATH`,
//! so a crash or power loss mid-backup never leaves a file at `PATH` that looks complete.
//! On a terminal a progress bar follows the copy's size against the source's used pages.
//!
//! It must not write to the source database: writers are never blocked by a backup (WAL).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sqlx::{ConnectOptions, Connection};

use crate::config::DatabaseSettings;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0} exists; choose a new path (a backup never overwrites)")]
    Exists(PathBuf),
    #[error("the database {0} does not exist")]
    NoDatabase(PathBuf),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("the copy failed its integrity check: {0}")]
    Check(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What a finished backup holds.
#[derive(Debug)]
pub struct BackupReport {
    pub bytes: u64,
    pub jobs: i64,
    pub took: Duration,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Copies the database in `db` to `dest`. `progress`: draw a bar (callers pass whether
/// stderr is a terminal).
pub async fn backup(
    db: &DatabaseSettings,
    dest: &Path,
    progress: bool,
) -> Result<BackupReport, BackupError> {
    let t0 = Instant::now();
    if dest.exists() {
        return Err(BackupError::Exists(dest.to_path_buf()));
    }
    if !db.path.exists() {
        return Err(BackupError::NoDatabase(db.path.clone()));
    }
    let mut partial = dest.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    // A partial file is only ever ours, from an interrupted run.
    let _ = std::fs::remove_file(&partial);

    let bar = snapshot(db, &partial, progress).await?;
    let jobs = check(&partial).await?;
    let bytes = publish(&partial, dest)?;
    bar.set_position(bar.length().unwrap_or(0));
    bar.finish_and_clear();
    Ok(BackupReport {
        bytes,
        jobs,
        took: t0.elapsed(),
    })
}

/// `VACUUM INTO` `partial`, with a bar following its size (hidden without `progress`);
/// returns the bar, still drawn.
async fn snapshot(
    db: &DatabaseSettings,
    partial: &Path,
    progress: bool,
) -> Result<indicatif::ProgressBar, BackupError> {
    let mut src = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&db.path)
        .busy_timeout(Duration::from_millis(db.busy_timeout_ms))
        .connect()
        .await?;
    let (pages, free, page_size): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT page_count FROM pragma_page_count), \
                (SELECT freelist_count FROM pragma_freelist_count), \
                (SELECT page_size FROM pragma_page_size)",
    )
    .fetch_one(&mut src)
    .await?;
    let total = ((pages - free).max(1) * page_size) as u64;

    let bar = progress_bar(total, progress);
    let watch = {
        let bar = bar.clone();
        let partial = partial.to_path_buf();
        tokio::spawn(async move {
            loop {
                if let Ok(m) = std::fs::metadata(&partial) {
                    bar.set_position(m.len().min(bar.length().unwrap_or(u64::MAX)));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let copied = sqlx::query("VACUUM INTO ?1")
        .bind(partial.to_string_lossy().into_owned())
        .execute(&mut src)
        .await;
    watch.abort();
    src.close().await?;
    if let Err(e) = copied {
        let _ = std::fs::remove_file(partial);
        bar.abandon();
        return Err(e.into());
    }
    Ok(bar)
}

fn progress_bar(total: u64, progress: bool) -> indicatif::ProgressBar {
    if progress {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} backup {bar:30} {bytes}/{total_bytes} ({elapsed})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    } else {
        indicatif::ProgressBar::hidden()
    }
}

/// `PRAGMA quick_check` of the copy (removed when it fails); its jobs are counted.
async fn check(partial: &Path) -> Result<i64, BackupError> {
    let mut copy = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(partial)
        .connect()
        .await?;
    let check: String = sqlx::query_scalar("PRAGMA quick_check")
        .fetch_one(&mut copy)
        .await?;
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&mut copy)
        .await?;
    copy.close().await?;
    if check != "ok" {
        let _ = std::fs::remove_file(partial);
        return Err(BackupError::Check(check));
    }
    Ok(jobs)
}

/// Durable before it gets its name: the data, the rename, the directory entry. Returns
/// the copy's size.
fn publish(partial: &Path, dest: &Path) -> Result<u64, BackupError> {
    let f = std::fs::File::open(partial).map_err(io(partial))?;
    f.sync_all().map_err(io(partial))?;
    let bytes = f.metadata().map_err(io(partial))?.len();
    std::fs::rename(partial, dest).map_err(io(dest))?;
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;
    Ok(bytes)
}
