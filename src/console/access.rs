//! Who is asking the console and what they may do: operators' tokens checked against their
//! configured SHA-256 in constant time, sessions (a random id in an `HttpOnly`,
//! `SameSite=Strict` cookie, kept in memory by its hash), the trusted proxy header, and the
//! CSRF token every POST must carry (an HMAC of the session under a key made at start).
//!
//! It must not render pages or change jobs; a restart logs everyone out (by design: sessions
//! are not worth a table).

use std::collections::HashMap;
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{ConsoleSettings, Role};

/// The session cookie's name.
pub const COOKIE: &str = "mcpq_console";
/// Sessions held at once; the oldest go first beyond it.
const MAX_SESSIONS: usize = 10_000;

/// A signed-in operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Who {
    pub name: String,
    pub role: Role,
    /// The CSRF token of this session (or proxy identity).
    pub csrf: String,
}

impl Who {
    pub fn can_write(&self) -> bool {
        self.role == Role::ReadWrite
    }
}

struct Session {
    name: String,
    role: Role,
    expires_ms: i64,
    /// What the CSRF token is derived from: not the cookie itself.
    binding: [u8; 32],
}

pub struct Access {
    settings: ConsoleSettings,
    key: [u8; 32],
    sessions: Mutex<HashMap<[u8; 32], Session>>,
}

/// Why a request has no operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// Not signed in (or the session ended): the login form.
    Login,
    /// The proxy named someone who is not an operator.
    Unknown(String),
}

fn hash(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

impl Access {
    pub fn new(settings: ConsoleSettings) -> Access {
        let mut key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        Access {
            settings,
            key,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    fn csrf_for(&self, binding: &[u8]) -> String {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            return String::new();
        };
        mac.update(b"csrf\0");
        mac.update(binding);
        hex::encode(mac.finalize().into_bytes())
    }

    /// The operator whose token this is, by a constant-time compare with every hash.
    pub fn operator_of_token(&self, token: &str) -> Option<(String, Role)> {
        let h = hash(token.trim().as_bytes());
        let mut found = None;
        for (name, op) in &self.settings.operators {
            for t in &op.token_hashes {
                if bool::from(t.ct_eq(&h)) && found.is_none() {
                    found = Some((name.clone(), op.role));
                }
            }
        }
        found
    }

    /// Starts a session; returns the cookie's value.
    pub fn start(&self, name: String, role: Role, now_ms: i64) -> String {
        let mut id = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut id);
        let cookie = hex::encode(id);
        let mut binding = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut binding);
        let expires_ms = now_ms + self.settings.session_ttl_secs as i64 * 1000;
        if let Ok(mut s) = self.sessions.lock() {
            s.retain(|_, v| v.expires_ms > now_ms);
            if s.len() >= MAX_SESSIONS {
                if let Some(k) = s.iter().min_by_key(|(_, v)| v.expires_ms).map(|(k, _)| *k) {
                    s.remove(&k);
                }
            }
            let session = Session {
                name,
                role,
                expires_ms,
                binding,
            };
            s.insert(hash(cookie.as_bytes()), session);
        }
        cookie
    }

    pub fn end(&self, cookie: Option<&str>) {
        if let (Some(c), Ok(mut s)) = (cookie, self.sessions.lock()) {
            s.remove(&hash(c.as_bytes()));
        }
    }

    /// The operator behind a request: the proxy's header when one is configured and sent,
    /// else the session cookie.
    pub fn who(
        &self,
        headers: &hyper::HeaderMap,
        cookie: Option<&str>,
        now_ms: i64,
    ) -> Result<Who, Denied> {
        if let Some(h) = &self.settings.proxy_header {
            if let Some(v) = headers.get(h.as_str()) {
                let name = v.to_str().unwrap_or("").trim().to_string();
                return match self.settings.operators.get(&name) {
                    Some(op) => Ok(Who {
                        csrf: self.csrf_for(format!("proxy\0{name}").as_bytes()),
                        name,
                        role: op.role,
                    }),
                    None => Err(Denied::Unknown(name)),
                };
            }
        }
        let cookie = cookie.ok_or(Denied::Login)?;
        let s = self.sessions.lock().map_err(|_| Denied::Login)?;
        match s.get(&hash(cookie.as_bytes())) {
            Some(v) if v.expires_ms > now_ms => Ok(Who {
                name: v.name.clone(),
                role: v.role,
                csrf: self.csrf_for(&v.binding),
            }),
            _ => Err(Denied::Login),
        }
    }

    /// Whether a submitted CSRF token is this operator's.
    pub fn csrf_ok(who: &Who, submitted: Option<&str>) -> bool {
        match submitted {
            Some(t) if !who.csrf.is_empty() => bool::from(t.as_bytes().ct_eq(who.csrf.as_bytes())),
            _ => false,
        }
    }
}

/// The session cookie's value in a `Cookie` header.
pub fn session_cookie(headers: &hyper::HeaderMap) -> Option<String> {
    headers
        .get_all(hyper::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

/// The `Set-Cookie` value of a new session (`Secure` off loopback, where plain HTTP is only
/// acceptable on the same host).
pub fn set_cookie(value: &str, ttl_secs: u64, secure: bool) -> String {
    format!(
        "{COOKIE}={value}; Path=/ui/; HttpOnly; SameSite=Strict; Max-Age={ttl_secs}{}",
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Operator;

    fn access() -> Access {
        let mut s = ConsoleSettings {
            enabled: true,
            session_ttl_secs: 60,
            ..ConsoleSettings::default()
        };
        s.operators.insert(
            "ann".into(),
            Operator {
                token_hashes: vec![hash(b"ann-token")],
                role: Role::ReadOnly,
            },
        );
        Access::new(s)
    }

    #[test]
    fn tokens_sessions_and_csrf() {
        let a = access();
        assert_eq!(a.operator_of_token("nope"), None);
        let (name, role) = a.operator_of_token("ann-token").unwrap();
        let c = a.start(name, role, 1000);
        let mut h = hyper::HeaderMap::new();
        h.insert(
            hyper::header::COOKIE,
            format!("x=1; {COOKIE}={c}").parse().unwrap(),
        );
        let cookie = session_cookie(&h);
        let who = a.who(&h, cookie.as_deref(), 2000).unwrap();
        assert_eq!((who.name.as_str(), who.can_write()), ("ann", false));
        assert!(Access::csrf_ok(&who, Some(&who.csrf)));
        assert!(!Access::csrf_ok(&who, Some("0")));
        assert!(!Access::csrf_ok(&who, None));
        assert_eq!(a.who(&h, cookie.as_deref(), 61_001), Err(Denied::Login));
        a.end(cookie.as_deref());
        assert_eq!(a.who(&h, cookie.as_deref(), 2000), Err(Denied::Login));
    }
}
