//! Reading `[database]` and `[postgres]` values that need more than deserializing: the
//! `synchronous` mode from text, and the PostgreSQL password from its file. Kept with the
//! settings rather than in the store drivers that use them.
//!
//! It must not open or touch a database.

use std::str::FromStr;

use super::{credentials_path, PostgresSettings, Synchronous};

impl FromStr for Synchronous {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "full" => Ok(Synchronous::Full),
            "normal" => Ok(Synchronous::Normal),
            "extra" => Ok(Synchronous::Extra),
            _ => Err(format!("unknown synchronous mode {s:?}")),
        }
    }
}

impl PostgresSettings {
    /// The password from `password_file` (trailing newline removed), or `None` when no file
    /// is configured. Read when the store connects, so a rotated file is picked up at the
    /// next start.
    pub fn password(&self) -> Result<Option<String>, String> {
        if self.password_file.is_empty() {
            return Ok(None);
        }
        let path = credentials_path(
            std::path::Path::new(&self.password_file),
            "postgres.password_file",
        )
        .map_err(|e| e.to_string())?;
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read postgres.password_file {}: {e}", path.display()))?;
        Ok(Some(text.trim_end_matches(['\n', '\r']).to_string()))
    }
}
