//! A convolution, its ReLU and a 2x2 max pooling as one pass on the CPU,
//! for a network's first `conv2d` layer (its input needs no gradient) when
//! it has few taps (input channels x kernel rows x kernel columns).
//!
//! The unfused path writes the whole convolution output (11 MiB per batch of
//! 128 for the Fashion-MNIST CNN's first layer), reads it back to pool it,
//! and in the backward pass writes the same amount again as the pooling's
//! input gradient, which the weight gradient then reads through an im2col
//! GEMM whose inner dimension is only 9. Here:
//!
//! - the forward pass is a direct convolution over input rows split into
//!   their even and odd columns ([`Padded`]): the four convolution outputs
//!   of 16 neighbouring pooling windows are four vectors, pooled and
//!   rectified in registers, and only the pooled values and the argmax
//!   bytes of [`crate::pool`] (with its tie, NaN and ReLU rules) are
//!   written;
//! - the backward pass needs only those bytes: a pooled output's gradient
//!   reaches the one convolution output its maximum came from, so the
//!   weight gradient sums `grad x input patch` over the pooled outputs,
//!   a quarter of the positions, without ever forming the full-size
//!   gradient.
//!
//! Sums run in a fixed order whatever the thread count (a product and an
//! addition each, never a fused multiply-add; images in fixed groups), and
//! the AVX-512 kernels give the portable loops' bits.

use rayon::prelude::*;

use crate::geometry::Geometry;
use crate::par::{par_fill, zeroed};
use crate::pool::NO_GRADIENT;

/// Columns per vector step: every row is computed in whole groups of this many.
const LANES: usize = 16;

/// The most taps (input channels x kernel area) the direct convolution
/// takes; wider layers are faster as im2col + GEMM.
pub const MAX_TAPS: usize = 64;

/// Images per task of the backward pass: fixed, so that the partial sums
/// and their order do not depend on the thread count.
const IMAGES_PER_TASK: usize = 8;

