//! The start-up safety checks: the development keys and token published in
//! `config/default.toml` are refused off loopback, and so are an anonymous `/mcp` client
//! and OAuth signing keys fetched over plain HTTP from another host.
//!
//! It must not load settings: it checks loaded ones.

use std::net::SocketAddr;

use super::{ConfigError, Settings, DEFAULT_TOML};

const DEV_TOKEN_SHA256: [u8; 32] = [
    0x2f, 0xd2, 0x3f, 0x76, 0x35, 0x3a, 0xc5, 0xae, 0xca, 0xe2, 0xca, 0x04, 0x3a, 0x4b, 0x22, 0x97,
    0xde, 0x73, 0x0f, 0xc3, 0x89, 0x12, 0xe4, 0x8d, 0x83, 0x9d, 0x40, 0x68, 0x81, 0xf8, 0x65, 0x2e,
];

impl Settings {
    /// The secrets published in `config/default.toml`.
    pub fn development_secrets() -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for line in DEFAULT_TOML.lines() {
            let line = line.trim();
            if line.starts_with('#') {
                continue;
            }
            if let Some((k, v)) = line.split_once('=') {
                if k.trim().ends_with("secret") {
                    out.push(v.trim().trim_matches('"').as_bytes().to_vec());
                }
            }
        }
        out
    }

    /// Refuses configurations that would expose development keys to a network.
    pub fn check_safe_to_serve(&self) -> Result<(), ConfigError> {
        self.check_safe_to_serve_on(self.server.listen)
    }

    /// [`check_safe_to_serve`](Self::check_safe_to_serve) for the address actually served
    /// (a socket passed by socket activation may differ from `server.listen`).
    pub fn check_safe_to_serve_on(&self, addr: SocketAddr) -> Result<(), ConfigError> {
        if addr.ip().is_loopback() {
            return Ok(());
        }
        if !self.mcp.anonymous_client.is_empty() {
            return Err(ConfigError::Invalid(format!(
                "refusing to listen on non-loopback {addr} with mcp.anonymous_client set: \
                 unauthenticated /mcp requests are for loopback only"
            )));
        }
        let plain = self.oauth.plain_http_key_sources();
        if !plain.is_empty() {
            return Err(ConfigError::Invalid(format!(
                "refusing to listen on non-loopback {addr} while OAuth signing keys come over \
                 plain HTTP from {}: use https",
                plain.join(", ")
            )));
        }
        let dev = Settings::development_secrets();
        let mut offenders = Vec::new();
        if dev.iter().any(|d| d == self.server.secret.expose()) {
            offenders.push("server".to_string());
        }
        for (id, keys) in &self.clients {
            if keys
                .secrets
                .iter()
                .any(|s| dev.iter().any(|d| d == s.expose()))
                || keys.token_hashes.contains(&DEV_TOKEN_SHA256)
            {
                offenders.push(format!("clients.{id}"));
            }
        }
        if offenders.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(format!(
                "refusing to listen on non-loopback {} with the development keys of config/default.toml ({}); generate keys with `mcpq keys new`",
                addr,
                offenders.join(", ")
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEV_TOKEN;

    #[test]
    fn the_development_token_hash_is_the_one_in_the_defaults() {
        use sha2::Digest;
        let h: [u8; 32] = sha2::Sha256::digest(DEV_TOKEN.as_bytes()).into();
        assert_eq!(h, DEV_TOKEN_SHA256);
        let s = Settings::load(None).unwrap();
        assert!(s.clients["client-001"]
            .token_hashes
            .contains(&DEV_TOKEN_SHA256));
        // Off loopback it is refused like the development keys.
        assert!(s
            .check_safe_to_serve_on("0.0.0.0:8787".parse().unwrap())
            .is_err());
    }

    #[test]
    fn defaults_load_and_are_loopback() {
        let s = Settings::load(None).unwrap();
        assert!(s.server.listen.ip().is_loopback());
        assert!(s.check_safe_to_serve().is_ok());
        assert_eq!(Settings::development_secrets().len(), 4);
    }

    #[test]
    fn development_keys_refused_off_loopback() {
        let mut s = Settings::load(None).unwrap();
        s.server.listen = "0.0.0.0:8787".parse().unwrap();
        assert!(s.check_safe_to_serve().is_err());
    }
}
