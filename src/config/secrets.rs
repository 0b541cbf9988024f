//! Secrets: the [`Secret`] type (never printed), loading a secret inline or from a file
//! (systemd credentials included), bearer token hashes, the minimum length, and redacting
//! secrets from the effective configuration.
//!
//! It must not decide which secrets a command needs: `load` does.

use std::path::{Path, PathBuf};

use super::{redact_url, ConfigError, MIN_SECRET_LEN};

/// A secret key. Its `Debug` never shows the bytes, so it cannot leak through logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Secret(bytes.into())
    }
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Replaces every secret value (keys ending in `secret`, and HTTP tools' inline `headers`).
pub(super) fn redact(t: &mut toml::Table) {
    for (k, v) in t.iter_mut() {
        match v {
            toml::Value::Table(inner) if k == "headers" => {
                for (_, hv) in inner.iter_mut() {
                    *hv = toml::Value::String("<redacted>".into());
                }
            }
            toml::Value::Table(inner) => redact(inner),
            _ if k.ends_with("secret") => *v = toml::Value::String("<redacted>".into()),
            // A database URL may carry a password.
            toml::Value::String(u) if k == "url" => *v = toml::Value::String(redact_url(u)),
            _ => {}
        }
    }
}

pub(super) fn load_secret(
    inline: &Option<String>,
    file: &Option<PathBuf>,
    what: &str,
) -> Result<Option<Secret>, ConfigError> {
    // A secret file wins over an inline secret: layers merge, so an inline development
    // key from the defaults must not block a file configured on top of it.
    match (inline, file) {
        (Some(s), None) => Ok(Some(Secret::new(s.as_bytes().to_vec()))),
        (_, Some(p)) => {
            let p = &credentials_path(p, what)?;
            let text = std::fs::read_to_string(p).map_err(|source| ConfigError::SecretFile {
                path: p.clone(),
                source,
            })?;
            // A trailing newline from `echo > file` is not part of the key.
            Ok(Some(Secret::new(
                text.trim_end_matches(['\n', '\r']).as_bytes().to_vec(),
            )))
        }
        (None, None) => Ok(None),
    }
}

/// Expands a leading `$CREDENTIALS_DIRECTORY` (or `${CREDENTIALS_DIRECTORY}`): where
/// systemd's `LoadCredential=` puts a service's secrets.
pub fn credentials_path(p: &Path, what: &str) -> Result<PathBuf, ConfigError> {
    let Some(text) = p.to_str() else {
        return Ok(p.to_path_buf());
    };
    for var in ["$CREDENTIALS_DIRECTORY", "${CREDENTIALS_DIRECTORY}"] {
        if let Some(rest) = text.strip_prefix(var) {
            let dir = std::env::var_os("CREDENTIALS_DIRECTORY").ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "{what}: the secret file {text} names $CREDENTIALS_DIRECTORY, which is not set (run under systemd with LoadCredential=, or give a plain path)"
                ))
            })?;
            return Ok(PathBuf::from(dir).join(rest.trim_start_matches('/')));
        }
    }
    Ok(p.to_path_buf())
}

/// SHA-256 of a bearer token: from a file holding the token (wins, as for secrets), or
/// given as 64 hex digits.
pub(super) fn token_hash(
    hex_hash: &Option<String>,
    file: &Option<PathBuf>,
    what: &str,
) -> Result<Option<[u8; 32]>, ConfigError> {
    use sha2::Digest;
    if let Some(token) = load_secret(&None, file, what)? {
        if token.expose().len() < MIN_SECRET_LEN {
            return Err(ConfigError::Invalid(format!(
                "{what}: the token is shorter than {MIN_SECRET_LEN} bytes; generate one with `mcpq keys token`"
            )));
        }
        return Ok(Some(sha2::Sha256::digest(token.expose()).into()));
    }
    let Some(h) = hex_hash else { return Ok(None) };
    let bytes = hex::decode(h.trim()).ok().filter(|b| b.len() == 32).ok_or_else(|| {
        ConfigError::Invalid(format!(
            "{what}_sha256 must be 64 hex digits (the SHA-256 of the token, as `mcpq keys token` prints)"
        ))
    })?;
    let mut out = [0u8; 32];
    out.copy_from_slice(&bytes);
    Ok(Some(out))
}

pub(super) fn require_secret(s: Option<Secret>, what: &str) -> Result<Secret, ConfigError> {
    let s = s.ok_or_else(|| ConfigError::Invalid(format!("{what}: no secret configured")))?;
    if s.expose().len() < MIN_SECRET_LEN {
        return Err(ConfigError::Invalid(format!(
            "{what}: secret is shorter than {MIN_SECRET_LEN} bytes; generate one with `mcpq keys new`"
        )));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_debug_is_redacted() {
        let s = Secret::new(b"hunter2hunter2".to_vec());
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