/// Whether the kernels run on vectors here (AVX-512). Elsewhere the fused
/// operation is not offered (the portable loops compute the same values but
/// are no faster than the separate convolution and pooling), and the
/// network runs the convolution and the pooling separately.
pub fn vectorized() -> bool {
    #[cfg(target_arch = "x86_64")]
    return avx512::available();
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Whether [`forward`] handles convolution `g` followed by a 2x2, stride-2
/// max pooling: stride 1, dilation 1, at most [`MAX_TAPS`] taps, and at
/// least one pooled output.
pub fn supported(g: &Geometry) -> bool {
    g.stride == [1, 1]
        && g.dilation == [1, 1]
        && g.cin * g.kh * g.kw <= MAX_TAPS
        && g.cin > 0
        && g.kh > 0
        && g.kw > 0
        && g.h + 2 * g.padding[0] > g.kh
        && g.w + 2 * g.padding[1] > g.kw
}

/// The pooled output size: half the convolution's, rounded down.
pub fn pooled(g: &Geometry) -> [usize; 2] {
    [g.out_h() / 2, g.out_w() / 2]
}

/// One image's input, zero-padded into the layout the kernels read: per
/// input channel, `rows` rows, each the padded row's even columns followed
/// by its odd columns (`half` floats each), the image at (`padding[0]`,
/// `padding[1]`) in padded coordinates. With the columns split by parity,
/// the even and the odd convolution outputs of [`LANES`] neighbouring
/// pooling windows each read [`LANES`] consecutive floats per tap, and the
/// pooling is one vector comparison per pair.
struct Padded {
    rows: usize,
    half: usize,
    /// Pooled columns computed per row: a whole number of [`LANES`].
    cols: usize,
}

impl Padded {
    fn new(g: &Geometry) -> Padded {
        let [ph, pw] = pooled(g);
        let cols = pw.div_ceil(LANES) * LANES;
        Padded {
            rows: 2 * ph + g.kh - 1,
            // Output column 2j + s reads input column 2j + s + kx, whose
            // half index is at most cols - 1 + kw / 2.
            half: cols + g.kw / 2,
            cols,
        }
    }

    fn row(&self) -> usize {
        2 * self.half
    }

    fn plane(&self) -> usize {
        self.rows * self.row()
    }

    /// Where padded column `c` of a row lives within it.
    fn col(&self, c: usize) -> usize {
        (c % 2) * self.half + c / 2
    }

    /// Per tap (input channel, kernel row, kernel column), where its even-
    /// and odd-output columns start relative to a window row pair's start
    /// (`2 py * row() + j0`), for the top row; the bottom row is one `row()`
    /// further. Checks that every window of an image of `len` floats reads
    /// inside it.
    #[cfg(target_arch = "x86_64")]
    fn offsets(&self, g: &Geometry, len: usize) -> Vec<[usize; 2]> {
        let mut offs = Vec::with_capacity(g.cin * g.kh * g.kw);
        for ci in 0..g.cin {
            for ky in 0..g.kh {
                for kx in 0..g.kw {
                    let base = ci * self.plane() + ky * self.row();
                    offs.push([base + self.col(kx), base + self.col(kx + 1)]);
                }
            }
        }
        let last_pair = (self.rows - g.kh - 1) * self.row() + self.cols - LANES;
        let reach = offs.iter().flatten().max().copied().unwrap_or(0) + self.row() + LANES;
        assert!(last_pair + reach <= len, "a window reads past the image");
        offs
    }

    /// Copy image `x` (`[cin, h, w]`) into `buf`.
    fn fill(&self, g: &Geometry, x: &[f32], buf: &mut Vec<f32>) {
        buf.clear();
        buf.resize(g.cin * self.plane(), 0.0);
        for (plane, dst) in x.chunks(g.h * g.w).zip(buf.chunks_mut(self.plane())) {
            for (y, row) in plane.chunks(g.w).enumerate() {
                let r = y + g.padding[0];
                if r >= self.rows {
                    break;
                }
                let line = &mut dst[r * self.row()..][..self.row()];
                for (x, &v) in row.iter().enumerate() {
                    let c = x + g.padding[1];
                    // Columns past the last computed window feed nothing.
                    if c / 2 >= self.half {
                        break;
                    }
                    line[self.col(c)] = v;
                }
            }
        }
    }

    /// The [`LANES`] floats that tap column `k` reads for the windows from
    /// pooled column `j0` on: padded columns `2 (j0 + l) + k`.
    #[inline(always)]
    fn taps<'a>(&self, line: &'a [f32], j0: usize, k: usize) -> &'a [f32; LANES] {
        let start = self.col(2 * j0 + k);
        let Some(v) = line
            .get(start..start + LANES)
            .and_then(|s| s.try_into().ok())
        else {
            unreachable!("half covers every window's taps")
        };
        v
    }
}

/// Convolution, bias, 2x2 max pooling and ReLU: `[batch, cout, ph, pw]`
/// (see [`pooled`]) and, per output, the argmax byte of
/// [`super::pool::max_forward`] with `relu` (its window position, or
/// [`NO_GRADIENT`] where the ReLU cut the maximum off).
pub fn forward(
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    g: &Geometry,
) -> (Vec<f32>, Vec<u8>) {
    forward_with(x, weight, bias, g, forward_image)
}

/// One image's forward pass: [`forward_image`] or [`forward_portable`].
type ForwardImage = fn(&Geometry, &Padded, &[f32], &[f32], Option<&[f32]>, &mut [f32], &mut [u8]);
/// One image's backward pass: [`backward_image`] or [`backward_portable`].
type BackwardImage = fn(&Geometry, &Padded, &[f32], &[f32], &[u8], &mut [[f32; LANES]]);

/// [`forward`] with `image` for each image (the tests run the portable
/// loops through it on any CPU).
fn forward_with(
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    g: &Geometry,
    image: ForwardImage,
) -> (Vec<f32>, Vec<u8>) {
    assert!(supported(g), "unsupported fused convolution {g:?}");
    assert_eq!(x.len(), g.batch * g.cin * g.h * g.w);
    assert_eq!(weight.len(), g.cout * g.cin * g.kh * g.kw);
    let [ph, pw] = pooled(g);
    let per_image = g.cout * ph * pw;
    let layout = Padded::new(g);
    let mut arg = zeroed(g.batch * per_image);
    let out = par_fill(
        g.batch * per_image,
        per_image,
        arg.par_chunks_mut(per_image)
            .zip(x.par_chunks(g.cin * g.h * g.w)),
        Vec::new,
        |input, out, (arg, xi)| {
            layout.fill(g, xi, input);
            image(g, &layout, input, weight, bias, out, arg);
        },
    );
    (out, arg)
}

