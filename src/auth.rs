//! Authentication: who may call, and whether this exact envelope may be acted on.
//!
//! Owns the key table (never a key from the caller), the check order after the
//! strict parse (version → server_id → timestamp → signature → nonce), the
//! constant-time signature comparison over every live key of a client, and the
//! in-memory nonce set that answers "seen before?" atomically.
//!
//! It must not persist anything itself: a freshly admitted nonce is returned to
//! the caller, which hands it to the store (write-behind for sync calls, in the
//! job's own transaction for job-creating calls). See docs/PROTOCOL.md.

use std::collections::hash_map::{DefaultHasher, Entry};
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use hmac::Mac;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use crate::config::{ClientKeys, Secret};
use crate::envelope::{new_mac, CallError, Envelope, VERSION};

/// A nonce as stored: a digest of (client, nonce), so caller-chosen strings never reach disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NonceKey(pub [u8; 16]);

impl NonceKey {
    pub fn new(client_id: &str, nonce: &str) -> NonceKey {
        let mut h = Sha256::new();
        h.update(client_id.as_bytes());
        h.update([0u8]);
        h.update(nonce.as_bytes());
        let d = h.finalize();
        let mut k = [0u8; 16];
        k.copy_from_slice(&d[..16]);
        NonceKey(k)
    }
}

/// A nonce admitted by [`Authenticator::check`], to be persisted until `expires_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NonceRecord {
    pub key: NonceKey,
    pub expires_ms: i64,
}

const SHARDS: usize = 64;

/// The set of nonces still inside the timestamp window, sharded to keep lock hold times short.
pub struct NonceCache {
    shards: Vec<Mutex<HashMap<NonceKey, i64>>>,
}

impl Default for NonceCache {
    fn default() -> Self {
        NonceCache {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }
}

impl NonceCache {
    fn shard(&self, key: &NonceKey) -> &Mutex<HashMap<NonceKey, i64>> {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        &self.shards[(h.finish() as usize) % SHARDS]
    }

    /// Inserts the nonce unless a live copy is present. Returns false on replay.
    pub fn admit(&self, rec: NonceRecord, now_ms: i64) -> bool {
        let mut map = self
            .shard(&rec.key)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match map.entry(rec.key) {
            Entry::Occupied(mut e) => {
                if *e.get() >= now_ms {
                    false
                } else {
                    e.insert(rec.expires_ms);
                    true
                }
            }
            Entry::Vacant(e) => {
                e.insert(rec.expires_ms);
                true
            }
        }
    }

    /// Loads nonces persisted by an earlier run.
    pub fn preload(&self, records: impl IntoIterator<Item = NonceRecord>) {
        for r in records {
            let mut map = self.shard(&r.key).lock().unwrap_or_else(|p| p.into_inner());
            let e = map.entry(r.key).or_insert(r.expires_ms);
            *e = (*e).max(r.expires_ms);
        }
    }

