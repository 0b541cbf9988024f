//! OAuth 2.1 resource server for `/mcp` (docs/AUTH.md): JWT access tokens (RFC 9068)
//! checked locally — algorithm on the allowlist, signature by a key of the token's issuer
//! ([`jwks`]), `iss`, `aud` (this resource, RFC 8707), `exp`/`nbf` with the configured skew,
//! the required scopes — and turned into a [`Grant`]: the mcpq client id the configured
//! claim names (so isolation, limits, queue caps and audit work as for a static token) and
//! the scopes that decide which tools it sees and calls ([`scopes`]). Opaque tokens, when
//! configured, are asked about at the issuer's introspection endpoint ([`introspect`]). Also the Protected
//! Resource Metadata document (RFC 9728) and the `WWW-Authenticate` challenges.
//!
//! A token that passed is remembered (by its SHA-256, never the token) until it expires or
//! for at most [`CACHE_SECS`] (introspected ones, and their refusals, for
//! `introspection_cache_secs`), so a client's next calls cost a hash and a map look-up, not a
//! signature verification.
//!
//! It must not know HTTP requests or JSON-RPC: `mcp` asks it about a token and answers.

pub mod introspect;
pub mod jwks;
pub mod scopes;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::config::oauth::{JwksSource, OAuthSettings};
pub use scopes::{Grant, ScopePolicy};

/// A validated token is trusted from the cache at most this long (a key withdrawn from the
/// JWKS stops its tokens within this time, even the cached ones).
pub const CACHE_SECS: i64 = 60;
const CACHE_CAP: usize = 10_000;
/// The longest client id a token may name (it reaches logs and metric labels).
const MAX_CLIENT_LEN: usize = 200;

/// Why a token was refused: 401 `invalid_token` (with a description for the client), or
/// 403 `insufficient_scope` naming the scope needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Invalid(&'static str),
    InsufficientScope(String),
}

/// The validator and what it caches.
pub struct OAuth {
    settings: OAuthSettings,
    algorithms: Vec<Algorithm>,
    /// Per issuer (discovery), or one shared by all (a configured URL or file).
    keys: Vec<(Option<String>, Arc<jwks::Jwks>)>,
    policy: Arc<ScopePolicy>,
    cache: Mutex<TokenCache>,
    http: reqwest::Client,
}

/// Tokens by SHA-256: until when (unix seconds) the answer holds, and the answer (refusals
/// only for introspected tokens).
type TokenCache = HashMap<[u8; 32], (i64, Result<Arc<Grant>, Refusal>)>;