/// `b` replaces the running maximum `a` when larger, or when NaN (the rule
/// of [`super::pool::max_forward`]).
#[inline(always)]
fn wins(b: f32, a: f32) -> bool {
    b > a || b.is_nan()
}

/// `a += w * v`, lane by lane (a product and a sum: no fused multiply-add).
#[inline(always)]
fn axpy(a: &mut [f32; LANES], w: f32, v: &[f32; LANES]) {
    for (a, v) in a.iter_mut().zip(v) {
        *a += w * *v;
    }
}

/// Every output channel of one image, [`LANES`] pooling windows at a time:
/// the four convolution outputs of each window (top even, top odd, bottom
/// even, bottom odd column) as four vectors, then pooled and rectified
/// lane by lane into `out` and `arg` (`[cout, ph, pw]`).
fn forward_portable(
    g: &Geometry,
    layout: &Padded,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
    arg: &mut [u8],
) {
    let [ph, pw] = pooled(g);
    let taps = g.cin * g.kh * g.kw;
    for (co, (o_plane, a_plane)) in out
        .chunks_mut(ph * pw)
        .zip(arg.chunks_mut(ph * pw))
        .enumerate()
    {
        let w = &weight[co * taps..(co + 1) * taps];
        let b = bias.map_or(0.0, |b| b[co]);
        for (py, (o_row, a_row)) in o_plane
            .chunks_mut(pw)
            .zip(a_plane.chunks_mut(pw))
            .enumerate()
        {
            for j0 in (0..layout.cols).step_by(LANES) {
                let (mut a0, mut a1, mut a2, mut a3) =
                    ([b; LANES], [b; LANES], [b; LANES], [b; LANES]);
                let mut t = 0;
                for ci in 0..g.cin {
                    let plane = &input[ci * layout.plane()..][..layout.plane()];
                    for ky in 0..g.kh {
                        let top = &plane[(2 * py + ky) * layout.row()..][..layout.row()];
                        let bottom = &plane[(2 * py + 1 + ky) * layout.row()..][..layout.row()];
                        for kx in 0..g.kw {
                            let wv = w[t];
                            t += 1;
                            axpy(&mut a0, wv, layout.taps(top, j0, kx));
                            axpy(&mut a1, wv, layout.taps(top, j0, kx + 1));
                            axpy(&mut a2, wv, layout.taps(bottom, j0, kx));
                            axpy(&mut a3, wv, layout.taps(bottom, j0, kx + 1));
                        }
                    }
                }
                let mut m = [0.0f32; LANES];
                let mut at = [0u8; LANES];
                for l in 0..LANES {
                    let [a, b, c, d] = [a0[l], a1[l], a2[l], a3[l]];
                    let (top, top_at) = if wins(b, a) { (b, 1) } else { (a, 0) };
                    let (bottom, bottom_at) = if wins(d, c) { (d, 3) } else { (c, 2) };
                    let (v, k) = if wins(bottom, top) {
                        (bottom, bottom_at)
                    } else {
                        (top, top_at)
                    };
                    // The ReLU: NaN and values not above 0 become 0, no gradient.
                    let cut = v.is_nan() || v <= 0.0;
                    m[l] = if cut { 0.0 } else { v };
                    at[l] = if cut { NO_GRADIENT } else { k };
                }
                let n = LANES.min(pw - j0);
                o_row[j0..j0 + n].copy_from_slice(&m[..n]);
                a_row[j0..j0 + n].copy_from_slice(&at[..n]);
            }
        }
    }
}

/// Weight and bias gradients (`[cout, cin, kh, kw]`, `[cout]`) of
/// [`forward`] from the pooled outputs' gradient `grad` and the argmax
/// bytes `arg` it returned.
pub fn backward(x: &[f32], grad: &[f32], arg: &[u8], g: &Geometry) -> (Vec<f32>, Vec<f32>) {
    backward_with(x, grad, arg, g, backward_image)
}

