//! Property tests of the canonical encoder against the parser and against CPython.
//!
//! * `parse(canonical(v)) == v` for generated trees: nested objects and arrays,
//!   strings with astral, control, separator and non-character code points, 64-bit
//!   and arbitrary-precision integers, every kind of float (NaN-aware, sign of zero kept).
//! * Canonical bytes equal CPython's `json.dumps(v, sort_keys=True, separators=(",", ":"))`
//!   (`ensure_ascii` left at its default) for generated values. The value reaches Python
//!   in a tagged form that mcpq's encoder never writes (strings as UTF-8 hex, floats as
//!   their IEEE bits, integers as decimal text, objects as pairs), so Python builds the
//!   same value independently and its `json.dumps` is the only judge of the bytes.
//!   One `python3` per test reads a batch of a few hundred values (one line each) and
//!   answers one line each; a mismatch is shrunk through the same process.
//!
//! Found here: floats exactly halfway between two shortest spellings, which CPython
//! writes with the even last digit (`float_ties_round_half_even_like_cpython`);
//! `arb_float` generates such values on purpose.
//!
//! Python: `<repo>/.venv/bin/python3` when present (as the other CPython tests), else
//! `python3` on PATH; only the standard library is used. `MCPQ_PROP_SEED=<u64>` replays a
//! CPython batch (the seed is printed with every failure).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use mcpq::json::{self, Json, Object, MAX_DEPTH};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

// ---------------------------------------------------------------------------
// Generators of values the parser can produce.
// ---------------------------------------------------------------------------

/// Code points where encoders go wrong: controls (short escapes and not), DEL, C1,
/// line/paragraph separators, BOM and non-characters, surrogate neighbours, astral.
const TRICKY: &str = "[a-z\"\\\\/ \\x{0}-\\x{1f}\\x{7f}\\x{80}-\\x{9f}\\x{a0}é\\x{2028}\\x{2029}\\x{d7ff}\\x{e000}\\x{feff}\\x{fffe}\\x{ffff}\\x{10000}😀𝄞\\x{10fffd}\\x{10ffff}漢]";

fn arb_string() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::string::string_regex(&format!("{TRICKY}{{0,12}}")).unwrap(),
        2 => any::<String>(),
        1 => prop::collection::vec(any::<char>(), 0..6).prop_map(|c| c.into_iter().collect()),
        // Long plain runs between escapes (the encoder copies runs).
        1 => "[ -~]{0,80}",
    ]
}

/// Keys drawn from a small alphabet collide and share prefixes, so sorting matters;
/// BMP-high against astral keys sort differently in UTF-16 than in code points.
fn arb_key() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => "[ab\\x{7f}é\\x{ffff}\\x{10000}]{0,3}",
        1 => arb_string(),
    ]
}

fn arb_int() -> impl Strategy<Value = Json> {
    prop_oneof![
        3 => any::<i64>().prop_map(Json::Int),
        1 => prop::sample::select(vec![0, 1, -1, i64::MAX, i64::MIN, i64::MAX - 1, i64::MIN + 1])
            .prop_map(Json::Int),
        // Beyond 64 bits, normalized as the parser keeps them.
        2 => "-?[1-9][0-9]{19,80}".prop_map(Json::BigInt),
        1 => prop::sample::select(vec![
            "9223372036854775808".to_string(),
            "-9223372036854775809".to_string(),
            "18446744073709551615".to_string(),
            "18446744073709551616".to_string(),
            "-18446744073709551616".to_string(),
            "9".repeat(4300),
            format!("-1{}", "0".repeat(4299)),
        ])
        .prop_map(Json::BigInt),
    ]
}

fn arb_float() -> impl Strategy<Value = f64> {
    prop_oneof![
        3 => any::<u64>().prop_map(f64::from_bits),
        2 => any::<f64>(),
        2 => prop::sample::select(vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.1,
            1e-7,
            1e-5,
            1e-4,
            1e15,
            1e16,
            1e17,
            9_007_199_254_740_993.0,
            9_999_999_999_999_998.0,
            123456789012345680.0,
            5e-324,
            -5e-324,
            2.225_073_858_507_201e-308,
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::MIN,
            f64::EPSILON,
            f64::NAN,
            -f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ]),
        // Decimal-looking values around the repr switch points (1e-4 and 1e16).
        2 => (-9_999_999_999i64..9_999_999_999, -25i32..25).prop_map(|(m, e)| m as f64 * 10f64.powi(e)),
        // Integral floats near 2**53, where Python's repr adds ".0".
        1 => (-(1i64 << 54)..(1i64 << 54)).prop_map(|i| i as f64),
        // Few fractional bits: many lie exactly halfway between two shortest spellings
        // (1125899906842624.25), where CPython picks the even last digit.
        2 => (-(1i64 << 53)..(1i64 << 53), 1i32..=26).prop_map(|(m, t)| m as f64 / 2f64.powi(t)),
    ]
}

