//! `mcpq config check`: validates the configuration (every tool's schema and runner
//! included) and prints it, every secret redacted.
//!
//! It must not print anything on failure but the error (exit 1).

use std::path::Path;
use std::process::ExitCode;

use super::AnyError;
use crate::config::Settings;
use crate::tools::Registry;

pub(super) fn check(config: Option<&Path>) -> Result<ExitCode, AnyError> {
    let effective = Settings::effective_toml(config)?;
    // Tools too: every schema must compile, every runner build.
    Registry::from_settings(&Settings::load(config)?)?;
    print!("{effective}");
    Ok(ExitCode::SUCCESS)
}