/// [`backward`] with `image` for each image.
fn backward_with(
    x: &[f32],
    grad: &[f32],
    arg: &[u8],
    g: &Geometry,
    image: BackwardImage,
) -> (Vec<f32>, Vec<f32>) {
    assert!(supported(g), "unsupported fused convolution {g:?}");
    let [ph, pw] = pooled(g);
    let per_image = g.cout * ph * pw;
    let in_len = g.cin * g.h * g.w;
    assert_eq!(x.len(), g.batch * in_len);
    assert_eq!(grad.len(), g.batch * per_image);
    assert_eq!(arg.len(), g.batch * per_image);
    let taps = g.cin * g.kh * g.kw;
    let layout = Padded::new(g);
    let partials: Vec<Vec<f32>> = x
        .par_chunks(IMAGES_PER_TASK * in_len)
        .zip(grad.par_chunks(IMAGES_PER_TASK * per_image))
        .zip(arg.par_chunks(IMAGES_PER_TASK * per_image))
        .map(|((xs, gs), args)| {
            // Per output channel, lane sums: `taps` for the weights, then the bias.
            let mut lanes = vec![[0.0f32; LANES]; g.cout * (taps + 1)];
            let mut input = Vec::new();
            for ((xi, gi), ai) in xs
                .chunks(in_len)
                .zip(gs.chunks(per_image))
                .zip(args.chunks(per_image))
            {
                layout.fill(g, xi, &mut input);
                image(g, &layout, &input, gi, ai, &mut lanes);
            }
            // Each sum's lanes, added in lane order.
            lanes.iter().map(|v| v.iter().sum::<f32>()).collect()
        })
        .collect();
    let mut total = vec![0.0f32; g.cout * (taps + 1)];
    for p in &partials {
        for (t, v) in total.iter_mut().zip(p) {
            *t += *v;
        }
    }
    let mut dw = Vec::with_capacity(g.cout * taps);
    let mut db = Vec::with_capacity(g.cout);
    for c in total.chunks(taps + 1) {
        dw.extend_from_slice(&c[..taps]);
        db.push(c[taps]);
    }
    (dw, db)
}

/// One image's contribution, added to the lane sums `lanes` (per output
/// channel, `taps` weight sums and the bias sum): each pooled output's
/// gradient goes to the one of its window's four convolution outputs that
/// won (none where the ReLU cut it off), then times the input patch of that
/// output.
fn backward_portable(
    g: &Geometry,
    layout: &Padded,
    input: &[f32],
    grad: &[f32],
    arg: &[u8],
    lanes: &mut [[f32; LANES]],
) {
    let [ph, pw] = pooled(g);
    let taps = g.cin * g.kh * g.kw;
    for ((gp, ap), acc) in grad
        .chunks(ph * pw)
        .zip(arg.chunks(ph * pw))
        .zip(lanes.chunks_mut(taps + 1))
    {
        let (dw, db) = acc.split_at_mut(taps);
        for (py, (g_row, a_row)) in gp.chunks(pw).zip(ap.chunks(pw)).enumerate() {
            for j0 in (0..layout.cols).step_by(LANES) {
                // The gradient of each window's four outputs (0 past the row's end).
                let mut q = [[0.0f32; LANES]; 4];
                let n = LANES.min(pw - j0);
                for l in 0..n {
                    let (gv, at) = (g_row[j0 + l], a_row[j0 + l]);
                    for (k, qk) in q.iter_mut().enumerate() {
                        qk[l] = if at as usize == k { gv } else { 0.0 };
                    }
                }
                for l in 0..LANES {
                    db[0][l] += ((q[0][l] + q[1][l]) + q[2][l]) + q[3][l];
                }
                let mut t = 0;
                for ci in 0..g.cin {
                    let plane = &input[ci * layout.plane()..][..layout.plane()];
                    for ky in 0..g.kh {
                        let top = &plane[(2 * py + ky) * layout.row()..][..layout.row()];
                        let bottom = &plane[(2 * py + 1 + ky) * layout.row()..][..layout.row()];
                        for kx in 0..g.kw {
                            let v = [
                                layout.taps(top, j0, kx),
                                layout.taps(top, j0, kx + 1),
                                layout.taps(bottom, j0, kx),
                                layout.taps(bottom, j0, kx + 1),
                            ];
                            let d = &mut dw[t];
                            t += 1;
                            for l in 0..LANES {
                                d[l] += ((q[0][l] * v[0][l] + q[1][l] * v[1][l])
                                    + q[2][l] * v[2][l])
                                    + q[3][l] * v[3][l];
                            }
                        }
                    }
                }
            }
        }
    }
}

