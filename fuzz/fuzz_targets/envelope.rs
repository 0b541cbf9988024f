//! Fuzzes the request envelope path as far as it goes without the daemon's key table:
//! bytes → strict JSON parse → `Envelope::from_json` → signing bytes → the HMAC-SHA256
//! signature check, made here as `auth::verify_signature` makes it, with the envelope
//! module's own `new_mac`; plus the two other byte-level entry points,
//! `salvage_request_id` (error correlation for bodies the strict parser refused) and
//! `verify_response` (the client side).
//!
//! `auth::Authenticator` (version, server, clock window, nonce replay) is not driven
//! here: it needs the daemon's config, which this slim crate does not compile (see
//! fuzz/src/lib.rs); its checks have unit and integration tests in the main crate.
//!
//! Nothing may panic. Beyond that, for every accepted envelope:
//! * its signing bytes are canonical JSON of the body without `signature`;
//! * re-signed with the fuzz client's key, it parses again to the same signing bytes and
//!   its signature verifies with that key only; a tampered signature does not verify.

#![no_main]

use hmac::Mac;
use libfuzzer_sys::fuzz_target;
use mcpq_fuzz::envelope_api::{self, Envelope};
use mcpq_fuzz::json::{self, Json};

mod common;

const KEY: &[u8] = b"fuzz-client-key";
const OTHER_KEY: &[u8] = b"an-old-key";
const SERVER_KEY: &[u8] = b"fuzz-server-key";

/// The check `auth::verify_signature` makes with one key: exactly 64 hex digits, equal
/// in constant time to the HMAC-SHA256 of the signing bytes.
fn signature_verifies(key: &[u8], signed: &[u8], signature_hex: &str) -> bool {
    let mut sent = [0u8; 32];
    if signature_hex.len() != 64 || hex::decode_to_slice(signature_hex, &mut sent).is_err() {
        return false;
    }
    let mut mac = envelope_api::new_mac(key);
    mac.update(signed);
    mac.verify_slice(&sent).is_ok()
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

    // The signature as sent, whatever it holds: a verdict, never a panic.
    let _ = signature_verifies(KEY, signing.as_bytes(), &env.signature);

    // The same envelope signed properly with the fuzz client's key.
    let mut o = object;
    let signature = envelope_api::hmac_hex(KEY, signing.as_bytes());
    o.insert("signature".into(), Json::Str(signature.clone()));
    let wire = Json::Object(o).to_canonical();
    let env2 = Envelope::from_json(json::parse(wire.as_bytes()).expect("re-signed body parses"))
        .unwrap_or_else(|e| panic!("re-signed envelope refused: {e}\nbody: {wire:?}"));
    let signed = env2.signing_bytes();
    assert_eq!(signed, signing, "re-signing changed the signing bytes");
    assert!(
        signature_verifies(KEY, signed.as_bytes(), &env2.signature),
        "a correctly signed envelope does not verify\nbody: {wire:?}"
    );
    assert!(
        !signature_verifies(OTHER_KEY, signed.as_bytes(), &env2.signature),
        "a signature verifies with a key that did not make it\nbody: {wire:?}"
    );

    // A tampered signature does not verify.
    let flip = if signature.starts_with('0') { "1" } else { "0" };
    let tampered = format!("{flip}{}", &signature[1..]);
    assert!(!signature_verifies(KEY, signed.as_bytes(), &tampered));
});
