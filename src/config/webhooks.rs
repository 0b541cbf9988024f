//! Completion webhooks' settings (docs/WEBHOOKS.md): `[webhooks]` (how deliverers send:
//! timeouts, retries and back-off, whether private addresses may be targets) and each
//! client's `[clients.ID.webhooks]` (the allowlist of callback URLs, an optional default
//! URL for every job of the client, and the Standard Webhooks signing secrets, two during
//! a rotation). Also the allowlist check a call's callback passes at call time.
//!
//! It must not open sockets or resolve names: the deliverer (`crate::webhooks`) checks the
//! addresses it connects to.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use serde::Deserialize;

use super::secrets::load_secret;
use super::{ConfigError, Secret};

/// The longest callback URL accepted.
pub const MAX_URL_LEN: usize = 2048;
/// Standard Webhooks secrets are 24 to 64 random bytes, written `whsec_` + base64.
const SECRET_PREFIX: &str = "whsec_";
const MIN_KEY_LEN: usize = 24;
const MAX_KEY_LEN: usize = 64;

/// `[webhooks]` as written.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDelivery {
    allow_private: bool,
    timeout_ms: u64,
    max_attempts: u32,
    backoff_initial_ms: u64,
    backoff_max_ms: u64,
    poll_ms: u64,
    concurrency: usize,
}

/// `[clients.ID.webhooks]` as written.
#[derive(Debug, Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClientHooks {
    #[serde(default)]
    allow: Vec<String>,
    url: Option<String>,
    secret: Option<String>,
    secret_file: Option<PathBuf>,
    previous_secret: Option<String>,
    previous_secret_file: Option<PathBuf>,
}

/// How deliverers send (`[webhooks]`).
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Loopback, private, link-local and other non-public targets are refused unless true.
    pub allow_private: bool,
    /// The whole exchange (connect, send, answer) of one attempt.
    pub timeout: Duration,
    /// Attempts per event before it is given up.
    pub max_attempts: u32,
    /// The wait after the first failed attempt, doubled after each further one, up to
    /// `backoff_max_ms`.
    pub backoff_initial_ms: i64,
    pub backoff_max_ms: i64,
    /// How often an idle deliverer looks for due events.
    pub poll: Duration,
    /// Deliveries in flight per process.
    pub concurrency: usize,
}

/// One client's webhooks (`[clients.ID.webhooks]`).
#[derive(Debug, Clone, Default)]
pub struct ClientHooks {
    /// URL prefixes (a pattern ending in `*`) or exact URLs, in normal form.
    pub allow: Vec<String>,
    /// The callback of every job of the client whose call names none.
    pub url: Option<String>,
    /// The signing keys (decoded): the current one, then the previous one during a rotation.
    /// Empty in a process that loaded no secrets.
    pub keys: Vec<Secret>,
}

/// `[webhooks]` and every client's `[clients.ID.webhooks]`.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub delivery: Delivery,
    pub clients: BTreeMap<String, ClientHooks>,
}

/// Why a callback URL is refused at call time (the caller's `callback_not_allowed`).
pub fn refusal(url: &str, why: &str) -> String {
    let shown: String = url.chars().take(200).collect();
    format!("callback {shown:?}: {why}")
}

impl WebhookSettings {
    /// The callback a client's job gets: the call's own (`asked`), checked against the
    /// client's allowlist and returned in normal form, else the client's default URL, else
    /// none. `Err` says why the asked URL is refused.
    pub fn callback_for(
        &self,
        client: &str,
        asked: Option<&str>,
    ) -> Result<Option<String>, String> {
        let hooks = self.clients.get(client);
        let Some(url) = asked else {
            return Ok(hooks.and_then(|h| h.url.clone()));
        };
        let normal = normal_url(url).map_err(|why| refusal(url, &why))?;
        let Some(hooks) = hooks.filter(|h| !h.allow.is_empty()) else {
            return Err(refusal(
                url,
                "this client has no webhook allowlist ([clients.ID.webhooks] allow)",
            ));
        };
        if hooks.allow.iter().any(|p| allows(p, &normal)) {
            Ok(Some(normal))
        } else {
            Err(refusal(url, "not in this client's webhook allowlist"))
        }
    }