/// One image's forward pass: AVX-512 where the CPU has it, else the
/// portable loop. Both compute the same products and sums in the same
/// order, so they give the same bits.
fn forward_image(
    g: &Geometry,
    layout: &Padded,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
    arg: &mut [u8],
) {
    #[cfg(target_arch = "x86_64")]
    if avx512::available() {
        // SAFETY: the CPU supports AVX-512F.
        return unsafe { avx512::forward(g, layout, input, weight, bias, out, arg) };
    }
    forward_portable(g, layout, input, weight, bias, out, arg)
}

/// One image's backward pass, as [`forward_image`] chooses.
fn backward_image(
    g: &Geometry,
    layout: &Padded,
    input: &[f32],
    grad: &[f32],
    arg: &[u8],
    lanes: &mut [[f32; LANES]],
) {
    #[cfg(target_arch = "x86_64")]
    if avx512::available() {
        // SAFETY: the CPU supports AVX-512F.
        return unsafe { avx512::backward(g, layout, input, grad, arg, lanes) };
    }
    backward_portable(g, layout, input, grad, arg, lanes)
}

/// The kernels with one AVX-512 register per [`LANES`] windows (products
/// and sums only, as the portable loops).
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;
    use std::sync::OnceLock;

    use super::*;

    pub fn available() -> bool {
        static ON: OnceLock<bool> = OnceLock::new();
        *ON.get_or_init(|| is_x86_feature_detected!("avx512f"))
    }

    #[inline(always)]
    unsafe fn load(v: &[f32; LANES]) -> __m512 {
        _mm512_loadu_ps(v.as_ptr())
    }

    /// `wins` of the portable loops, per lane: `b > a`, or `b` is NaN.
    #[inline(always)]
    unsafe fn wins(b: __m512, a: __m512) -> __mmask16 {
        _mm512_cmp_ps_mask::<_CMP_GT_OQ>(b, a) | _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(b, b)
    }

    /// # Safety
    /// The CPU must support AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn forward(
        g: &Geometry,
        layout: &Padded,
        input: &[f32],
        weight: &[f32],
        bias: Option<&[f32]>,
        out: &mut [f32],
        arg: &mut [u8],
    ) {
        let [ph, pw] = pooled(g);
        let taps = g.cin * g.kh * g.kw;
        let offs = layout.offsets(g, input.len());
        let (src, row) = (input.as_ptr(), layout.row());
        for (co, (o_plane, a_plane)) in out
            .chunks_mut(ph * pw)
            .zip(arg.chunks_mut(ph * pw))
            .enumerate()
        {
            let w = &weight[co * taps..(co + 1) * taps];
            let b = _mm512_set1_ps(bias.map_or(0.0, |b| b[co]));
            for (py, (o_row, a_row)) in o_plane
                .chunks_mut(pw)
                .zip(a_plane.chunks_mut(pw))
                .enumerate()
            {
                for j0 in (0..layout.cols).step_by(LANES) {
                    let (mut a0, mut a1, mut a2, mut a3) = (b, b, b, b);
                    let at = src.add(2 * py * row + j0);
                    for (&wt, &[even, odd]) in w.iter().zip(&offs) {
                        let wv = _mm512_set1_ps(wt);
                        // SAFETY: `offsets` checked that every window reads inside `input`.
                        let step = |a: __m512, i: usize| {
                            _mm512_add_ps(a, _mm512_mul_ps(wv, _mm512_loadu_ps(at.add(i))))
                        };
                        a0 = step(a0, even);
                        a1 = step(a1, odd);
                        a2 = step(a2, even + row);
                        a3 = step(a3, odd + row);
                    }
                    let m1 = wins(a1, a0);
                    let top = _mm512_mask_blend_ps(m1, a0, a1);
                    let m2 = wins(a3, a2);
                    let bottom = _mm512_mask_blend_ps(m2, a2, a3);
                    let m3 = wins(bottom, top);
                    let v = _mm512_mask_blend_ps(m3, top, bottom);
                    // Window position: 2 for the bottom row, + 1 for the odd column.
                    let row = _mm512_maskz_set1_epi32(m3, 2);
                    let col = _mm512_maskz_set1_epi32((m3 & m2) | (!m3 & m1), 1);
                    let at = _mm512_add_epi32(row, col);
                    // The ReLU: NaN and values not above 0 become 0, no gradient.
                    let cut = _mm512_cmp_ps_mask::<_CMP_NGT_UQ>(v, _mm512_setzero_ps());
                    let v = _mm512_maskz_mov_ps(!cut, v);
                    let at = _mm512_mask_set1_epi32(at, cut, NO_GRADIENT as i32);
                    let n = LANES.min(pw - j0);
                    let keep: __mmask16 = ((1u32 << n) - 1) as __mmask16;
                    _mm512_mask_storeu_ps(o_row[j0..].as_mut_ptr(), keep, v);
                    let mut bytes = [0u8; LANES];
                    _mm_storeu_si128(bytes.as_mut_ptr().cast(), _mm512_cvtepi32_epi8(at));
                    a_row[j0..j0 + n].copy_from_slice(&bytes[..n]);
                }
            }
        }
    }

    /// # Safety
    /// The CPU must support AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn backward(
        g: &Geometry,
        layout: &Padded,
        input: &[f32],
        grad: &[f32],
        arg: &[u8],
        lanes: &mut [[f32; LANES]],
    ) {
        let [ph, pw] = pooled(g);
        let taps = g.cin * g.kh * g.kw;
        let offs = layout.offsets(g, input.len());
        let (src, row) = (input.as_ptr(), layout.row());
        for ((gp, ap), acc) in grad
            .chunks(ph * pw)
            .zip(arg.chunks(ph * pw))
            .zip(lanes.chunks_mut(taps + 1))
        {
            let (dw, db) = acc.split_at_mut(taps);
            for (py, (g_row, a_row)) in gp.chunks(pw).zip(ap.chunks(pw)).enumerate() {
                for j0 in (0..layout.cols).step_by(LANES) {
                    let n = LANES.min(pw - j0);
                    let keep: __mmask16 = ((1u32 << n) - 1) as __mmask16;
                    let gv = _mm512_maskz_loadu_ps(keep, g_row[j0..].as_ptr());
                    let mut bytes = [NO_GRADIENT; LANES];
                    bytes[..n].copy_from_slice(&a_row[j0..j0 + n]);
                    let at = _mm512_cvtepu8_epi32(_mm_loadu_si128(bytes.as_ptr().cast()));
                    let q = |k: i32| {
                        let hit = _mm512_cmpeq_epi32_mask(at, _mm512_set1_epi32(k));
                        _mm512_maskz_mov_ps(hit, gv)
                    };
                    let (q0, q1, q2, q3) = (q(0), q(1), q(2), q(3));
                    let sum = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(q0, q1), q2), q3);
                    let d = &mut db[0];
                    _mm512_storeu_ps(d.as_mut_ptr(), _mm512_add_ps(load(d), sum));
                    let at = src.add(2 * py * row + j0);
                    // SAFETY: `offsets` checked that every window reads inside `input`.
                    let x = |i: usize| _mm512_loadu_ps(at.add(i));
                    for (d, &[even, odd]) in dw.iter_mut().zip(&offs) {
                        let p0 = _mm512_mul_ps(q0, x(even));
                        let p1 = _mm512_mul_ps(q1, x(odd));
                        let p2 = _mm512_mul_ps(q2, x(even + row));
                        let p3 = _mm512_mul_ps(q3, x(odd + row));
                        let s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(p0, p1), p2), p3);
                        _mm512_storeu_ps(d.as_mut_ptr(), _mm512_add_ps(load(d), s));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::PoolGeometry;
    use crate::test_util::values;
    use crate::{conv, pool};

    fn geometry(
        batch: usize,
        cin: usize,
        hw: [usize; 2],
        cout: usize,
        k: [usize; 2],
        pad: [usize; 2],
    ) -> Geometry {
        Geometry {
            batch,
            cin,
            h: hw[0],
            w: hw[1],
            cout,
            kh: k[0],
            kw: k[1],
            stride: [1, 1],
            padding: pad,
            dilation: [1, 1],
        }
    }

    /// The unfused path: convolution, then pooling with its ReLU.
    fn separate(
        x: &[f32],
        w: &[f32],
        b: &[f32],
        g: &Geometry,
    ) -> (Vec<f32>, Vec<u8>, PoolGeometry) {
        let conv = conv::forward(x, w, Some(b), false, g);
        let pg = PoolGeometry {
            planes: g.batch * g.cout,
            h: g.out_h(),
            w: g.out_w(),
            kh: 2,
            kw: 2,
            stride: [2, 2],
            padding: [0, 0],
        };
        let (out, arg) = pool::max_forward(&conv, &pg, true);
        (out, arg, pg)
    }

    fn close(a: &[f32], b: &[f32], tol: f32) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= tol * (1.0 + y.abs()),
                "element {i}: {x} vs {y}"
            );
        }
    }

    /// Batch, input channels, input size, output channels, kernel, padding.
    type Case = (usize, usize, [usize; 2], usize, [usize; 2], [usize; 2]);

    const GEOMETRIES: [Case; 6] = [
        // The Fashion-MNIST CNN's first layer.
        (3, 1, [28, 28], 32, [3, 3], [0, 0]),
        // RGB with `same` padding; odd sizes leave a row and a column unpooled.
        (2, 3, [13, 11], 5, [3, 3], [1, 1]),
        // Wider than one vector of windows (pw = 19) and a 5x5 kernel.
        (2, 2, [42, 13], 3, [5, 5], [2, 2]),
        // Even and non-square kernels.
        (1, 1, [9, 10], 4, [2, 2], [0, 0]),
        (2, 4, [8, 7], 2, [1, 3], [0, 1]),
        // The smallest image with one pooled output.
        (1, 1, [4, 4], 2, [3, 3], [0, 0]),
    ];

    #[test]
    fn fused_kernels_equal_convolution_then_relu_and_pooling() {
        // Whichever kernels this CPU runs (AVX-512 or the portable loops).
        fused_equals_unfused(forward_image, backward_image);
    }

    #[test]
    fn portable_loops_equal_convolution_then_relu_and_pooling() {
        // On every CPU, against the unfused operations (an independent
        // computation), not against the AVX-512 kernels.
        fused_equals_unfused(forward_portable, backward_portable);
    }

    fn fused_equals_unfused(fwd: ForwardImage, bwd: BackwardImage) {
        for (i, &(batch, cin, hw, cout, k, pad)) in GEOMETRIES.iter().enumerate() {
            let g = geometry(batch, cin, hw, cout, k, pad);
            assert!(supported(&g), "{g:?}");
            let x = values(batch * cin * hw[0] * hw[1], 1 + i as u64);
            let w = values(cout * cin * k[0] * k[1], 100 + i as u64);
            let b = values(cout, 200 + i as u64);
            let (out, arg) = forward_with(&x, &w, Some(&b), &g, fwd);
            let (want, want_arg, pg) = separate(&x, &w, &b, &g);
            assert_eq!((pooled(&g)[0], pooled(&g)[1]), (pg.out_h(), pg.out_w()));
            close(&out, &want, 1e-5);
            assert_eq!(arg, want_arg, "{g:?}");
            assert!(
                arg.contains(&NO_GRADIENT) && arg.iter().any(|a| *a < 4),
                "both cases occur"
            );

            let grad = values(out.len(), 300 + i as u64);
            let (dw, db) = backward_with(&x, &grad, &arg, &g, bwd);
            let full = pool::max_backward(&grad, &want_arg, &pg);
            let (want_dw, want_db) = conv::backward_weight(&x, &full, &g);
            close(&dw, &want_dw, 1e-4);
            close(&db, &want_db, 1e-4);
        }
    }

    #[test]
    fn vector_and_portable_kernels_give_the_same_bits() {
        #[cfg(target_arch = "x86_64")]
        let vector = avx512::available();
        #[cfg(not(target_arch = "x86_64"))]
        let vector = false;
        if !vector {
            // Both sides would be the portable loops: nothing to compare.
            println!("skipped: no AVX-512 on this CPU, so no vector kernels to compare");
            return;
        }
        for (i, &(batch, cin, hw, cout, k, pad)) in GEOMETRIES.iter().enumerate() {
            let g = geometry(batch, cin, hw, cout, k, pad);
            let layout = Padded::new(&g);
            let x = values(cin * hw[0] * hw[1], 7 + i as u64);
            let w = values(cout * cin * k[0] * k[1], 8 + i as u64);
            let b = values(cout, 9 + i as u64);
            let mut input = Vec::new();
            layout.fill(&g, &x, &mut input);
            let [ph, pw] = pooled(&g);
            let n = cout * ph * pw;
            let (mut o1, mut a1) = (vec![0.0; n], vec![0; n]);
            let (mut o2, mut a2) = (vec![0.0; n], vec![0; n]);
            forward_image(&g, &layout, &input, &w, Some(&b), &mut o1, &mut a1);
            forward_portable(&g, &layout, &input, &w, Some(&b), &mut o2, &mut a2);
            assert_eq!(a1, a2);
            assert_eq!(
                o1.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                o2.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
            let grad = values(n, 10 + i as u64);
            let taps = cin * k[0] * k[1];
            let mut l1 = vec![[0.0f32; LANES]; cout * (taps + 1)];
            let mut l2 = l1.clone();
            backward_image(&g, &layout, &input, &grad, &a1, &mut l1);
            backward_portable(&g, &layout, &input, &grad, &a1, &mut l2);
            let bits =
                |l: &[[f32; LANES]]| l.iter().flatten().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&l1), bits(&l2));
        }
    }

    #[test]
    fn the_relu_cuts_off_negative_and_nan_maxima() {
        // One 1x1 kernel of weight 1, no bias: the convolution is the image.
        let g = geometry(1, 1, [2, 6], 1, [1, 1], [0, 0]);
        let x = [
            -1.0,
            -2.0,
            0.0,
            -0.5,
            f32::NAN,
            3.0, //
            -3.0,
            -0.5,
            -1.0,
            0.0,
            1.0,
            2.0,
        ];
        let (out, arg) = forward(&x, &[1.0], None, &g);
        assert_eq!(out, [0.0, 0.0, 0.0]);
        // A window of negatives or zeros, and one holding a NaN, pass nothing back.
        assert_eq!(arg, [NO_GRADIENT; 3]);
        let (dw, db) = backward(&x, &[1.0, 1.0, 1.0], &arg, &g);
        assert_eq!(db, [0.0]);
        // As in the separate path's GEMM (and burn's convolution), a NaN in
        // the input meets a zero gradient and reaches the weight.
        assert!(dw[0].is_nan());

        let x = [
            1.0, 5.0, 2.0, 2.0, 0.5, 0.25, //
            3.0, 4.0, 7.0, 2.0, 0.75, 0.5,
        ];
        let (out, arg) = forward(&x, &[1.0], None, &g);
        assert_eq!(out, [5.0, 7.0, 0.75]);
        assert_eq!(arg, [1, 2, 2]);
        // dW = sum of gradient x winning input; db = sum of gradients.
        let (dw, db) = backward(&x, &[1.0, 2.0, 4.0], &arg, &g);
        assert_eq!((dw, db), (vec![5.0 + 14.0 + 3.0], vec![7.0]));
    }

    #[test]
    fn strides_dilations_and_wide_layers_are_refused() {
        let g = geometry(1, 1, [8, 8], 1, [3, 3], [0, 0]);
        assert!(supported(&g));
        assert!(!supported(&Geometry {
            stride: [2, 2],
            ..g
        }));
        assert!(!supported(&Geometry {
            dilation: [1, 2],
            ..g
        }));
        assert!(supported(&Geometry { cin: 7, ..g }));
        assert!(!supported(&Geometry { cin: 8, ..g }), "72 taps");
        assert!(
            !supported(&Geometry { h: 3, ..g }),
            "a 1-row convolution has no pooled row"
        );
    }
}
