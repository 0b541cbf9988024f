//! mcpq's canonical JSON and signatures against CPython's, byte for byte.
//!
//! `tests/vectors/canonical.json` is written by `tests/vectors/gen_vectors.py`:
//! every case's `canonical` is what CPython's
//! `json.dumps(json.loads(input), separators=(",", ":"), sort_keys=True)` makes of
//! `input` (the seed's `_canonical_json`), and `hmac_hex` is HMAC-SHA256 of it.
//! Envelope and response cases were built and signed by the seed's own code.
//!
//! Besides checking the vectors as written, the proptests re-encode every vector
//! in random semantics-preserving ways (whitespace, key order, escapes, number
//! spellings) and check the canonical bytes do not move, and round-trip random
//! Rust-built trees through canonical form.

use std::sync::OnceLock;

use mcpq::auth::verify_signature;
use mcpq::config::Secret;
use mcpq::envelope::{self, Envelope, Response, Status};
use mcpq::json::{self, Json, Object};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

#[derive(Debug)]
struct Case {
    name: String,
    kind: String,
    input: String,
    canonical: String,
    hmac_key: String,
    hmac_hex: String,
    /// Envelope cases: canonical JSON of every field but "signature".
    signing: Option<String>,
    /// Response cases: canonical JSON with "signature": "".
    unsigned: Option<String>,
}

fn cases() -> &'static [Case] {
    static CASES: OnceLock<Vec<Case>> = OnceLock::new();
    CASES.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/canonical.json");
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
            panic!("cannot read {path}: {e} (run tests/vectors/gen_vectors.py)")
        });
        // serde_json, not mcpq's parser, reads the vector file: the code under test
        // must not decide what the expected values are.
        let raw: Vec<serde_json::Value> = serde_json::from_str(&text).expect("vector file is JSON");
        let field = |c: &serde_json::Value, k: &str| -> Option<String> {
            c.get(k).and_then(|v| v.as_str()).map(str::to_string)
        };
        let cases: Vec<Case> = raw
            .iter()
            .map(|c| Case {
                name: field(c, "name").expect("name"),
                kind: field(c, "kind").expect("kind"),
                input: field(c, "input").expect("input"),
                canonical: field(c, "canonical").expect("canonical"),
                hmac_key: field(c, "hmac_key").expect("hmac_key"),
                hmac_hex: field(c, "hmac_hex").expect("hmac_hex"),
                signing: field(c, "signing"),
                unsigned: field(c, "unsigned"),
            })
            .collect();
        assert!(cases.len() > 300, "only {} vectors", cases.len());
        cases
    })
}

fn of_kind(kind: &str) -> Vec<&'static Case> {
    cases().iter().filter(|c| c.kind == kind).collect()
}

/// A short description of where two strings first differ.
fn first_difference(want: &str, got: &str) -> String {
    let at = want
        .bytes()
        .zip(got.bytes())
        .position(|(a, b)| a != b)
        .unwrap_or(want.len().min(got.len()));
    let window = |s: &str| {
        let lo = s.floor_char_boundary(at.saturating_sub(40));
        let hi = s.ceil_char_boundary((at + 40).min(s.len()));
        s[lo..hi].to_string()
    };
    format!(
        "first difference at byte {at}: CPython …{}… / mcpq …{}…",
        window(want),
        window(got)
    )
}

fn canonical_of(text: &str) -> Result<String, json::ParseError> {
    json::parse(text.as_bytes()).map(|v| v.to_canonical())
}

