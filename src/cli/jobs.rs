//! `mcpq jobs …`, `mcpq audit …`, `mcpq stats` and `mcpq schedules list`: opens the store as the database's owner and hands it
//! to the operator's commands.
//!
//! It must not format anything: `crate::ops` prints the tables and JSON.

use std::process::ExitCode;

use super::AnyError;
use crate::config::Settings;
use crate::store::open::AnyStore;

pub(super) async fn jobs(
    settings: &Settings,
    command: crate::ops::JobsCommand,
) -> Result<ExitCode, AnyError> {
    let store = admin_store(settings).await?;
    let code = crate::ops::jobs(store.admin().as_ref(), command, settings.audit.enabled).await?;
    store.store().close().await;
    Ok(code)
}

pub(super) async fn audit(
    settings: &Settings,
    command: crate::audit::cli::AuditCommand,
) -> Result<ExitCode, AnyError> {
    let store = admin_store(settings).await?;
    let code = crate::audit::cli::run(store.admin().as_ref(), command).await?;
    store.store().close().await;
    Ok(code)
}

pub(super) async fn stats(settings: &Settings, json: bool) -> Result<ExitCode, AnyError> {
    let store = admin_store(settings).await?;
    let upstreams = crate::ops::upstream_status(settings).await;
    let code = crate::ops::stats(store.admin().as_ref(), json, upstreams).await?;
    store.store().close().await;
    Ok(code)
}

pub(super) async fn schedules(
    settings: &Settings,
    next: usize,
    json: bool,
) -> Result<ExitCode, AnyError> {
    let store = admin_store(settings).await?;
    let code =
        crate::ops::schedules(store.store().as_ref(), &settings.schedules, next, json).await?;
    store.store().close().await;
    Ok(code)
}

/// The store for an operator's command, opened as the database's owner (see
/// [`crate::ops::run_as_owner_of`]).
async fn admin_store(settings: &Settings) -> Result<AnyStore, AnyError> {
    if let crate::config::Backend::Sqlite(path) = settings.database.backend()? {
        crate::ops::run_as_owner_of(&path)?;
        if !path.exists() {
            return Err(format!("the database {} does not exist", path.display()).into());
        }
    }
    Ok(crate::store::open::open(settings).await?)
}