impl OAuth {
    pub fn new(settings: &OAuthSettings) -> Result<OAuth, String> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::limited(3))
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        let min = Duration::from_secs(settings.jwks_min_refresh_secs);
        let max = Duration::from_secs(settings.jwks_max_age_secs);
        let keys = match &settings.jwks {
            JwksSource::Discover => settings
                .issuers
                .iter()
                .map(|i| {
                    let j =
                        jwks::Jwks::new(JwksSource::Discover, i.clone(), http.clone(), min, max);
                    (Some(i.clone()), Arc::new(j))
                })
                .collect(),
            other => {
                let what = settings.issuers.join(", ");
                vec![(
                    None,
                    Arc::new(jwks::Jwks::new(other.clone(), what, http.clone(), min, max)),
                )]
            }
        };
        let algorithms = settings
            .algorithms
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect();
        Ok(OAuth {
            settings: settings.clone(),
            algorithms,
            keys,
            policy: Arc::new(ScopePolicy {
                tool_prefix: settings.tool_scope_prefix.clone(),
                tasks_scope: settings.tasks_scope.clone(),
            }),
            cache: Mutex::new(HashMap::new()),
            http,
        })
    }

    pub fn settings(&self) -> &OAuthSettings {
        &self.settings
    }

    /// Fetches every issuer's keys until they are loaded (see
    /// [`jwks::Jwks::load_eventually`]), so the first token does not wait for them.
    pub async fn warm_up(&self) {
        let loads = self.keys.iter().map(|(_, j)| j.load_eventually());
        futures_util::future::join_all(loads).await;
    }

    /// The grant of a valid access token.
    pub async fn validate(&self, token: &str, now_secs: i64) -> Result<Arc<Grant>, Refusal> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(answer) = self.cached(&digest, now_secs) {
            return answer;
        }
        let (claims, hold_secs) = match jsonwebtoken::decode_header(token) {
            Ok(header) => (self.check_jwt(token, &header).await?, CACHE_SECS),
            Err(_) => match &self.settings.introspection {
                Some(cfg) => {
                    let expect = introspect::Expect {
                        issuers: &self.settings.issuers,
                        audiences: &self.settings.audiences,
                        skew: self.settings.clock_skew_secs as i64,
                    };
                    let hold = cfg.cache_secs as i64;
                    match introspect::introspect(&self.http, cfg, token, &expect, now_secs).await {
                        Ok(c) => (c, hold),
                        Err(r) => {
                            self.remember(digest, now_secs + hold, Err(r.clone()), now_secs);
                            return Err(r);
                        }
                    }
                }
                None => {
                    return Err(Refusal::Invalid(
                        "not a JWS access token with an accepted algorithm",
                    ))
                }
            },
        };
        let grant = self.grant(&claims)?;
        for s in &self.settings.required_scopes {
            if !grant.scopes.contains(s) {
                return Err(Refusal::InsufficientScope(
                    self.settings.required_scopes.join(" "),
                ));
            }
        }
        let until = match claims.get("exp").and_then(Value::as_i64) {
            Some(exp) => exp.min(now_secs + hold_secs),
            None => now_secs + hold_secs,
        };
        let grant = Arc::new(grant);
        self.remember(digest, until, Ok(grant.clone()), now_secs);
        Ok(grant)
    }

    /// A JWT: an accepted algorithm, a trusted issuer, then its signature and claims.
    async fn check_jwt(
        &self,
        token: &str,
        header: &jsonwebtoken::Header,
    ) -> Result<Map<String, Value>, Refusal> {
        if !self.algorithms.contains(&header.alg) {
            return Err(Refusal::Invalid("signing algorithm not accepted"));
        }
        let issuer = unverified_issuer(token).ok_or(Refusal::Invalid("no issuer"))?;
        if !self.settings.issuers.contains(&issuer) {
            return Err(Refusal::Invalid("issuer not trusted"));
        }
        self.verify(token, header, &issuer).await
    }

    fn source(&self, issuer: &str) -> Option<&Arc<jwks::Jwks>> {
        self.keys
            .iter()
            .find(|(i, _)| i.as_deref().is_none_or(|i| i == issuer))
            .map(|(_, j)| j)
    }

    /// The signature by one of the issuer's keys for the token's `kid` (the keys refreshed
    /// once, rate-limited, when none has it), then the registered claims.
    async fn verify(
        &self,
        token: &str,
        header: &jsonwebtoken::Header,
        issuer: &str,
    ) -> Result<Map<String, Value>, Refusal> {
        let jwks = self
            .source(issuer)
            .ok_or(Refusal::Invalid("issuer not trusted"))?;
        let kid = header.kid.clone().unwrap_or_default();
        let mut set = jwks.current();
        if jwks.stale().await {
            set = jwks.refreshed(false).await;
        }
        if !set.keys.contains_key(&kid) {
            set = jwks.refreshed(true).await;
        }
        let candidates = set
            .keys
            .get(&kid)
            .ok_or(Refusal::Invalid("unknown signing key"))?;
        let mut v = Validation::new(header.alg);
        v.leeway = self.settings.clock_skew_secs;
        v.validate_nbf = true;
        v.set_issuer(&[issuer]);
        v.set_audience(&self.settings.audiences);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        let mut last = Refusal::Invalid("signing key does not fit the algorithm");
        for k in candidates
            .iter()
            .filter(|k| k.alg.is_none_or(|a| a == header.alg))
        {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &k.key, &v) {
                Ok(d) => return Ok(d.claims),
                Err(e) => last = Refusal::Invalid(describe(e.kind())),
            }
        }
        Err(last)
    }

    fn grant(&self, claims: &Map<String, Value>) -> Result<Grant, Refusal> {
        let who = claims
            .get(&self.settings.client_claim)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or(Refusal::Invalid("the token names no client"))?;
        let client = format!("{}{who}", self.settings.client_prefix);
        if client.len() > MAX_CLIENT_LEN || client.chars().any(char::is_control) {
            return Err(Refusal::Invalid("the token's client id is not usable"));
        }
        // RFC 9068 `scope` (space-separated); `scp` as Entra (string) and Okta (array) send it.
        let mut scopes: Vec<String> = Vec::new();
        for key in ["scope", "scp"] {
            match claims.get(key) {
                Some(Value::String(s)) => scopes.extend(s.split_whitespace().map(String::from)),
                Some(Value::Array(a)) => {
                    scopes.extend(a.iter().filter_map(Value::as_str).map(String::from))
                }
                _ => {}
            }
        }
        Ok(Grant {
            client,
            scopes,
            policy: self.policy.clone(),
        })
    }

    fn cached(&self, digest: &[u8; 32], now_secs: i64) -> Option<Result<Arc<Grant>, Refusal>> {
        let map = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        map.get(digest)
            .filter(|(until, _)| *until > now_secs)
            .map(|(_, g)| g.clone())
    }

    fn remember(
        &self,
        digest: [u8; 32],
        until: i64,
        answer: Result<Arc<Grant>, Refusal>,
        now_secs: i64,
    ) {
        let mut map = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= CACHE_CAP {
            map.retain(|_, (u, _)| *u > now_secs);
            if map.len() >= CACHE_CAP {
                map.clear();
            }
        }
        map.insert(digest, (until, answer));
    }

    /// The URL of this resource's metadata (RFC 9728 §3.1: the well-known segment goes
    /// between the host and the resource's path).
    pub fn metadata_url(&self) -> String {
        let r = self.settings.resource.trim_end_matches('/');
        let after = r.find("://").map(|i| i + 3).unwrap_or(0);
        match r[after..].find('/') {
            Some(i) => {
                let (origin, path) = r.split_at(after + i);
                format!("{origin}/.well-known/oauth-protected-resource{path}")
            }
            None => format!("{r}/.well-known/oauth-protected-resource"),
        }
    }

    /// The well-known paths this server answers: the path-suffixed form and the bare one.
    pub fn metadata_paths(&self) -> [String; 2] {
        let url = self.metadata_url();
        let after = url.find("://").map(|i| i + 3).unwrap_or(0);
        let path = url[after..]
            .find('/')
            .map(|i| url[after + i..].to_string())
            .unwrap_or_default();
        [path, "/.well-known/oauth-protected-resource".to_string()]
    }

    /// The Protected Resource Metadata document; `tools`: the names for `scopes_supported`.
    pub fn metadata(&self, tools: &[String]) -> Value {
        let s = &self.settings;
        let mut scopes: Vec<String> = s.required_scopes.clone();
        scopes.extend(tools.iter().map(|t| format!("{}{t}", s.tool_scope_prefix)));
        scopes.push(s.tasks_scope.clone());
        serde_json::json!({
            "resource": s.resource,
            "authorization_servers": s.issuers,
            "scopes_supported": scopes,
            "bearer_methods_supported": ["header"],
            "resource_name": "mcpq",
            "resource_documentation": "https://github.com/mcpq/mcpq/blob/main/docs/AUTH.md",
        })
    }

    /// `WWW-Authenticate` for a refusal (`None`: no token was sent).
    pub fn challenge(&self, refusal: Option<&Refusal>) -> String {
        let meta = self.metadata_url();
        match refusal {
            None => format!(r#"Bearer resource_metadata="{meta}""#),
            Some(Refusal::Invalid(why)) => format!(
                r#"Bearer error="invalid_token", error_description="{why}", resource_metadata="{meta}""#
            ),
            Some(Refusal::InsufficientScope(scope)) => format!(
                r#"Bearer error="insufficient_scope", scope="{}", resource_metadata="{meta}""#,
                scope.replace(['"', '\\'], "")
            ),
        }
    }
}

