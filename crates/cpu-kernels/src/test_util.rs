//! Inputs and comparisons shared by the kernels' tests.

/// Deterministic values in [-1, 1) without ties in practice.
pub fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// The top-left `h x w` corner of each of `big`'s planes of `plane`
/// pixels.
pub fn corners(big: &[f32], plane: [usize; 2], h: usize, w: usize) -> Vec<f32> {
    big.chunks(plane[0] * plane[1])
        .flat_map(|p| p.chunks(plane[1]).take(h).flat_map(|r| &r[..w]))
        .copied()
        .collect()
}

/// `got` equals `want` to 2e-5 of `want`'s largest magnitude (at least
/// 1): the Winograd kernels' tests, whose largest difference measured
/// 1.2e-5 (the 5x5 weight gradient; at most 4.3e-6 for the other
/// passes). The README quotes this bound.
pub fn close_to_scale(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!((a - b).abs() <= 2e-5 * scale, "{what} [{i}]: {a} vs {b}");
    }
}
