//! `[oauth]`: mcpq as an OAuth 2.1 resource server for `/mcp` (docs/AUTH.md) — which
//! credentials `/mcp` takes, whose tokens, for which resource, with which keys and scopes.
//!
//! It checks the section's values against each other at load (an enabled section without a
//! resource or an issuer, an unknown or symmetric algorithm, two key sources) so a mistake
//! stops the daemon at start. It must not fetch keys or validate tokens: `crate::oauth` does.

use std::path::PathBuf;

use serde::Deserialize;

use super::{ConfigError, Secret};

/// Which credentials `/mcp` accepts.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum McpAuth {
    /// `[clients.ID]` bearer tokens only (the default).
    Static,
    /// Access tokens from `[oauth]` issuers only.
    Oauth,
    /// Either.
    Both,
}

/// Where the signing keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    Url(String),
    File(PathBuf),
    /// Each issuer's authorization server metadata (RFC 8414, then OpenID discovery).
    Discover,
}

/// Asymmetric JWS algorithms mcpq verifies (RFC 7518 names).
pub const ASYMMETRIC: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

#[derive(Debug, Deserialize, Clone)]
pub(super) struct RawOAuth {
    mcp_auth: McpAuth,
    resource: String,
    issuers: Vec<String>,
    audiences: Vec<String>,
    jwks_url: String,
    jwks_file: String,
    algorithms: Vec<String>,
    clock_skew_secs: u64,
    jwks_min_refresh_secs: u64,
    jwks_max_age_secs: u64,
    introspection_url: String,
    introspection_client_id: String,
    introspection_secret_file: String,
    introspection_cache_secs: u64,
    required_scopes: Vec<String>,
    client_claim: String,
    client_prefix: String,
    tool_scope_prefix: String,
    tasks_scope: String,
}

/// Where and as whom opaque tokens are introspected (RFC 7662).
#[derive(Debug, Clone)]
pub struct Introspection {
    pub url: String,
    pub client_id: String,
    pub secret: Secret,
    pub cache_secs: u64,
}

/// `[oauth]` as checked.
#[derive(Debug, Clone)]
pub struct OAuthSettings {
    pub mcp_auth: McpAuth,
    /// This server's canonical `/mcp` URL.
    pub resource: String,
    pub issuers: Vec<String>,
    /// Accepted `aud` values (the resource when none were configured).
    pub audiences: Vec<String>,
    pub jwks: JwksSource,
    /// Names from [`ASYMMETRIC`].
    pub algorithms: Vec<String>,
    pub clock_skew_secs: u64,
    pub jwks_min_refresh_secs: u64,
    pub jwks_max_age_secs: u64,
    /// RFC 7662 introspection of opaque tokens, when configured.
    pub introspection: Option<Introspection>,
    pub required_scopes: Vec<String>,
    pub client_claim: String,
    pub client_prefix: String,
    pub tool_scope_prefix: String,
    pub tasks_scope: String,
}

impl OAuthSettings {
    /// OAuth access tokens are accepted at `/mcp`.
    pub fn enabled(&self) -> bool {
        self.mcp_auth != McpAuth::Static
    }

    /// `[clients.ID]` tokens are accepted at `/mcp`.
    pub fn static_tokens(&self) -> bool {
        self.mcp_auth != McpAuth::Oauth
    }

    /// The URLs signing keys (or introspection answers) would be fetched from over plain
    /// HTTP from another machine (whoever is on the path could then sign tokens, or vouch
    /// for any): refused off loopback.
    pub fn plain_http_key_sources(&self) -> Vec<String> {
        if !self.enabled() {
            return Vec::new();
        }
        let mut fetched: Vec<&String> = match &self.jwks {
            JwksSource::Url(u) => vec![u],
            JwksSource::File(_) => Vec::new(),
            JwksSource::Discover => self.issuers.iter().collect(),
        };
        fetched.extend(self.introspection.as_ref().map(|i| &i.url));
        fetched
            .into_iter()
            .filter(|u| {
                u.strip_prefix("http://").is_some_and(|rest| {
                    let host = rest.split('/').next().unwrap_or("");
                    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
                    !matches!(host, "127.0.0.1" | "localhost" | "[::1]")
                })
            })
            .cloned()
            .collect()
    }
}

fn invalid(m: String) -> ConfigError {
    ConfigError::Invalid(format!("oauth.{m}"))
}

/// An absolute http(s) URL without a fragment (RFC 8707 §2, RFC 9728 §1.2).
fn check_url(key: &str, url: &str) -> Result<(), ConfigError> {
    let ok = (url.starts_with("https://") || url.starts_with("http://"))
        && !url.contains('#')
        && url.split("://").nth(1).is_some_and(|r| !r.is_empty());
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "{key} {url:?} must be an absolute http(s) URL without a fragment"
        )))
    }
}

/// `[oauth]` from a TOML table, checked (for code that builds settings by hand).
pub fn from_toml(v: toml::Value) -> Result<OAuthSettings, ConfigError> {
    let raw: RawOAuth = v
        .try_into()
        .map_err(|e: toml::de::Error| invalid(format!(" {e}")))?;
    check(raw, false)
}