    /// The signing keys of a client (none: its events cannot be signed).
    pub fn keys(&self, client: &str) -> &[Secret] {
        self.clients.get(client).map_or(&[], |h| &h.keys)
    }
}

fn allows(pattern: &str, url: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => url.starts_with(prefix),
        None => url == pattern,
    }
}

/// A callback URL in normal form: http or https, a host, no user or password, no fragment,
/// at most [`MAX_URL_LEN`] bytes.
pub fn normal_url(url: &str) -> Result<String, String> {
    if url.len() > MAX_URL_LEN {
        return Err(format!("longer than {MAX_URL_LEN} bytes"));
    }
    let u = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    if u.scheme() != "https" && u.scheme() != "http" {
        return Err("the scheme must be https or http".into());
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err("no host".into());
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err("a user or password in the URL is not allowed".into());
    }
    if u.fragment().is_some() {
        return Err("a fragment (#…) is not allowed".into());
    }
    Ok(u.to_string())
}

/// An allowlist entry: an exact URL, or a prefix ending in `*` that reaches at least the
/// first `/` of the path (so `https://hooks.example.com*` cannot admit
/// `https://hooks.example.com.evil.net/`). Both in normal form.
fn check_pattern(p: &str, what: &str) -> Result<String, ConfigError> {
    let invalid = |why: &str| ConfigError::Invalid(format!("{what}: allow entry {p:?}: {why}"));
    let (base, star) = match p.strip_suffix('*') {
        Some(b) => (b, true),
        None => (p, false),
    };
    if base.contains('*') {
        return Err(invalid("`*` may only end the entry"));
    }
    let normal = normal_url(base).map_err(|e| invalid(&e))?;
    let after_scheme = base.split_once("://").map_or("", |(_, rest)| rest);
    if star && !after_scheme.contains('/') {
        return Err(invalid(
            "a prefix must reach the path (https://host/… then `*`)",
        ));
    }
    if normal != base {
        return Err(invalid(&format!("write it in normal form: {normal:?}")));
    }
    Ok(if star { format!("{normal}*") } else { normal })
}

/// A `whsec_…` secret's key bytes.
fn signing_key(s: Secret, what: &str) -> Result<Secret, ConfigError> {
    let invalid = |why: &str| {
        ConfigError::Invalid(format!(
            "{what}: {why} (a Standard Webhooks secret: whsec_ and the base64 of {MIN_KEY_LEN} to {MAX_KEY_LEN} random bytes; see docs/WEBHOOKS.md)"
        ))
    };
    let text = std::str::from_utf8(s.expose()).map_err(|_| invalid("not text"))?;
    let b64 = text
        .strip_prefix(SECRET_PREFIX)
        .ok_or_else(|| invalid("does not start with whsec_"))?;
    let key = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| invalid("not base64 after whsec_"))?;
    if !(MIN_KEY_LEN..=MAX_KEY_LEN).contains(&key.len()) {
        return Err(invalid(&format!("the key is {} bytes", key.len())));
    }
    Ok(Secret::new(key))
}

pub(super) fn delivery(raw: &RawDelivery) -> Result<Delivery, ConfigError> {
    if raw.max_attempts == 0 || raw.timeout_ms == 0 || raw.concurrency == 0 {
        return Err(ConfigError::Invalid(
            "webhooks.max_attempts, timeout_ms and concurrency must be at least 1".into(),
        ));
    }
    if raw.backoff_initial_ms > raw.backoff_max_ms {
        return Err(ConfigError::Invalid(
            "webhooks.backoff_initial_ms must be at most webhooks.backoff_max_ms".into(),
        ));
    }
    Ok(Delivery {
        allow_private: raw.allow_private,
        timeout: Duration::from_millis(raw.timeout_ms),
        max_attempts: raw.max_attempts,
        backoff_initial_ms: raw.backoff_initial_ms.min(i64::MAX as u64) as i64,
        backoff_max_ms: raw.backoff_max_ms.min(i64::MAX as u64) as i64,
        poll: Duration::from_millis(raw.poll_ms.max(10)),
        concurrency: raw.concurrency,
    })
}

