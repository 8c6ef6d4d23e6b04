//! The byte pattern the tools fill buffers with and verify transfers against: byte `i` of the
//! pattern of `seed` is a pure function of `(seed, i)` (splitmix64-style mixing), so any range
//! of it can be checked without keeping a copy, and different seeds give unrelated data.

/// Byte `i` of the pattern of `seed` (no short period; neighbouring seeds are unrelated).
pub fn pattern_byte(seed: u64, i: u64) -> u8 {
    let mut z = seed
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(i.wrapping_mul(0xbf58_476d_1ce4_e5b9));
    z = (z ^ (z >> 30)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) as u8
}

/// Fills `buf` with bytes `0..buf.len()` of the pattern of `seed`.
pub fn fill_pattern(buf: &mut [u8], seed: u64) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = pattern_byte(seed, i as u64);
    }
}

/// Fills `buf` with the bitwise inverse of the pattern of `seed`: every byte differs from the
/// pattern, so a destination prepared this way cannot pass a check it was not written for.
pub fn fill_pattern_inverted(buf: &mut [u8], seed: u64) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = !pattern_byte(seed, i as u64);
    }
}

/// The first `len` bytes of the pattern of `seed`.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0; len];
    fill_pattern(&mut v, seed);
    v
}

/// The index of the first byte of `buf` that differs from the pattern of `seed`.
pub fn pattern_mismatch(buf: &[u8], seed: u64) -> Option<usize> {
    (0..buf.len()).find(|&i| buf[i] != pattern_byte(seed, i as u64))
}

/// The index of the first byte where `a` and `b` differ, or the shorter length if one is a
/// prefix of the other; `None` if they are equal.
pub fn first_mismatch(a: &[u8], b: &[u8]) -> Option<usize> {
    match a.iter().zip(b).position(|(x, y)| x != y) {
        Some(i) => Some(i),
        None if a.len() != b.len() => Some(a.len().min(b.len())),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_seeded() {
        assert_eq!(pattern(4096, 9), pattern(4096, 9));
        assert_ne!(pattern(64, 9), pattern(64, 10), "seeds differ");
        assert_eq!(pattern(0, 1), Vec::<u8>::new());
        // Any sub-range can be checked byte by byte.
        let p = pattern(100, 7);
        assert!((0..100).all(|i| p[i] == pattern_byte(7, i as u64)));
        // Extreme seeds and offsets do not panic (wrapping arithmetic).
        let _ = pattern_byte(u64::MAX, u64::MAX);
    }

    #[test]
    fn not_trivially_periodic_nor_constant() {
        let p = pattern(4096, 1);
        assert!(p
            .chunks(256)
            .zip(p.chunks(256).skip(1))
            .all(|(a, b)| a != b));
        let mut seen = [false; 256];
        p.iter().for_each(|&b| seen[b as usize] = true);
        assert!(
            seen.iter().filter(|&&s| s).count() > 200,
            "byte values spread"
        );
    }

    #[test]
    fn mismatches() {
        let mut v = pattern(4096, 9);
        assert_eq!(pattern_mismatch(&v, 9), None);
        assert_eq!(pattern_mismatch(&v, 10), Some(0));
        v[4000] ^= 1;
        assert_eq!(pattern_mismatch(&v, 9), Some(4000));
        assert_eq!(pattern_mismatch(&[], 9), None);
        assert_eq!(first_mismatch(&[1, 2, 3], &[1, 2, 3]), None);
        assert_eq!(first_mismatch(&[1, 2, 3], &[1, 5, 3]), Some(1));
        assert_eq!(first_mismatch(&[1, 2], &[1, 2, 3]), Some(2));
        assert_eq!(first_mismatch(&[], &[]), None);
    }

    #[test]
    fn inverted_differs_everywhere() {
        let mut v = vec![0u8; 1000];
        fill_pattern_inverted(&mut v, 3);
        assert!((0..1000).all(|i| v[i] == !pattern_byte(3, i as u64)));
        assert_eq!(first_mismatch(&v, &pattern(1000, 3)), Some(0));
        let mut w = v.clone();
        fill_pattern(&mut w, 3);
        assert!(v.iter().zip(&w).all(|(a, b)| a != b));
    }
}