/// `secrets`: read the introspection secret (not for commands that never verify).
pub(super) fn check(raw: RawOAuth, secrets: bool) -> Result<OAuthSettings, ConfigError> {
    for a in &raw.algorithms {
        if !ASYMMETRIC.contains(&a.as_str()) {
            return Err(invalid(format!(
                "algorithms: {a:?} is not accepted (one of {})",
                ASYMMETRIC.join(", ")
            )));
        }
    }
    let jwks = match (raw.jwks_url.trim(), raw.jwks_file.trim()) {
        ("", "") => JwksSource::Discover,
        (url, "") => {
            check_url("jwks_url", url)?;
            JwksSource::Url(url.to_string())
        }
        ("", file) => JwksSource::File(PathBuf::from(file)),
        _ => {
            return Err(invalid(
                "jwks_url and oauth.jwks_file: set one at most".into(),
            ))
        }
    };
    let enabled = raw.mcp_auth != McpAuth::Static;
    if enabled {
        check_url("resource", &raw.resource)?;
        if raw.issuers.is_empty() {
            return Err(invalid("issuers: at least one issuer is required".into()));
        }
        for i in &raw.issuers {
            check_url("issuers", i)?;
        }
        if raw.algorithms.is_empty() {
            return Err(invalid("algorithms: at least one is required".into()));
        }
        if raw.client_claim.trim().is_empty() {
            return Err(invalid("client_claim must name a claim".into()));
        }
    }
    let introspection = match raw.introspection_url.trim() {
        "" => None,
        url => {
            check_url("introspection_url", url)?;
            let file = Some(PathBuf::from(raw.introspection_secret_file.trim()))
                .filter(|p| !p.as_os_str().is_empty());
            let secret = if secrets && enabled {
                super::secrets::load_secret(&None, &file, "oauth.introspection")?.ok_or_else(
                    || {
                        invalid(
                            "introspection_secret_file is required with introspection_url".into(),
                        )
                    },
                )?
            } else {
                Secret::new(Vec::new())
            };
            Some(Introspection {
                url: url.to_string(),
                client_id: raw.introspection_client_id.clone(),
                secret,
                cache_secs: raw.introspection_cache_secs,
            })
        }
    };
    let audiences = if raw.audiences.is_empty() {
        vec![raw.resource.clone()]
    } else {
        raw.audiences
    };
    Ok(OAuthSettings {
        mcp_auth: raw.mcp_auth,
        resource: raw.resource,
        issuers: raw.issuers,
        audiences,
        jwks,
        algorithms: raw.algorithms,
        clock_skew_secs: raw.clock_skew_secs,
        jwks_min_refresh_secs: raw.jwks_min_refresh_secs,
        jwks_max_age_secs: raw.jwks_max_age_secs.max(raw.jwks_min_refresh_secs),
        introspection,
        required_scopes: raw.required_scopes,
        client_claim: raw.client_claim,
        client_prefix: raw.client_prefix,
        tool_scope_prefix: raw.tool_scope_prefix,
        tasks_scope: raw.tasks_scope,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw() -> RawOAuth {
        let t: toml::Table = toml::from_str(crate::config::DEFAULT_TOML).unwrap();
        t["oauth"].clone().try_into().unwrap()
    }

    #[test]
    fn the_default_is_static_tokens_only() {
        let s = check(raw(), false).unwrap();
        assert!(!s.enabled());
        assert!(s.static_tokens());
        assert_eq!(s.jwks, JwksSource::Discover);
    }

    #[test]
    fn an_enabled_section_needs_a_resource_an_issuer_and_asymmetric_algorithms() {
        let mut r = raw();
        r.mcp_auth = McpAuth::Oauth;
        assert!(check(r.clone(), false)
            .unwrap_err()
            .to_string()
            .contains("resource"));
        r.resource = "https://mcp.example/mcp".into();
        assert!(check(r.clone(), false)
            .unwrap_err()
            .to_string()
            .contains("issuers"));
        r.issuers = vec!["https://as.example".into()];
        let s = check(r.clone(), false).unwrap();
        assert_eq!(s.audiences, vec!["https://mcp.example/mcp".to_string()]);
        r.algorithms = vec!["HS256".into()];
        assert!(check(r.clone(), false)
            .unwrap_err()
            .to_string()
            .contains("HS256"));
        r.algorithms = vec!["none".into()];
        assert!(check(r.clone(), false).is_err());
        r.algorithms = vec!["ES256".into()];
        let mut plain = r.clone();
        plain.issuers = vec!["http://as.example".into(), "http://127.0.0.1:9".into()];
        plain.algorithms = vec!["ES256".into()];
        assert_eq!(
            check(plain, false).unwrap().plain_http_key_sources(),
            vec!["http://as.example".to_string()]
        );
        r.jwks_url = "https://as.example/jwks".into();
        r.jwks_file = "/etc/jwks.json".into();
        assert!(check(r, false)
            .unwrap_err()
            .to_string()
            .contains("one at most"));
    }
}