/// Every client's webhooks; `secrets`: read the signing secrets (a process that delivers
/// or serves), else leave them out.
pub(super) fn client_hooks(
    raw: &BTreeMap<String, Option<RawClientHooks>>,
    secrets: bool,
) -> Result<BTreeMap<String, ClientHooks>, ConfigError> {
    let mut out = BTreeMap::new();
    for (id, h) in raw {
        let Some(h) = h else { continue };
        let what = format!("clients.{id}.webhooks");
        let allow = h
            .allow
            .iter()
            .map(|p| check_pattern(p, &what))
            .collect::<Result<Vec<_>, _>>()?;
        let url = match &h.url {
            None => None,
            Some(u) => {
                let normal = normal_url(u)
                    .map_err(|e| ConfigError::Invalid(format!("{what}.url {u:?}: {e}")))?;
                if !allow.iter().any(|p| allows(p, &normal)) {
                    return Err(ConfigError::Invalid(format!(
                        "{what}.url {u:?} is not in the client's allow list"
                    )));
                }
                Some(normal)
            }
        };
        let mut keys = Vec::new();
        if secrets {
            for (inline, file, key) in [
                (&h.secret, &h.secret_file, "secret"),
                (
                    &h.previous_secret,
                    &h.previous_secret_file,
                    "previous_secret",
                ),
            ] {
                let at = format!("{what}.{key}");
                if let Some(s) = load_secret(inline, file, &at)? {
                    keys.push(signing_key(s, &at)?);
                }
            }
            if keys.is_empty() && !allow.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "{what}: no secret configured (secret or secret_file) to sign deliveries with"
                )));
            }
        }
        out.insert(id.clone(), ClientHooks { allow, url, keys });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(allow: &[&str]) -> WebhookSettings {
        let raw = RawClientHooks {
            allow: allow.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let clients = client_hooks(&BTreeMap::from([("c".to_string(), Some(raw))]), false).unwrap();
        let delivery = delivery(&RawDelivery {
            allow_private: false,
            timeout_ms: 1,
            max_attempts: 1,
            backoff_initial_ms: 1,
            backoff_max_ms: 1,
            poll_ms: 1,
            concurrency: 1,
        })
        .unwrap();
        WebhookSettings { delivery, clients }
    }

    #[test]
    fn a_callback_must_match_the_allowlist_in_normal_form() {
        let s = settings(&["https://hooks.example.com/mcpq/*", "http://127.0.0.1:9/x"]);
        let ok = |u: &str| s.callback_for("c", Some(u));
        assert_eq!(
            ok("https://HOOKS.example.com/mcpq/a?b=1")
                .unwrap()
                .as_deref(),
            Some("https://hooks.example.com/mcpq/a?b=1")
        );
        assert!(ok("http://127.0.0.1:9/x").is_ok());
        for bad in [
            "https://hooks.example.com/other",
            "https://hooks.example.com.evil.net/mcpq/",
            "https://hooks.example.com@evil.net/mcpq/",
            "https://user@hooks.example.com/mcpq/a",
            "https://hooks.example.com/mcpq/../admin",
            "http://127.0.0.1:9/x/y",
            "ftp://hooks.example.com/mcpq/a",
            "not a url",
        ] {
            assert!(ok(bad).is_err(), "{bad}");
        }
        assert!(s
            .callback_for("other", Some("https://hooks.example.com/mcpq/a"))
            .is_err());
        assert_eq!(s.callback_for("c", None).unwrap(), None);
    }

    #[test]
    fn patterns_must_reach_the_path_and_be_in_normal_form() {
        for bad in [
            "https://hooks.example.com*",
            "https://h/*/x",
            "https://H.example.com/*",
        ] {
            assert!(check_pattern(bad, "t").is_err(), "{bad}");
        }
        assert!(check_pattern("https://hooks.example.com/*", "t").is_ok());
    }

    #[test]
    fn secrets_are_standard_webhooks_secrets() {
        let good = format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode([7u8; 32])
        );
        assert_eq!(
            signing_key(Secret::new(good), "t").unwrap().expose(),
            &[7u8; 32]
        );
        for bad in ["whsec_!!!", "abc", "whsec_AAAA"] {
            assert!(signing_key(Secret::new(bad), "t").is_err(), "{bad}");
        }
    }
}