fn arb_leaf(floats: BoxedStrategy<f64>) -> impl Strategy<Value = Json> {
    prop_oneof![
        1 => Just(Json::Null),
        1 => any::<bool>().prop_map(Json::Bool),
        3 => arb_int(),
        3 => floats.prop_map(Json::Float),
        4 => arb_string().prop_map(Json::Str),
    ]
}

fn arb_json() -> impl Strategy<Value = Json> {
    arb_json_with(arb_float().boxed())
}

fn arb_json_with(floats: BoxedStrategy<f64>) -> impl Strategy<Value = Json> {
    arb_leaf(floats).prop_recursive(8, 128, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Json::Array),
            prop::collection::vec((arb_key(), inner), 0..8)
                .prop_map(|members| Json::Object(Object::from_pairs(members))),
        ]
    })
}

/// Structural equality that treats every NaN as equal to every NaN and tells `0.0`
/// from `-0.0` (the opposite of `Json`'s derived `PartialEq` on both counts).
fn same(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Float(x), Json::Float(y)) => {
            (x.is_nan() && y.is_nan()) || x.to_bits() == y.to_bits()
        }
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
        }
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y.iter())
                    .all(|((kx, vx), (ky, vy))| kx == ky && same(vx, vy))
        }
        _ => a == b,
    }
}

// ---------------------------------------------------------------------------
// parse(canonical(v)) == v
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn parse_of_canonical_is_the_value(v in arb_json()) {
        let text = v.to_canonical();
        prop_assert!(text.is_ascii(), "canonical text is not ASCII: {:?}", text);
        let back = json::parse(text.as_bytes());
        prop_assert!(back.is_ok(), "canonical text {:?} does not parse: {:?}", text, back);
        let back = back.unwrap();
        prop_assert!(same(&back, &v), "parse(canonical(v)) != v\ncanonical: {:?}\nv:    {:?}\nback: {:?}", text, v, back);
        prop_assert_eq!(back.to_canonical(), text);
    }

    #[test]
    fn parse_of_canonical_float_is_the_float(f in arb_float()) {
        let text = Json::Float(f).to_canonical();
        let back = json::parse(text.as_bytes());
        prop_assert!(
            matches!(back, Ok(Json::Float(g)) if same(&Json::Float(f), &Json::Float(g))),
            "{:?} ({:#018x}) -> {:?} -> {:?}", f, f.to_bits(), text, back
        );
    }
}

#[test]
fn deepest_accepted_tree_round_trips() {
    let mut v = Json::Str("\u{10ffff}".into());
    for depth in 0..MAX_DEPTH {
        v = if depth % 2 == 0 {
            Json::Array(vec![v])
        } else {
            Json::Object(Object::from_pairs([("\u{0}".to_string(), v)]))
        };
    }
    let text = v.to_canonical();
    assert!(same(&json::parse(text.as_bytes()).unwrap(), &v));
}

// ---------------------------------------------------------------------------
// canonical(v) == CPython's json.dumps(v, sort_keys=True, separators=(",", ":"))
// ---------------------------------------------------------------------------

/// Rebuilds each tagged value and prints its canonical JSON, one line per line;
/// an exception is answered with a line starting with `!`.
const PY_CANONICAL: &str = r#"
import json, struct, sys

def dec(x):
    if isinstance(x, list):
        return [dec(i) for i in x]
    if isinstance(x, dict):
        (tag, val), = x.items()
        if tag == "i":
            return int(val)
        if tag == "f":
            return struct.unpack(">d", bytes.fromhex(val))[0]
        if tag == "s":
            return bytes.fromhex(val).decode("utf-8")
        if tag == "o":
            return {bytes.fromhex(k).decode("utf-8"): dec(v) for k, v in val}
        raise ValueError("bad tag " + tag)
    return x

