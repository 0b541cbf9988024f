//! Fuzzes the strict JSON parser and the canonical encoder.
//!
//! Any input may be refused, but none may panic; and whenever the parser accepts an
//! input, its canonical text must be ASCII, must parse back to the very same value
//! (NaN-aware, sign of zero included), and must be a fixed point of parse∘canonical.

#![no_main]

use libfuzzer_sys::fuzz_target;
// The module under test (fuzz/src/lib.rs names its source file).
use mcpq_fuzz::json::{parse, MAX_DEPTH};

mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(v) = parse(data) else {
        return;
    };
    let canonical = v.to_canonical();
    assert!(
        canonical.is_ascii(),
        "canonical text is not ASCII: {canonical:?}"
    );
    let again = match parse(canonical.as_bytes()) {
        Ok(again) => again,
        Err(e) => panic!(
            "canonical text does not re-parse ({e}); depth limit {MAX_DEPTH}\n\
             input:     {:?}\ncanonical: {canonical:?}",
            String::from_utf8_lossy(data)
        ),
    };
    assert!(
        common::same(&v, &again),
        "parse(canonical(v)) != v\ninput:     {:?}\ncanonical: {canonical:?}\nv:     {v:?}\nagain: {again:?}",
        String::from_utf8_lossy(data)
    );
    let twice = again.to_canonical();
    assert_eq!(
        canonical,
        twice,
        "canonical form is not idempotent for input {:?}",
        String::from_utf8_lossy(data)
    );
});
