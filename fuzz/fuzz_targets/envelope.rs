//! Fuzzes the request envelope path as far as it goes without a daemon:
//! bytes → strict JSON parse → `Envelope::from_json` → signing bytes → the full
//! authentication check (version, server, clock window, signature, nonce); plus the
//! two other byte-level entry points, `salvage_request_id` (error correlation for
//! bodies the strict parser refused) and `verify_response` (the client side).
//!
//! Nothing may panic. Beyond that, for every accepted envelope:
//! * its signing bytes are canonical JSON of the body without `signature`;
//! * with its addressing rewritten for the fuzz server and re-signed with the fuzz
//!   client's key, it is admitted once and then refused as a replay, and a tampered
//!   signature is refused as `bad_signature`.

#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use mcpq::auth::Authenticator;
use mcpq::config::{ClientKeys, Secret};
use mcpq::json::{self, Json};
// The one place this target names the envelope module (it may be renamed `envelope`).
use mcpq::protocol::{self as envelope_api, CallError, Envelope};

mod common;

const SERVER: &str = "fuzz-server";
const CLIENT: &str = "fuzz-client";
const KEY: &[u8] = b"fuzz-client-key";
const SERVER_KEY: &[u8] = b"fuzz-server-key";
const WINDOW_MS: i64 = 300_000;
/// A fixed "now" for the clock check, so runs are deterministic.
const NOW_MS: i64 = 1_767_225_600_000;

fn authenticator() -> Authenticator {
    let mut clients = BTreeMap::new();
    clients.insert(
        CLIENT.to_string(),
        ClientKeys {
            secrets: vec![
                Secret::new(b"an-old-key".to_vec()),
                Secret::new(KEY.to_vec()),
            ],
            token_hashes: Vec::new(),
        },
    );
    Authenticator::new(SERVER.to_string(), WINDOW_MS, clients)
}

fuzz_target!(|data: &[u8]| {
    let _ = envelope_api::salvage_request_id(data);
    let _ = envelope_api::verify_response(data, SERVER_KEY);

    let Ok(body) = json::parse(data) else {
        return;
    };
    let Ok(env) = Envelope::from_json(body.clone()) else {
        return;
    };
    let Json::Object(object) = body else {
        panic!("from_json accepted a body that is not an object");
    };

    // The typed view keeps the arguments exactly as parsed.
    assert!(common::same(
        &Json::Object(env.args.clone()),
        object.get("args").expect("from_json checked args")
    ));

    // The signing bytes are the canonical body without its signature.
    let signing = env.signing_bytes();
    let mut unsigned = String::new();
    json::write_object_except(&object, Some("signature"), &mut unsigned);
    assert_eq!(signing, unsigned);
    let reparsed = json::parse(signing.as_bytes()).expect("signing bytes re-parse");
    let Json::Object(reparsed) = reparsed else {
        panic!("signing bytes are not an object");
    };
    assert_eq!(reparsed.len(), object.len() - 1);

    // The envelope as sent, against a key table that never signed it: refused, never a panic.
    let auth = authenticator();
    let _ = auth.check(&env, NOW_MS);
    let _ = auth.check(&env, env.ts_ms);
    if let Ok(token) = std::str::from_utf8(data) {
        assert_eq!(auth.bearer(token), None);
    }

    // The same envelope addressed to the fuzz server as the fuzz client, signed properly.
    let mut o = object;
    o.insert("v".into(), Json::str(envelope_api::VERSION));
    o.insert("server_id".into(), Json::str(SERVER));
    o.insert("client_id".into(), Json::str(CLIENT));
    let mut signed = String::new();
    json::write_object_except(&o, Some("signature"), &mut signed);
    let signature = envelope_api::hmac_hex(KEY, signed.as_bytes());
    o.insert("signature".into(), Json::Str(signature.clone()));
    let wire = Json::Object(o).to_canonical();
    let env2 = Envelope::from_json(json::parse(wire.as_bytes()).expect("re-signed body parses"))
        .unwrap_or_else(|e| panic!("re-signed envelope refused: {e}\nbody: {wire:?}"));
    assert_eq!(env2.signing_bytes(), signed);

    // A tampered signature fails before the nonce is consumed.
    let mut tampered = env2.clone();
    let flip = if signature.starts_with('0') { "1" } else { "0" };
    tampered.signature = format!("{flip}{}", &signature[1..]);
    assert_eq!(
        auth.check(&tampered, env2.ts_ms),
        Err(CallError::BadSignature)
    );

    let fresh = authenticator();
    let rec = fresh
        .check(&env2, env2.ts_ms)
        .unwrap_or_else(|e| panic!("a correctly signed envelope was refused: {e}\nbody: {wire:?}"));
    assert_eq!(rec.expires_ms, env2.ts_ms.saturating_add(WINDOW_MS));
    assert_eq!(
        fresh.check(&env2, env2.ts_ms),
        Err(CallError::ReplayedNonce),
        "a replay was admitted\nbody: {wire:?}"
    );
});