for line in sys.stdin:
    try:
        out = json.dumps(dec(json.loads(line)), sort_keys=True, separators=(",", ":"))
    except Exception as e:
        out = "!" + repr(e)
    sys.stdout.write(out + "\n")
    sys.stdout.flush()
"#;

fn hex(bytes: &[u8], out: &mut String) {
    for b in bytes {
        out.push_str(&format!("{b:02x}"));
    }
}

/// The tagged form Python decodes (ASCII only; nothing in it comes from mcpq's encoder).
fn tagged(v: &Json, out: &mut String) {
    match v {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Int(i) => out.push_str(&format!("{{\"i\":\"{i}\"}}")),
        Json::BigInt(s) => out.push_str(&format!("{{\"i\":\"{s}\"}}")),
        Json::Float(f) => out.push_str(&format!("{{\"f\":\"{:016x}\"}}", f.to_bits())),
        Json::Str(s) => {
            out.push_str("{\"s\":\"");
            hex(s.as_bytes(), out);
            out.push_str("\"}");
        }
        Json::Array(items) => {
            out.push('[');
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                tagged(item, out);
            }
            out.push(']');
        }
        Json::Object(o) => {
            out.push_str("{\"o\":[");
            for (n, (k, item)) in o.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                out.push_str("[\"");
                hex(k.as_bytes(), out);
                out.push_str("\",");
                tagged(item, out);
                out.push(']');
            }
            out.push_str("]}");
        }
    }
}

fn python() -> String {
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python3");
    if std::path::Path::new(venv).is_file() {
        venv.to_string()
    } else {
        "python3".to_string()
    }
}

/// One CPython process answering canonical JSON for tagged values, line by line.
struct CPython {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl CPython {
    fn start() -> CPython {
        let mut child = Command::new(python())
            .args(["-c", PY_CANONICAL])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", python()));
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        CPython {
            child,
            stdin,
            stdout,
        }
    }

    fn read_line(stdout: &mut BufReader<ChildStdout>) -> String {
        let mut line = String::new();
        let n = stdout.read_line(&mut line).expect("read from python");
        assert!(n > 0, "python exited early");
        line.pop();
        line
    }

    /// Sends every value, then reads every answer (a writer thread keeps the pipes flowing).
    fn batch(&mut self, values: &[Json]) -> Vec<String> {
        let CPython { stdin, stdout, .. } = self;
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut w = std::io::BufWriter::new(&mut *stdin);
                for v in values {
                    let mut line = String::new();
                    tagged(v, &mut line);
                    line.push('\n');
                    w.write_all(line.as_bytes()).expect("write to python");
                }
                w.flush().expect("flush to python");
            });
            (0..values.len()).map(|_| Self::read_line(stdout)).collect()
        })
    }

    fn one(&mut self, v: &Json) -> String {
        self.batch(std::slice::from_ref(v)).pop().unwrap()
    }
}