#[test]
fn every_vector_canonicalizes_exactly_like_cpython() {
    let mut failures = Vec::new();
    for c in cases() {
        match canonical_of(&c.input) {
            Ok(got) if got == c.canonical => {}
            Ok(got) => failures.push(format!(
                "{}: {}",
                c.name,
                first_difference(&c.canonical, &got)
            )),
            Err(e) => failures.push(format!("{}: parse error {e}", c.name)),
        }
        // The canonical form is a fixed point.
        match canonical_of(&c.canonical) {
            Ok(again) if again == c.canonical => {}
            other => failures.push(format!(
                "{}: canonical is not a fixed point: {other:?}",
                c.name
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} vectors differ from CPython:\n{}",
        failures.len(),
        cases().len(),
        failures.join("\n")
    );
}

#[test]
fn every_vector_hmac_matches_python_hmac() {
    for c in cases() {
        assert_eq!(
            envelope::hmac_hex(c.hmac_key.as_bytes(), c.canonical.as_bytes()),
            c.hmac_hex,
            "{}",
            c.name
        );
    }
}

#[test]
fn vectors_cover_what_they_claim() {
    let names: Vec<&str> = cases().iter().map(|c| c.name.as_str()).collect();
    for prefix in [
        "float/",
        "number/",
        "int/",
        "string/",
        "keys/",
        "struct/",
        "special/",
        "hmac/",
        "envelope/",
        "response/",
        "random/",
        "bulk/",
    ] {
        assert!(
            names.iter().any(|n| n.starts_with(prefix)),
            "no {prefix} vectors"
        );
    }
    assert!(of_kind("envelope").len() >= 5);
    assert!(of_kind("response").len() >= 3);
    assert!(names.iter().filter(|n| n.starts_with("random/")).count() >= 200);
}

#[test]
fn seed_envelopes_verify() {
    let envelopes = of_kind("envelope");
    assert!(
        envelopes.len() >= 5,
        "only {} envelope vectors",
        envelopes.len()
    );
    for c in envelopes {
        let signing = c.signing.as_deref().expect("envelope vector has `signing`");
        let env = Envelope::from_json(json::parse(c.input.as_bytes()).unwrap())
            .unwrap_or_else(|e| panic!("{}: strict parse refused a seed envelope: {e}", c.name));
        assert_eq!(env.signing_bytes(), signing, "{}: signing bytes", c.name);
        assert_eq!(
            envelope::hmac_hex(c.hmac_key.as_bytes(), signing.as_bytes()),
            env.signature,
            "{}: the seed's signature is not the HMAC of the signing bytes",
            c.name
        );
        let key = Secret::new(c.hmac_key.as_bytes().to_vec());
        verify_signature(
            std::slice::from_ref(&key),
            signing.as_bytes(),
            &env.signature,
        )
        .unwrap_or_else(|e| panic!("{}: verify_signature: {e}", c.name));
        // Also through the envelope's own bytes, with a rotation key in front.
        let other = Secret::new(b"some-other-key-that-does-not-match".to_vec());
        verify_signature(
            &[other.clone(), key.clone()],
            env.signing_bytes().as_bytes(),
            &env.signature,
        )
        .unwrap_or_else(|e| panic!("{}: verify_signature with two keys: {e}", c.name));
        assert!(
            verify_signature(
                std::slice::from_ref(&other),
                signing.as_bytes(),
                &env.signature
            )
            .is_err(),
            "{}: a wrong key verified",
            c.name
        );
        let mut flipped = env.signature.clone().into_bytes();
        flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
        assert!(
            verify_signature(
                std::slice::from_ref(&key),
                signing.as_bytes(),
                std::str::from_utf8(&flipped).unwrap()
            )
            .is_err(),
            "{}: a tampered signature verified",
            c.name
        );

        // mcpq's client signs the same fields into the same bytes as the seed's client.
        let resigned = envelope::sign_envelope(
            envelope::Unsigned {
                client_id: &env.client_id.0,
                server_id: &env.server_id,
                tool: &env.tool,
                args: env.args.clone(),
                ts_ms: env.ts_ms,
                request_id: env.request_id.clone(),
                nonce: env.nonce.clone(),
            },
            c.hmac_key.as_bytes(),
        );
        assert_eq!(
            Json::Object(resigned).to_canonical(),
            c.canonical,
            "{}: mcpq's sign_envelope differs from the seed's MCPClient",
            c.name
        );
    }
}

#[test]
fn seed_responses_verify() {
    let responses = of_kind("response");
    assert!(
        responses.len() >= 3,
        "only {} response vectors",
        responses.len()
    );
    for c in responses {
        let unsigned = c
            .unsigned
            .as_deref()
            .expect("response vector has `unsigned`");
        let key = c.hmac_key.as_bytes();
        for body in [&c.input, &c.canonical] {
            let v = envelope::verify_response(body.as_bytes(), key)
                .unwrap_or_else(|e| panic!("{}: verify_response: {e}", c.name));
            assert_eq!(v.ok, v.status != Status::Error, "{}", c.name);
        }
        assert!(
            envelope::verify_response(c.input.as_bytes(), b"not-the-server-key").is_err(),
            "{}: verified with a wrong key",
            c.name
        );
        let v = envelope::verify_response(c.input.as_bytes(), key).unwrap();
        assert_eq!(
            envelope::hmac_hex(key, unsigned.as_bytes()),
            json::parse(c.canonical.as_bytes())
                .unwrap()
                .as_object()
                .and_then(|o| o.get("signature"))
                .and_then(Json::as_str)
                .unwrap(),
            "{}",
            c.name
        );

        // mcpq's server signs the same response into the same bytes as the seed's server.
        let resp = Response {
            request_id: v.request_id.clone(),
            ts_ms: v.ts_ms,
            server_id: v.server_id.clone(),
            status: v.status,
            result: v.result.clone(),
            error: v.error.clone(),
        };
        let body = resp.sign(key);
        if body != c.canonical {
            panic!(
                "{}: Response::sign differs from the seed's server: {}",
                c.name,
                first_difference(&c.canonical, &body)
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Random semantics-preserving re-encodings of every vector.
// ---------------------------------------------------------------------------

fn ws(rng: &mut StdRng, out: &mut String) {
    while rng.gen_bool(0.3) {
        out.push(*[' ', '\t', '\n', '\r'].choose(rng).unwrap());
    }
}

fn push_u_escape(unit: u16, rng: &mut StdRng, out: &mut String) {
    if rng.gen_bool(0.5) {
        out.push_str(&format!("\\u{unit:04x}"));
    } else {
        out.push_str(&format!("\\u{unit:04X}"));
    }
}

/// A JSON string literal for `s`, escaping a random subset of its characters
/// (`\uXXXX` with surrogate pairs beyond the BMP, short escapes, `\/`).
fn encode_str(s: &str, rng: &mut StdRng, out: &mut String) {
    let p_escape = *[0.0, 0.1, 0.5, 1.0].choose(rng).unwrap();
    out.push('"');
    for ch in s.chars() {
        let must = ch == '"' || ch == '\\' || (ch as u32) < 0x20;
        if !must && !rng.gen_bool(p_escape) {
            out.push(ch);
            continue;
        }
        let short = match ch {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '/' => Some("\\/"),
            '\u{8}' => Some("\\b"),
            '\u{c}' => Some("\\f"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            _ => None,
        };
        match short {
            Some(esc) if rng.gen_bool(0.5) => out.push_str(esc),
            _ => {
                let mut units = [0u16; 2];
                for u in ch.encode_utf16(&mut units) {
                    push_u_escape(*u, rng, out);
                }
            }
        }
    }
    out.push('"');
}

/// A random JSON spelling of the finite, non-zero-or-zero float `f` with exactly its
/// decimal value: the shortest digits, shifted, zero-padded, with any exponent style.
fn encode_float(f: f64, rng: &mut StdRng, out: &mut String) {
    if f.is_nan() {
        out.push_str("NaN");
        return;
    }
    if f.is_infinite() {
        out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" });
        return;
    }
    if f.is_sign_negative() {
        out.push('-');
    }
    // Rust's own shortest round-trip digits (independent of mcpq's formatter).
    let sci = format!("{:e}", f.abs());
    let (mant, exp) = sci.split_once('e').unwrap();
    let exp: i64 = exp.parse().unwrap();
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    if f == 0.0 {
        let zeros = "0".repeat(rng.gen_range(1..4));
        match rng.gen_range(0..3) {
            0 => out.push_str(&format!("0.{zeros}")),
            1 => out.push_str(&format!("0e{}", rng.gen_range(-5..5))),
            _ => out.push_str(&format!("0.{zeros}E+{}", rng.gen_range(0..400))),
        }
        return;
    }
    // value = M × 10^e with M the digits (plus padding zeros).
    let pad = rng.gen_range(0..3);
    let mantissa = format!("{digits}{}", "0".repeat(pad));
    let e = exp - (digits.len() as i64 - 1) - pad as i64;
    let n = mantissa.len();
    // Digits before the decimal point: 0 ("0.000ddd"), some, or all (exponent form).
    let before = rng.gen_range(0..=n);
    let lead = if before == 0 { rng.gen_range(0..3) } else { 0 };
    let (int_part, frac) = if before == 0 {
        ("0".to_string(), format!("{}{}", "0".repeat(lead), mantissa))
    } else {
        (
            mantissa[..before].to_string(),
            mantissa[before..].to_string(),
        )
    };
    let x = e + frac.len() as i64;
    out.push_str(&int_part);
    if !frac.is_empty() {
        out.push('.');
        out.push_str(&frac);
    }
    // A number without '.' must keep an exponent to stay a float.
    if x != 0 || frac.is_empty() || rng.gen_bool(0.3) {
        out.push(if rng.gen_bool(0.5) { 'e' } else { 'E' });
        if x < 0 {
            out.push('-');
        } else if rng.gen_bool(0.5) {
            out.push('+');
        }
        out.push_str(&"0".repeat(rng.gen_range(0..3)));
        out.push_str(&x.unsigned_abs().to_string());
    }
}

fn encode(v: &Json, rng: &mut StdRng, out: &mut String) {
    match v {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        // Python reads "-0" as the integer 0.
        Json::Int(0) if rng.gen_bool(0.3) => out.push_str("-0"),
        Json::Int(i) => out.push_str(&i.to_string()),
        Json::BigInt(s) => out.push_str(s),
        Json::Float(f) => encode_float(*f, rng, out),
        Json::Str(s) => encode_str(s, rng, out),
        Json::Array(items) => {
            out.push('[');
            ws(rng, out);
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    ws(rng, out);
                    out.push(',');
                    ws(rng, out);
                }
                encode(item, rng, out);
            }
            ws(rng, out);
            out.push(']');
        }
        Json::Object(o) => {
            let mut members: Vec<(&str, &Json)> = o.iter().collect();
            members.shuffle(rng);
            out.push('{');
            ws(rng, out);
            for (i, (k, item)) in members.into_iter().enumerate() {
                if i > 0 {
                    ws(rng, out);
                    out.push(',');
                    ws(rng, out);
                }
                encode_str(k, rng, out);
                ws(rng, out);
                out.push(':');
                ws(rng, out);
                encode(item, rng, out);
            }
            ws(rng, out);
            out.push('}');
        }
    }
}

fn reencode(input: &str, seed: u64) -> String {
    let mut rng = StdRng::seed_from_u64(seed);
    let tree = json::parse(input.as_bytes()).expect("vector input parses");
    let mut out = String::new();
    ws(&mut rng, &mut out);
    encode(&tree, &mut rng, &mut out);
    ws(&mut rng, &mut out);
    out
}

fn clip(s: &str) -> &str {
    &s[..s.floor_char_boundary(600)]
}

#[test]
fn reencoder_really_changes_the_text() {
    // Guard against a re-encoder that degenerates into the identity.
    let c = cases()
        .iter()
        .find(|c| c.name == "string/mixed")
        .expect("string/mixed");
    let variants: std::collections::HashSet<String> =
        (0..32).map(|s| reencode(&c.canonical, s)).collect();
    assert!(variants.len() > 16);
    assert!(variants
        .iter()
        .any(|v| v.contains("\\u") && v.contains("\\/")));
    assert!(variants
        .iter()
        .any(|v| v.contains("\\ud83d") || v.contains("\\uD83D")));
    let f = cases().iter().find(|c| c.name == "float/all").unwrap();
    let floats: std::collections::HashSet<String> =
        (0..32).map(|s| reencode(&f.canonical, s)).collect();
    assert!(floats.iter().any(|v| v.contains('E')));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    /// Every vector, re-encoded at random, still canonicalizes to CPython's bytes.
    #[test]
    fn reencoded_vectors_keep_cpython_canonical(seed in any::<u64>()) {
        for (i, c) in cases().iter().enumerate() {
            let text = reencode(&c.input, seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            match canonical_of(&text) {
                Ok(got) => prop_assert!(
                    got == c.canonical,
                    "{}: re-encoded input {:?} — {}",
                    c.name, clip(&text), first_difference(&c.canonical, &got)
                ),
                Err(e) => prop_assert!(false, "{}: re-encoded input {:?} does not parse: {}", c.name, clip(&text), e),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Random Rust-built trees round-trip through canonical form.
// ---------------------------------------------------------------------------

fn arb_float() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        any::<u64>().prop_map(f64::from_bits),
        prop::sample::select(vec![
            0.0,
            -0.0,
            1.0,
            0.1,
            1e-7,
            1e16,
            1e15,
            5e-324,
            f64::MAX,
            f64::MIN_POSITIVE,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            9_999_999_999_999_998.0,
            0.0001,
            0.00001,
        ]),
        (-1_000_000_000i64..1_000_000_000, -30i32..30).prop_map(|(m, e)| m as f64 * 10f64.powi(e)),
    ]
}

fn arb_string() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z\"\\\\/\\n\\t\\x{0}-\\x{1f}\\x{7f}\\x{80}é漢😀𝄞\\x{ffff}\\x{10ffff}]{0,12}",
    ]
}

fn arb_json() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        any::<i64>().prop_map(Json::Int),
        "-?[1-9][0-9]{19,60}".prop_map(Json::BigInt),
        arb_float().prop_map(Json::Float),
        arb_string().prop_map(Json::Str),
    ];
    leaf.prop_recursive(6, 96, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Json::Array),
            prop::collection::vec((arb_string(), inner), 0..8)
                .prop_map(|members| Json::Object(Object::from_pairs(members))),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    /// canonical(parse(canonical(x))) == canonical(x), and canonical text is ASCII.
    #[test]
    fn rust_trees_round_trip_through_canonical(x in arb_json()) {
        let once = x.to_canonical();
        prop_assert!(once.is_ascii(), "canonical text is not ASCII: {:?}", once);
        let again = canonical_of(&once);
        prop_assert_eq!(again, Ok(once));
    }

    /// Every finite float's canonical text reads back as the very same float.
    #[test]
    fn float_text_reads_back_exactly(bits in any::<u64>()) {
        let f = f64::from_bits(bits);
        let mut text = String::new();
        json::write_py_float(f, &mut text);
        if f.is_finite() {
            let back: f64 = text.parse().unwrap();
            prop_assert_eq!(back.to_bits(), f.to_bits(), "{} -> {}", f, text);
            // Python's repr always has a '.' or an exponent, so the value stays a float.
            prop_assert!(text.contains('.') || text.contains('e'), "{}", text);
        }
    }
}
