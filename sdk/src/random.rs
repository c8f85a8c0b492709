//! Random numbers from the host (`wasi:random`), suitable for ids and keys.

use crate::host;

/// A random `u64`.
pub fn next_u64() -> u64 {
    host::random_u64()
}

/// `len` random bytes.
pub fn bytes(len: usize) -> Vec<u8> {
    host::random_bytes(len as u64)
}

/// Fills `buf` with random bytes.
pub fn fill(buf: &mut [u8]) {
    let bytes = bytes(buf.len());
    let n = bytes.len().min(buf.len());
    buf[..n].copy_from_slice(&bytes[..n]);
}

#[cfg(test)]
mod tests {
    #[test]
    fn random_varies() {
        assert_eq!(super::bytes(16).len(), 16);
        let mut buf = [0u8; 32];
        super::fill(&mut buf);
        assert!(buf.iter().any(|b| *b != 0));
        assert_ne!(super::next_u64(), super::next_u64());
    }
}