impl Drop for CPython {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn first_difference(want: &str, got: &str) -> String {
    let at = want
        .bytes()
        .zip(got.bytes())
        .position(|(a, b)| a != b)
        .unwrap_or(want.len().min(got.len()));
    let window =
        |s: &str| s[at.saturating_sub(30).min(s.len())..(at + 30).min(s.len())].to_string();
    format!(
        "first difference at byte {at}: CPython …{}… / mcpq …{}…",
        window(want),
        window(got)
    )
}

/// Generates `n` values, has CPython encode them all in one batch, and on the first
/// mismatch shrinks it (each step asks the same process) and fails with the smallest.
fn agrees_with_cpython<S: Strategy<Value = Json>>(what: &str, strategy: S, n: usize) {
    let seed: u64 = std::env::var("MCPQ_PROP_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);

    let mut trees: Vec<_> = (0..n)
        .map(|_| strategy.new_tree(&mut runner).expect("generate a value"))
        .collect();
    let values: Vec<Json> = trees.iter().map(|t| t.current()).collect();
    let mut py = CPython::start();
    let answers = py.batch(&values);
    let bad = values
        .iter()
        .zip(&answers)
        .position(|(v, want)| v.to_canonical() != *want);
    let Some(bad) = bad else {
        return;
    };

    let differs = |py: &mut CPython, v: &Json| py.one(v) != v.to_canonical();
    let tree = &mut trees[bad];
    let mut smallest = tree.current();
    let mut steps = 0;
    if tree.simplify() {
        while steps < 4096 {
            steps += 1;
            let v = tree.current();
            if differs(&mut py, &v) {
                smallest = v;
                if !tree.simplify() {
                    break;
                }
            } else if !tree.complicate() {
                break;
            }
        }
    }
    let want = py.one(&smallest);
    let got = smallest.to_canonical();
    let mut line = String::new();
    tagged(&smallest, &mut line);
    panic!(
        "{what}: mcpq's canonical bytes differ from CPython's (MCPQ_PROP_SEED={seed}, value {bad} of {n}, \
         shrunk in {steps} steps)\nvalue:   {smallest:?}\ntagged:  {line}\nCPython: {want}\nmcpq:    {got}\n{}",
        first_difference(&want, &got)
    );
}

// ---------------------------------------------------------------------------
// Floats exactly halfway between two shortest spellings.
// ---------------------------------------------------------------------------

/// Shortest-repr ties (fuzz/artifacts-found/canonical-float-tie), with the bytes
/// CPython 3.11 writes for them.
const FLOAT_TIES: [(&str, &str); 6] = [
    ("1125899906842624.25", "1125899906842624.2"),
    ("1767225600123456.25", "1767225600123456.2"),
    ("-178999816617981.625", "-178999816617981.62"),
    ("-614668656278982.25", "-614668656278982.2"),
    ("-982867393803727.25", "-982867393803727.2"),
    // A tie on an odd digit: both round to the even neighbour up.
    ("1767225600123456.75", "1767225600123456.8"),
];

#[test]
fn float_ties_round_half_even_like_cpython() {
    let mut py = CPython::start();
    let mut wrong = Vec::new();
    for (input, cpython) in FLOAT_TIES {
        let v = json::parse(input.as_bytes()).unwrap();
        assert_eq!(py.one(&v), cpython, "CPython itself for {input}");
        let got = v.to_canonical();
        if got != cpython {
            wrong.push(format!("{input}: CPython {cpython}, mcpq {got}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn canonical_trees_match_cpython() {
    agrees_with_cpython("trees", arb_json(), 400);
}

#[test]
fn canonical_floats_match_cpython() {
    agrees_with_cpython("floats", arb_float().prop_map(Json::Float), 3000);
}

#[test]
fn canonical_strings_and_keys_match_cpython() {
    let strategy = prop::collection::vec((arb_key(), arb_string()), 0..6).prop_map(|members| {
        Json::Object(Object::from_pairs(
            members.into_iter().map(|(k, s)| (k, Json::Str(s))),
        ))
    });
    agrees_with_cpython("strings", strategy, 600);
}

#[test]
fn canonical_ints_match_cpython() {
    agrees_with_cpython("integers", arb_int(), 600);
}

#[test]
fn cpython_harness_catches_a_difference() {
    // Guard against a harness that agrees with anything: Python's answer for a
    // value must differ from mcpq's answer for a different value.
    let mut py = CPython::start();
    let v = Json::Object(Object::from_pairs([
        ("b".to_string(), Json::Float(1e16)),
        ("a".to_string(), Json::Str("\u{1d11e}\u{7f}\n".into())),
        (
            "c".to_string(),
            Json::BigInt("-18446744073709551616".into()),
        ),
    ]));
    let want = py.one(&v);
    assert_eq!(
        want,
        r#"{"a":"\ud834\udd1e\u007f\n","b":1e+16,"c":-18446744073709551616}"#
    );
    assert_eq!(v.to_canonical(), want);
    assert_ne!(py.one(&Json::Float(1e15)), "1e+15");
}

#[test]
fn cpython_signed_envelope_with_a_float_tie_verifies() {
    // Signed by CPython exactly as the seed's client signs (fuzz/artifacts-found/canonical-float-tie).
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fuzz/artifacts-found/canonical-float-tie/envelope-signed-by-cpython.json"
    );
    let body = std::fs::read(path).unwrap();
    let env = mcpq::envelope::Envelope::from_json(json::parse(&body).unwrap()).unwrap();
    let key = mcpq::config::Secret::new(b"fuzz-client-key".to_vec());
    let signed = env.signing_bytes();
    let verdict = mcpq::auth::verify_signature(
        std::slice::from_ref(&key),
        signed.as_bytes(),
        &env.signature,
    );
    assert!(
        verdict.is_ok(),
        "a CPython-signed envelope is refused ({verdict:?}); mcpq signs over {signed}"
    );
}