/// The `iss` of a token before its signature is checked: only to choose whose keys verify
/// it; the verified claims are checked again.
fn unverified_issuer(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v.get("iss")?.as_str().map(String::from)
}

/// A stable description for the client (never the token or a key).
fn describe(kind: &jsonwebtoken::errors::ErrorKind) -> &'static str {
    use jsonwebtoken::errors::ErrorKind as K;
    match kind {
        K::ExpiredSignature => "token expired",
        K::ImmatureSignature => "token not yet valid",
        K::InvalidIssuer => "issuer not trusted",
        K::InvalidAudience => "token is for another resource",
        K::InvalidSignature => "bad signature",
        K::InvalidAlgorithm => "signing key does not fit the algorithm",
        K::MissingRequiredClaim(_) => "a required claim (exp, iss, aud) is missing",
        _ => "malformed token",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oauth(resource: &str) -> OAuth {
        let t: toml::Table = toml::from_str(crate::config::DEFAULT_TOML).unwrap();
        let mut raw = t["oauth"].clone();
        raw["mcp_auth"] = "oauth".into();
        raw["resource"] = resource.into();
        raw["issuers"] = toml::Value::Array(vec!["https://as.example".into()]);
        let s = crate::config::oauth::from_toml(raw).unwrap();
        OAuth::new(&s).unwrap()
    }

    #[test]
    fn metadata_lives_under_the_well_known_prefix_of_the_resource_path() {
        let o = oauth("https://mcp.example/mcp");
        assert_eq!(
            o.metadata_url(),
            "https://mcp.example/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(
            o.metadata_paths()[0],
            "/.well-known/oauth-protected-resource/mcp"
        );
        let o = oauth("https://mcp.example");
        assert_eq!(
            o.metadata_url(),
            "https://mcp.example/.well-known/oauth-protected-resource"
        );
        assert!(o
            .challenge(Some(&Refusal::InsufficientScope("tools:call:x".into())))
            .contains(r#"error="insufficient_scope", scope="tools:call:x""#));
    }

    #[test]
    fn issuers_are_read_before_verification_only_to_pick_keys() {
        let p = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"iss":"https://a"}"#);
        assert_eq!(
            unverified_issuer(&format!("h.{p}.s")).as_deref(),
            Some("https://a")
        );
        assert_eq!(unverified_issuer("garbage"), None);
    }
}
