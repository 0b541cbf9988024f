//! Lowercase hex text of digests and MACs (signatures, audit digests, argument digests).
//!
//! The `hex` crate's `encode` builds its string a char at a time through an iterator, which
//! showed in profiles of the call path (every signed response, every audit record); this
//! writes through `hex::encode_to_slice` into one buffer. It must not know what the bytes
//! are.

/// `bytes` as lowercase hex.
pub fn lower(bytes: &[u8]) -> String {
    let mut buf = vec![0u8; bytes.len() * 2];
    // Cannot fail: the buffer is exactly twice the input.
    let _ = ::hex::encode_to_slice(bytes, &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn matches_the_hex_crate() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(super::lower(&bytes), ::hex::encode(&bytes));
        assert_eq!(super::lower(&[]), "");
    }
}
