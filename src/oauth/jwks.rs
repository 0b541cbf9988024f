//! The signing keys of the accepted issuers: fetched (a JWKS URL, a file, or the URL an
//! issuer's metadata names), parsed once into verification keys, and refreshed when a token
//! names a key id not in the set (a rotation) — at most once per `jwks_min_refresh_secs`,
//! so a flood of forged `kid`s costs one fetch, not one per request (after a failed fetch,
//! once per [`RETRY_AFTER_FAILURE`] at most) — or when older than `jwks_max_age_secs`.
//!
//! It must not validate tokens (`oauth` does) or accept a symmetric key: `oct` keys and
//! keys marked `"use": "enc"` are dropped at parse.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use crate::config::oauth::JwksSource;

/// One verification key: what it verifies with, and the algorithm it is pinned to if the
/// JWK names one.
pub struct Key {
    pub key: DecodingKey,
    pub alg: Option<Algorithm>,
}

/// Keys by `kid`; keys without a `kid` are kept under "" (used only for tokens without one).
#[derive(Default)]
pub struct KeySet {
    pub keys: HashMap<String, Vec<Key>>,
}

/// Parses a JWKS document, dropping keys mcpq must not or cannot use.
pub fn parse(doc: &Value) -> Result<KeySet, String> {
    let list = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("a JWKS needs a \"keys\" array")?;
    let mut set = KeySet::default();
    for k in list {
        if k.get("use").and_then(Value::as_str) == Some("enc") {
            continue;
        }
        let Ok(jwk) = serde_json::from_value::<Jwk>(k.clone()) else {
            continue;
        };
        if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
            continue;
        }
        let alg = match &jwk.common.key_algorithm {
            Some(a) => match a.to_string().parse::<Algorithm>() {
                Ok(a) => Some(a),
                // An encryption algorithm (RSA-OAEP, …): not a signing key.
                Err(_) => continue,
            },
            None => None,
        };
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            continue;
        };
        let kid = jwk.common.key_id.clone().unwrap_or_default();
        set.keys.entry(kid).or_default().push(Key { key, alg });
    }
    Ok(set)
}

/// After a failed fetch, the next is allowed this soon (still never per request).
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(2);

/// Where one issuer's keys are read from, once resolved.
#[derive(Clone)]
enum Location {
    Url(String),
    File(PathBuf),
}

struct State {
    set: Arc<KeySet>,
    fetched: Option<Instant>,
    /// The last fetch failed: the next may come sooner (an authorization server that was
    /// down at our start must not lock tokens out for a whole refresh interval).
    failed: bool,
    location: Option<Location>,
}

/// The cached keys of one source, refreshed under a lock so concurrent misses fetch once.
pub struct Jwks {
    source: JwksSource,
    issuer: String,
    http: reqwest::Client,
    current: ArcSwap<KeySet>,
    state: tokio::sync::Mutex<State>,
    min_refresh: Duration,
    max_age: Duration,
}

impl Jwks {
    pub fn new(
        source: JwksSource,
        issuer: String,
        http: reqwest::Client,
        min_refresh: Duration,
        max_age: Duration,
    ) -> Jwks {
        Jwks {
            source,
            issuer,
            http,
            current: ArcSwap::from_pointee(KeySet::default()),
            state: tokio::sync::Mutex::new(State {
                set: Arc::new(KeySet::default()),
                fetched: None,
                failed: false,
                location: None,
            }),
            min_refresh,
            max_age,
        }
    }

    /// The keys as last fetched, without waiting.
    pub fn current(&self) -> Arc<KeySet> {
        self.current.load_full()
    }

    /// The keys after a refresh if one is allowed now (`missing`: a token named a `kid` not
    /// in the set) or due (too old); the cached ones otherwise. A failed fetch keeps the
    /// old keys.
    pub async fn refreshed(&self, missing: bool) -> Arc<KeySet> {
        let mut st = self.state.lock().await;
        let age = st.fetched.map(|t| t.elapsed());
        let interval = if st.failed {
            self.min_refresh.min(RETRY_AFTER_FAILURE)
        } else {
            self.min_refresh
        };
        let allowed = age.is_none_or(|a| a >= interval);
        let due = age.is_none_or(|a| a >= self.max_age);
        if !(due || (missing && allowed)) {
            return st.set.clone();
        }
        st.fetched = Some(Instant::now());
        match self.fetch(&mut st).await {
            Ok(set) => {
                st.failed = false;
                let set = Arc::new(set);
                st.set = set.clone();
                self.current.store(set.clone());
                metrics::counter!(crate::telemetry::names::OAUTH_JWKS_FETCHES, "outcome" => "ok")
                    .increment(1);
                set
            }
            Err(e) => {
                st.failed = true;
                tracing::warn!(issuer = %self.issuer, error = %e, "cannot refresh signing keys");
                metrics::counter!(crate::telemetry::names::OAUTH_JWKS_FETCHES, "outcome" => "error")
                    .increment(1);
                st.set.clone()
            }
        }
    }