    /// Forgets nonces whose timestamps can no longer pass the window check.
    pub fn prune(&self, now_ms: i64) -> usize {
        let mut removed = 0;
        for s in &self.shards {
            let mut map = s.lock().unwrap_or_else(|p| p.into_inner());
            let before = map.len();
            map.retain(|_, exp| *exp >= now_ms);
            removed += before - map.len();
        }
        removed
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Checks envelopes against the server's identity, clock window, key table and nonce set.
pub struct Authenticator {
    server_id: String,
    window_ms: i64,
    /// Swapped whole by a reload (key rotation without a restart); a request reads one
    /// consistent table.
    clients: arc_swap::ArcSwap<BTreeMap<String, ClientKeys>>,
    nonces: NonceCache,
}

impl Authenticator {
    pub fn new(server_id: String, window_ms: i64, clients: BTreeMap<String, ClientKeys>) -> Self {
        Authenticator {
            server_id,
            window_ms,
            clients: arc_swap::ArcSwap::from_pointee(clients),
            nonces: NonceCache::default(),
        }
    }

    /// Replaces the client key table (a reload); the nonce set stays.
    pub fn set_clients(&self, clients: BTreeMap<String, ClientKeys>) {
        self.clients.store(std::sync::Arc::new(clients));
    }

    /// Whether `client` sees and may call `tool` (`[clients.ID] tools`; every tool when
    /// its table sets none, or for an id with no table, which authentication refuses).
    pub fn may_see(&self, client: &str, tool: &str) -> bool {
        self.clients
            .load()
            .get(client)
            .and_then(|c| c.tools.as_ref())
            .is_none_or(|globs| globs.is_match(tool))
    }

    /// The client's `max_priority`, if its table sets one.
    pub fn max_priority(&self, client: &str) -> Option<u8> {
        self.clients.load().get(client).and_then(|c| c.max_priority)
    }

    pub fn nonces(&self) -> &NonceCache {
        &self.nonces
    }

    pub fn window_ms(&self) -> i64 {
        self.window_ms
    }

    /// The client whose live `/mcp` bearer token this is. Every configured token hash is
    /// compared in constant time (no early exit), so timing says nothing about which
    /// client or how much of a hash matched.
    pub fn bearer(&self, token: &str) -> Option<String> {
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let clients = self.clients.load();
        let mut found = None;
        for (id, keys) in clients.iter() {
            let mut hit = Choice::from(0);
            for h in &keys.token_hashes {
                hit |= h.ct_eq(&presented);
            }
            if bool::from(hit) && found.is_none() {
                found = Some(id.clone());
            }
        }
        found
    }

    /// Runs the checks in the documented order; on success the nonce is consumed
    /// and returned for persistence.
    pub fn check(&self, env: &Envelope, now_ms: i64) -> Result<NonceRecord, CallError> {
        if env.v != VERSION {
            return Err(CallError::UnsupportedVersion(env.v.clone()));
        }
        if env.server_id != self.server_id {
            return Err(CallError::WrongServer(env.server_id.clone()));
        }
        if env.ts_ms < now_ms.saturating_sub(self.window_ms) {
            return Err(CallError::StaleTimestamp(self.window_ms));
        }
        if env.ts_ms > now_ms.saturating_add(self.window_ms) {
            return Err(CallError::FutureTimestamp(self.window_ms));
        }
        let clients = self.clients.load();
        let keys = clients
            .get(&env.client_id.0)
            .ok_or_else(|| CallError::UnknownClient(env.client_id.0.clone()))?;
        verify_signature(
            &keys.secrets,
            env.signing_bytes().as_bytes(),
            &env.signature,
        )?;
        let rec = NonceRecord {
            key: NonceKey::new(&env.client_id.0, &env.nonce),
            // A nonce must be remembered for as long as its timestamp could still pass.
            expires_ms: env.ts_ms.saturating_add(self.window_ms),
        };
        if !self.nonces.admit(rec, now_ms) {
            return Err(CallError::ReplayedNonce);
        }
        Ok(rec)
    }
}

/// Verifies a hex signature against every live key, in time independent of which (if any) matches.
pub fn verify_signature(
    keys: &[Secret],
    signed: &[u8],
    signature_hex: &str,
) -> Result<(), CallError> {
    let mut sent = [0u8; 32];
    if signature_hex.len() != 64 || hex::decode_to_slice(signature_hex, &mut sent).is_err() {
        return Err(CallError::BadSignature);
    }
    let mut any = Choice::from(0);
    for key in keys {
        let mut mac = new_mac(key.expose());
        mac.update(signed);
        let expected = mac.finalize().into_bytes();
        any |= expected.as_slice().ct_eq(&sent);
    }
    if bool::from(any) {
        Ok(())
    } else {
        Err(CallError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_is_admitted_once_until_it_expires() {
        let c = NonceCache::default();
        let rec = NonceRecord {
            key: NonceKey::new("a", "n"),
            expires_ms: 100,
        };
        assert!(c.admit(rec, 0));
        assert!(!c.admit(rec, 50));
        assert!(!c.admit(rec, 100));
        // Past expiry the timestamp check rejects the envelope anyway; the slot may be reused.
        assert!(c.admit(
            NonceRecord {
                expires_ms: 300,
                ..rec
            },
            101
        ));
        assert_eq!(c.prune(301), 1);
        assert!(c.is_empty());
    }

    #[test]
    fn nonce_keys_separate_clients() {
        assert_ne!(NonceKey::new("a", "bn"), NonceKey::new("ab", "n"));
    }

    #[test]
    fn either_rotation_key_verifies() {
        let k1 = Secret::new(b"first".to_vec());
        let k2 = Secret::new(b"second".to_vec());
        let sig2 = crate::envelope::hmac_hex(b"second", b"msg");
        assert!(verify_signature(&[k1.clone(), k2], b"msg", &sig2).is_ok());
        assert!(verify_signature(&[k1], b"msg", &sig2).is_err());
        assert!(verify_signature(&[], b"msg", "zz").is_err());
    }
}
