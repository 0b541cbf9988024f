//! Helpers shared by the fuzz targets (each target includes this file as `mod common`).

use mcpq_fuzz::json::Json;

/// Structural equality that treats every NaN as equal to every NaN and tells `0.0`
/// from `-0.0` (`Json`'s derived `PartialEq` does the opposite on both counts, which
/// is right for floats but wrong for "did this value survive a round trip").
pub fn same(a: &Json, b: &Json) -> bool {
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