    /// Fetches until a fetch succeeds, backing off from 0.5 s to 30 s: run in the
    /// background at start, so keys of an authorization server that comes up after mcpq are
    /// there before its first token is.
    pub async fn load_eventually(&self) {
        let mut wait = Duration::from_millis(500);
        loop {
            {
                let mut st = self.state.lock().await;
                if st.fetched.is_some() && !st.failed {
                    return;
                }
                st.fetched = Some(Instant::now());
                match self.fetch(&mut st).await {
                    Ok(set) => {
                        st.failed = false;
                        let set = Arc::new(set);
                        st.set = set.clone();
                        self.current.store(set);
                        metrics::counter!(crate::telemetry::names::OAUTH_JWKS_FETCHES, "outcome" => "ok")
                            .increment(1);
                        return;
                    }
                    Err(e) => {
                        st.failed = true;
                        metrics::counter!(crate::telemetry::names::OAUTH_JWKS_FETCHES, "outcome" => "error")
                            .increment(1);
                        tracing::warn!(issuer = %self.issuer, error = %e, retry_in = ?wait, "cannot fetch signing keys yet");
                    }
                }
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(30));
        }
    }

    /// Whether the cached keys are older than the maximum age.
    pub async fn stale(&self) -> bool {
        let st = self.state.lock().await;
        st.fetched.is_none_or(|t| t.elapsed() >= self.max_age)
    }

    async fn fetch(&self, st: &mut State) -> Result<KeySet, String> {
        let location = match &st.location {
            Some(l) => l.clone(),
            None => {
                let l = match &self.source {
                    JwksSource::Url(u) => Location::Url(u.clone()),
                    JwksSource::File(f) => Location::File(f.clone()),
                    JwksSource::Discover => Location::Url(self.discover().await?),
                };
                st.location = Some(l.clone());
                l
            }
        };
        let doc: Value = match location {
            Location::File(f) => {
                let text = tokio::fs::read_to_string(&f)
                    .await
                    .map_err(|e| format!("{}: {e}", f.display()))?;
                serde_json::from_str(&text).map_err(|e| format!("{}: {e}", f.display()))?
            }
            Location::Url(u) => self.get_json(&u).await?,
        };
        parse(&doc)
    }

    /// The `jwks_uri` of the issuer's metadata: RFC 8414 first, then OpenID discovery.
    async fn discover(&self) -> Result<String, String> {
        let (origin, path) = split_issuer(&self.issuer);
        let candidates = [
            format!("{origin}/.well-known/oauth-authorization-server{path}"),
            format!("{origin}{path}/.well-known/openid-configuration"),
        ];
        let mut last = String::new();
        for url in candidates {
            match self.get_json(&url).await {
                Ok(meta) => {
                    // RFC 8414 §3.3: the metadata must be the issuer's own.
                    if meta.get("issuer").and_then(Value::as_str) != Some(self.issuer.as_str()) {
                        last = format!("{url}: issuer does not match {}", self.issuer);
                        continue;
                    }
                    if let Some(j) = meta.get("jwks_uri").and_then(Value::as_str) {
                        return Ok(j.to_string());
                    }
                    last = format!("{url}: no jwks_uri");
                }
                Err(e) => last = e,
            }
        }
        Err(format!("no authorization server metadata: {last}"))
    }

    async fn get_json(&self, url: &str) -> Result<Value, String> {
        let r = self
            .http
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        if !r.status().is_success() {
            return Err(format!("{url}: HTTP {}", r.status()));
        }
        // Key sets are small; a huge answer is a misconfiguration or an attack.
        let body = r.bytes().await.map_err(|e| format!("{url}: {e}"))?;
        if body.len() > 1 << 20 {
            return Err(format!("{url}: more than 1 MiB"));
        }
        serde_json::from_slice(&body).map_err(|e| format!("{url}: {e}"))
    }
}

/// `https://as.example/tenant` → (`https://as.example`, `/tenant`).
fn split_issuer(issuer: &str) -> (&str, &str) {
    let issuer = issuer.trim_end_matches('/');
    let after = issuer.find("://").map(|i| i + 3).unwrap_or(0);
    match issuer[after..].find('/') {
        Some(i) => issuer.split_at(after + i),
        None => (issuer, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric_and_encryption_keys_are_dropped() {
        let doc = serde_json::json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0", "kid": "h"},
            {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "e", "use": "enc"},
            {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "s", "alg": "EdDSA"},
            {"kty": "weird"}
        ]});
        let set = parse(&doc).unwrap();
        assert_eq!(set.keys.len(), 1);
        assert_eq!(set.keys["s"][0].alg, Some(Algorithm::EdDSA));
        assert!(parse(&serde_json::json!({})).is_err());
    }

    #[test]
    fn issuer_paths_move_after_the_well_known_segment() {
        assert_eq!(
            split_issuer("https://as.example/tenant/"),
            ("https://as.example", "/tenant")
        );
        assert_eq!(
            split_issuer("http://127.0.0.1:9/"),
            ("http://127.0.0.1:9", "")
        );
    }
}
