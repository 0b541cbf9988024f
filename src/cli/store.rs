//! The operator's store commands: `mcpq migrate`, `mcpq backup PATH` (SQLite) and
//! `mcpq store copy` (between SQLite and PostgreSQL), with what they print.
//!
//! It must not know SQL: `crate::store` and `crate::backup` do the work.

use std::path::Path;
use std::time::Instant;

use super::AnyError;
use crate::clock::SystemClock;
use crate::config::Settings;

pub(super) async fn migrate(settings: &Settings) -> Result<(), AnyError> {
    crate::store::open::migrate(settings).await?;
    println!("migrations applied to {}", settings.database.display());
    Ok(())
}

pub(super) async fn backup(settings: &Settings, path: &Path) -> Result<(), AnyError> {
    if let crate::config::Backend::Postgres(_) = settings.database.backend()? {
        return Err("mcpq backup copies the SQLite database; back up PostgreSQL with its own tools (pg_dump, or base backups with WAL archiving: docs/OPERATIONS.md)".into());
    }
    crate::ops::run_as_owner_of(&settings.database.path)?;
    let bar = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let r = crate::backup::backup(&settings.database, path, bar).await?;
    println!(
        "backed up {} job(s), {} bytes, to {} in {:.1} s",
        r.jobs,
        r.bytes,
        path.display(),
        r.took.as_secs_f64()
    );
    Ok(())
}

pub(super) async fn copy(settings: &Settings, from: &str, to: &str) -> Result<(), AnyError> {
    let with_url = |url: &str| {
        let mut s = settings.clone();
        s.database.url = url.to_string();
        s
    };
    let (src, dst) = (with_url(from), with_url(to));
    if src.database.backend()? == dst.database.backend()? {
        return Err("--from and --to name the same store".into());
    }
    if let crate::config::Backend::Sqlite(path) = src.database.backend()? {
        if !path.exists() {
            return Err(format!("the source database {} does not exist", path.display()).into());
        }
    }
    let from_store = crate::store::open::open(&src).await?;
    let to_store = crate::store::open::open(&dst).await?;
    let t = Instant::now();
    let now = crate::clock::Clock::now_ms(&SystemClock);
    let copied = crate::store::copy::copy(&from_store, &to_store, now, &|n| {
        if n % 100_000 == 0 {
            eprintln!("{n} jobs copied");
        }
    })
    .await?;
    from_store.store().close().await;
    to_store.store().close().await;
    println!(
        "copied {} job(s) and {} live nonce(s) from {} to {} in {:.1} s",
        copied.jobs,
        copied.nonces,
        src.database.display(),
        dst.database.display(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
