//! Convolution with output pixels in the vector lanes: the forward pass and
//! both gradients as AVX-512 kernels that read the zero-padded image in
//! place, without im2col.
//!
//! With stride 1, the input pixel that tap `(c, i, j)` of output pixel `p`
//! reads lies at a fixed offset from `p` in the padded image, once output
//! pixels are numbered in the padded image's row width `wp` (`p = y * wp +
//! x`): `p + c * plane + i * wp + j`, `plane` the padded planes' stride
//! ([`spread`]). So sixteen neighbouring output pixels
//! read sixteen neighbouring inputs, one unaligned vector load, and the
//! convolution is a GEMM whose right-hand panel is the image itself. The
//! `wp - ow` extra columns of each output row are computed and dropped.
//!
//! - forward: a tile of `MR` output channels times `NV` vectors of pixels is
//!   summed in registers, each step one weight per channel (a broadcast)
//!   times `NV` vectors read at one tap's offset;
//! - input gradient: the forward pass over the output gradient padded by
//!   `k - 1 - padding`, with the weights flipped and transposed;
//! - weight gradient: the output channels are the lanes instead. Each
//!   image's output gradient is transposed to `[pixel][channel]`, and a
//!   tile of taps times channel vectors sums, pixel by pixel, the input
//!   value at each tap's offset (a broadcast) times the pixel's gradient;
//!   no sum crosses lanes.
//!
//! im2col + GEMM ([`super::gemm`]) copies every patch into a column
//! matrix that is `k` times the image; on the tutorial's large maps with
//! few channels (32 channels on 128x128) those copies, and the GEMM's
//! packing of them, cost more than the products. Stride 1 and dilation 1
//! only; [`supported`] says when.

use rayon::prelude::*;

use super::direct::{pad, vectorized};
use crate::geometry::{Geometry, Pass};
use crate::par::{images_per_task, par_fill};

/// Pixels per vector.
const LANES: usize = 16;
/// Output channels per forward tile.
pub(super) const MR: usize = 8;
/// Vectors of pixels per forward tile.
pub(super) const NV: usize = 3;
/// Pixels per forward tile.
pub(super) const TILE: usize = NV * LANES;
/// Output pixels (whole rows, at least one) per span of the forward pass:
/// the span's output (`[cout, span]`) stays in the core's cache until it is
/// copied out with the bias and ReLU.
const SPAN: usize = 4096;

/// Whether this CPU has the kernels and they take convolution `g` (forward
/// and weight gradient; the input gradient also needs [`transposable`]).
pub fn supported(g: &Geometry) -> bool {
    let (hp, wp) = (g.h + 2 * g.padding[0], g.w + 2 * g.padding[1]);
    vectorized()
        && g.stride == [1, 1]
        && g.dilation == [1, 1]
        && g.out_h() * g.out_w() > 0
        // Tap offsets are kept as u32.
        && (g.cin.max(g.cout) * spread(hp * wp) + TILE + wp) < u32::MAX as usize
}

/// Whether the input gradient is a forward pass here: a padding of at most
/// `k - 1`, so the output gradient is padded by `k - 1 - padding >= 0`.
pub fn transposable(g: &Geometry) -> bool {
    supported(g) && g.padding[0] < g.kh && g.padding[1] < g.kw && {
        let t = transposed(g);
        supported(&t) && t.out_h() == g.h && t.out_w() == g.w
    }
}

/// Whether [`super::forward`] and its siblings should run convolution `g`'s `pass` here
/// rather than as im2col + GEMM: the weights fit in the core's cache (at
/// most 1 MiB; there is no blocking over them), at least three quarters of
/// the computed columns are kept (`ow / wp`), and the pass fills its tiles.
/// Measured with `examples/conv_ops` (batch 32 and 128, 2 threads, fastest
/// of 5): on the tutorial's 3x3 layers from 32 channels up, each pass up
/// to 30 % faster than im2col + GEMM or equal within this VM's noise (the
/// three passes of the five layers: 753 against 839 ms). With a single
/// input channel (Fashion's first layer) the input gradient is a pass with
/// one output channel in tiles of 8, and weight gradients over few taps (3
/// and 1 input channels: 27 and 9 taps, in tiles of 12) ran 30-40 % slower.
pub fn pays(g: &Geometry, pass: Pass) -> bool {
    let wp = g.w + 2 * g.padding[1];
    let fits = g.cout * g.cin * g.kh * g.kw * 4 <= 1 << 20 && 4 * g.out_w() >= 3 * wp;
    fits && match pass {
        Pass::Forward => g.cout >= 2 * MR,
        Pass::Input => g.cin >= 2 * MR,
        Pass::Weight => g.cin * g.kh * g.kw >= 64,
    }
}

/// The convolution whose forward pass is `g`'s input gradient (padding at
/// most `k - 1`).
pub(super) fn transposed(g: &Geometry) -> Geometry {
    Geometry {
        cin: g.cout,
        h: g.out_h(),
        w: g.out_w(),
        cout: g.cin,
        padding: [g.kh - 1 - g.padding[0], g.kw - 1 - g.padding[1]],
        ..*g
    }
}

/// Sizes of one image's pass: the padded input and the output numbered in
/// the padded width.
#[derive(Debug, Clone, Copy)]
struct Frame {
    wp: usize,
    /// Floats from one padded plane to the next ([`spread`]).
    plane: usize,
    oh: usize,
    ow: usize,
}

/// A plane stride of at least `n` floats, whole cache lines, an odd number
/// of them and not one off a multiple of 64: the same row of consecutive
/// channels then falls in different sets of the L1 cache (64 sets of 64
/// bytes). With the plain `hp * wp` (130 x 130 floats: 4,225 lines, 2,064
/// bytes past a multiple of 4 KiB) the rows a tile reads fell into a few
/// sets and evicted each other (`examples/conv_ops`, 32 -> 32 channels on
/// 128x128: a tile loop at 130 GFLOP/s on one core, 145 spread).
pub(super) fn spread(n: usize) -> usize {
    let mut lines = n.div_ceil(LANES);
    while lines.is_multiple_of(2) || matches!(lines % 64, 1 | 63) {
        lines += 1;
    }
    lines * LANES
}

impl Frame {
    fn new(g: &Geometry) -> Frame {
        let (hp, wp) = (g.h + 2 * g.padding[0], g.w + 2 * g.padding[1]);
        Frame {
            wp,
            plane: spread(hp * wp),
            oh: g.out_h(),
            ow: g.out_w(),
        }
    }
    /// Floats of a padded image, with room for the last tile's reads past
    /// the last output pixel.
    fn padded_len(&self, channels: usize, kw: usize) -> usize {
        channels * self.plane + kw + TILE
    }
}

/// The offset of each `(channel, i, j)` tap from an output pixel.
fn taps(g: &Geometry, f: &Frame) -> Vec<u32> {
    (0..g.cin)
        .flat_map(|c| {
            (0..g.kh).flat_map(move |i| (0..g.kw).map(move |j| (c * f.plane + i * f.wp + j) as u32))
        })
        .collect()
}

/// `[cout, k]` weights as `[cout / MR][k][MR]`, zero rows past `cout`.
fn pack(weight: &[f32], cout: usize, k: usize) -> Vec<f32> {
    let blocks = cout.div_ceil(MR);
    let mut out = vec![0.0; blocks * k * MR];
    for (b, part) in out.chunks_exact_mut(k * MR).enumerate() {
        for (r, row) in part.chunks_exact_mut(MR).enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                let c = b * MR + j;
                if c < cout {
                    *v = weight[c * k + r];
                }
            }
        }
    }
    out
}

/// `[batch, cout, oh, ow]` from the top-left `h x w` corner of `x`'s
/// `[batch, cin]` planes of `plane` (`>= [h, w]`) pixels, plus the bias and,
/// where `relu`, `max(v, 0)` (NaN to 0, as burn's ReLU). Panics unless
/// [`supported`].
pub fn forward(
    x: &[f32],
    plane: [usize; 2],
    weight: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    g: &Geometry,
) -> Vec<f32> {
    assert!(supported(g), "the lane kernels do not take {g:?}");
    let k = g.cin * g.kh * g.kw;
    assert!(plane[0] >= g.h && plane[1] >= g.w);
    assert_eq!(x.len(), g.batch * g.cin * plane[0] * plane[1]);
    assert_eq!(weight.len(), g.cout * k);
    let f = Frame::new(g);
    let packed = pack(weight, g.cout, k);
    let taps = taps(g, &f);
    let len = f.padded_len(g.cin, g.kw);
    let out_len = g.cout * f.oh * f.ow;
    par_fill(
        g.batch * out_len,
        out_len,
        x.par_chunks(g.cin * plane[0] * plane[1]),
        || (Vec::new(), Vec::new()),
        |(padded, span), out, image| {
            pad(image, plane, g, f.wp, f.plane, len, padded);
            image_forward(padded, &packed, &taps, bias, relu, g, &f, span, out);
        },
    )
}

/// Input gradient `[batch, cin, h, w]` from the output gradient. Panics
/// unless [`transposable`].
pub fn backward_input(weight: &[f32], grad: &[f32], g: &Geometry) -> Vec<f32> {
    assert!(transposable(g), "the lane kernels do not take {g:?}");
    let t = transposed(g);
    forward(grad, [t.h, t.w], &flipped(weight, g), None, false, &t)
}

/// The filters of [`transposed`]`(g)`: `wt[ci][co][i][j] =
/// w[co][ci][kh-1-i][kw-1-j]`.
pub(super) fn flipped(weight: &[f32], g: &Geometry) -> Vec<f32> {
    let k = g.kh * g.kw;
    let mut wt = vec![0.0; weight.len()];
    for co in 0..g.cout {
        for ci in 0..g.cin {
            let src = &weight[(co * g.cin + ci) * k..][..k];
            let dst = &mut wt[(ci * g.cout + co) * k..][..k];
            // Row-major taps reversed = both axes flipped.
            for (d, s) in dst.iter_mut().zip(src.iter().rev()) {
                *d = *s;
            }
        }
    }
    wt
}

/// One image's forward pass, span by span of output rows.
#[allow(clippy::too_many_arguments)]
fn image_forward(
    padded: &[f32],
    packed: &[f32],
    taps: &[u32],
    bias: Option<&[f32]>,
    relu: bool,
    g: &Geometry,
    f: &Frame,
    span: &mut Vec<f32>,
    out: &mut [f32],
) {
    let rows = (SPAN / f.wp).clamp(1, f.oh);
    let ld = (rows * f.wp).next_multiple_of(TILE);
    let blocks = g.cout.div_ceil(MR);
    span.clear();
    span.resize(blocks * MR * ld, 0.0);
    let plane = f.oh * f.ow;
    for y0 in (0..f.oh).step_by(rows) {
        let y1 = (y0 + rows).min(f.oh);
        let n = ((y1 - y0) * f.wp).next_multiple_of(TILE);
        let p0 = y0 * f.wp;
        assert!(p0 + n + taps[taps.len() - 1] as usize <= padded.len());
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `supported` checked AVX-512F. Reads: tile starts `p0 + t
        // < p0 + n` plus a tap offset plus TILE stay inside `padded`
        // (checked above). Writes: block b's rows at `span[(b*MR + r)*ld +
        // t ..][..TILE]`, t + TILE <= n <= ld.
        unsafe {
            // Channel blocks outside: a block's weights stay in L1 while
            // its tiles slide along the span (the other order measured the
            // same within noise).
            for b in 0..blocks {
                for t in (0..n).step_by(TILE) {
                    avx512::forward_tile(
                        padded.as_ptr().add(p0 + t),
                        packed.as_ptr().add(b * taps.len() * MR),
                        taps,
                        span.as_mut_ptr().add(b * MR * ld + t),
                        ld,
                    );
                }
            }
        }
        for (c, o) in out.chunks_exact_mut(plane).enumerate() {
            let bv = bias.map_or(0.0, |b| b[c]);
            let src = &span[c * ld..];
            for y in y0..y1 {
                let s = &src[(y - y0) * f.wp..][..f.ow];
                let d = &mut o[y * f.ow..][..f.ow];
                if relu {
                    for (d, s) in d.iter_mut().zip(s) {
                        *d = (*s + bv).max(0.0);
                    }
                } else {
                    for (d, s) in d.iter_mut().zip(s) {
                        *d = *s + bv;
                    }
                }
            }
        }
    }
}

/// Weight and bias gradients: (`[cout, cin, kh, kw]`, `[cout]`). Panics
/// unless [`supported`].
///
/// Here the output channels are the lanes: each image's output gradient is
/// transposed to `[pixel][channel]` (channels padded to whole tiles), and a
/// tile of `taps` rows of `vectors` channel vectors sums, pixel by pixel,
/// one broadcast input value per tap times the pixel's gradient vectors.
/// The sums cross no lanes, so they are kept as `[k][channels]` rows for
/// the whole task and transposed once at the end.
pub fn backward_weight(x: &[f32], grad: &[f32], g: &Geometry) -> (Vec<f32>, Vec<f32>) {
    assert!(supported(g), "the lane kernels do not take {g:?}");
    let k = g.cin * g.kh * g.kw;
    let f = Frame::new(g);
    let (in_len, l) = (g.cin * g.h * g.w, f.oh * f.ow);
    assert_eq!(x.len(), g.batch * in_len);
    assert_eq!(grad.len(), g.batch * g.cout * l);
    let shape = WeightTile::new(g.cout);
    let width = shape.width();
    let channels = g.cout.next_multiple_of(width);
    let rows = k.next_multiple_of(shape.taps);
    let mut taps = taps(g, &f);
    taps.resize(rows, 0);
    let len = f.padded_len(g.cin, g.kw);
    let span = shape.span();
    let per_task = images_per_task(g.batch);
    let partials: Vec<(Vec<f32>, Vec<f32>)> = grad
        .par_chunks(per_task * g.cout * l)
        .zip(x.par_chunks(per_task * in_len))
        .map(|(gs, xs)| {
            // [rows][channels]
            let mut dwt = vec![0.0f32; rows * channels];
            let mut db = vec![0.0f32; g.cout];
            let (mut padded, mut dyt) = (Vec::new(), vec![0.0f32; l * channels]);
            for (gi, xi) in gs.chunks_exact(g.cout * l).zip(xs.chunks_exact(in_len)) {
                pad(xi, [g.h, g.w], g, f.wp, f.plane, len, &mut padded);
                // The last output pixel's corner plus the largest tap stays inside.
                let last = (f.oh - 1) * f.wp + f.ow - 1;
                assert!(last + (taps[k - 1] as usize) < padded.len());
                transpose(gi, l, &mut dyt, channels, &mut db);
                for q0 in (0..l).step_by(span) {
                    let q1 = (q0 + span).min(l);
                    // Runs of output pixels q0..q1 along their rows:
                    // (padded corner, length).
                    let mut runs = Vec::new();
                    let mut q = q0;
                    while q < q1 {
                        let (y, xx) = (q / f.ow, q % f.ow);
                        let n = (f.ow - xx).min(q1 - q);
                        runs.push(((y * f.wp + xx) as u32, n as u32));
                        q += n;
                    }
                    for c0 in (0..channels).step_by(width) {
                        for t0 in (0..rows).step_by(shape.taps) {
                            #[cfg(target_arch = "x86_64")]
                            // SAFETY: `supported` checked AVX-512F. Reads:
                            // `dyt` rows q0..q1 at columns c0..c0+width
                            // (c0 + width <= channels); `padded` at a tap
                            // offset plus a corner of an output pixel, inside
                            // (`padded_len`). Writes: `dwt` rows
                            // t0..t0+taps (<= rows), columns c0..c0+width.
                            unsafe {
                                avx512::weight_tile(
                                    shape,
                                    dyt.as_ptr().add(q0 * channels + c0),
                                    channels,
                                    padded.as_ptr(),
                                    &taps[t0..t0 + shape.taps],
                                    &runs,
                                    dwt.as_mut_ptr().add(t0 * channels + c0),
                                );
                            }
                        }
                    }
                }
            }
            (dwt, db)
        })
        .collect();
    let mut dw = vec![0.0f32; g.cout * k];
    let mut db = vec![0.0f32; g.cout];
    for (pw, pb) in partials {
        for (r, row) in pw.chunks_exact(channels).take(k).enumerate() {
            for (c, v) in row[..g.cout].iter().enumerate() {
                dw[c * k + r] += *v;
            }
        }
        for (a, b) in db.iter_mut().zip(&pb) {
            *a += *b;
        }
    }
    (dw, db)
}

/// `planes` (`[channels][l]`) into `rows` (`[l][width]`, `width >=
/// channels`; the columns from `channels` to the next multiple of 16 are
/// zeroed), and each plane's sum added to `sums`. Blocks of 16 channels x
/// 16 pixels are transposed in registers (scalar, pixel by pixel across
/// the planes, this took half as long as the weight-gradient tiles it
/// feeds on the tutorial's 32 -> 64 layer).
pub(super) fn transpose(
    planes: &[f32],
    l: usize,
    rows: &mut [f32],
    width: usize,
    sums: &mut [f32],
) {
    let channels = sums.len();
    assert!(width >= channels.next_multiple_of(LANES));
    assert_eq!(planes.len(), channels * l);
    assert!(rows.len() >= l * width);
    #[cfg(target_arch = "x86_64")]
    if vectorized() {
        // SAFETY: AVX-512F checked; reads stay inside `planes` (masked to
        // `channels` planes of `l` pixels), writes inside `rows` (pixels <
        // l, columns < channels rounded up to 16 <= width), asserted above.
        unsafe { avx512::transpose(planes, l, rows, width, sums) };
        return;
    }
    transpose_scalar(planes, l, rows, width, sums);
}

/// [`transpose`] one value at a time, sixteen pixels at a time so that the
/// block written stays in L1.
fn transpose_scalar(planes: &[f32], l: usize, rows: &mut [f32], width: usize, sums: &mut [f32]) {
    for q0 in (0..l).step_by(LANES) {
        let n = (l - q0).min(LANES);
        let block = &mut rows[q0 * width..][..n * width];
        for (c, (plane, s)) in planes.chunks_exact(l).zip(sums.iter_mut()).enumerate() {
            let src = &plane[q0..q0 + n];
            for (i, v) in src.iter().enumerate() {
                block[i * width + c] = *v;
            }
            *s += src.iter().sum::<f32>();
        }
        for row in block.chunks_exact_mut(width) {
            row[sums.len()..sums.len().next_multiple_of(LANES)].fill(0.0);
        }
    }
}

/// A weight-gradient tile: `taps` rows of `vectors` channel vectors, 24
/// sums either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::conv) struct WeightTile {
    vectors: usize,
    pub(super) taps: usize,
}

impl WeightTile {
    /// 4 vectors x 6 taps where the channels fill 64-channel tiles, else
    /// 2 x 12 (channels padded to 32).
    pub(super) fn new(cout: usize) -> WeightTile {
        match cout.is_multiple_of(4 * LANES) {
            true => WeightTile {
                vectors: 4,
                taps: 6,
            },
            false => WeightTile {
                vectors: 2,
                taps: 12,
            },
        }
    }
    pub(super) fn width(self) -> usize {
        self.vectors * LANES
    }
    /// Output pixels per span: their gradient rows for one tile of
    /// channels (32 KiB) stay in L1 while every tile of taps runs over
    /// them.
    pub(super) fn span(self) -> usize {
        8192 / self.width()
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod avx512 {
    use std::arch::x86_64::*;

    use super::{LANES, MR, NV};

    /// [`super::transpose`], 16 x 16 blocks in registers.
    ///
    /// # Safety
    /// AVX-512F; the sizes [`super::transpose`] asserts.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn transpose(
        planes: &[f32],
        l: usize,
        rows: &mut [f32],
        width: usize,
        sums: &mut [f32],
    ) {
        let channels = sums.len();
        for c0 in (0..channels).step_by(LANES) {
            let nc = (channels - c0).min(LANES);
            let mut total = _mm512_setzero_ps();
            for q0 in (0..l).step_by(LANES) {
                let n = (l - q0).min(LANES);
                let mask: __mmask16 = if n == LANES { 0xFFFF } else { (1 << n) - 1 };
                let mut r = [_mm512_setzero_ps(); LANES];
                for (i, r) in r.iter_mut().enumerate().take(nc) {
                    let src = planes.as_ptr().add((c0 + i) * l + q0);
                    *r = _mm512_maskz_loadu_ps(mask, src);
                }
                transpose16(&mut r);
                for (j, r) in r.iter().enumerate().take(n) {
                    total = _mm512_add_ps(total, *r);
                    _mm512_storeu_ps(rows.as_mut_ptr().add((q0 + j) * width + c0), *r);
                }
            }
            let mut t = [0.0f32; LANES];
            _mm512_storeu_ps(t.as_mut_ptr(), total);
            for (s, t) in sums[c0..c0 + nc].iter_mut().zip(t) {
                *s += t;
            }
        }
    }

    /// Rows `r[i]` become columns: `r[j][i]` after = `r[i][j]` before.
    #[inline(always)]
    unsafe fn transpose16(r: &mut [__m512; LANES]) {
        let mut t = [_mm512_setzero_ps(); LANES];
        for i in 0..8 {
            t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
            t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
        }
        for i in 0..4 {
            let b = 4 * i;
            r[b] = _mm512_shuffle_ps::<0x44>(t[b], t[b + 2]);
            r[b + 1] = _mm512_shuffle_ps::<0xEE>(t[b], t[b + 2]);
            r[b + 2] = _mm512_shuffle_ps::<0x44>(t[b + 1], t[b + 3]);
            r[b + 3] = _mm512_shuffle_ps::<0xEE>(t[b + 1], t[b + 3]);
        }
        for h in 0..2 {
            let b = 8 * h;
            for j in 0..4 {
                t[b + j] = _mm512_shuffle_f32x4::<0x88>(r[b + j], r[b + 4 + j]);
                t[b + 4 + j] = _mm512_shuffle_f32x4::<0xDD>(r[b + j], r[b + 4 + j]);
            }
        }
        for j in 0..8 {
            r[j] = _mm512_shuffle_f32x4::<0x88>(t[j], t[8 + j]);
            r[8 + j] = _mm512_shuffle_f32x4::<0xDD>(t[j], t[8 + j]);
        }
    }

    /// `out[r * ld + v * 16 ..][..16] = Σ_k w[k * MR + r] * x[taps[k] + v *
    /// 16 ..][..16]` for the `MR x NV` tile.
    ///
    /// # Safety
    /// AVX-512F; `x + taps[k]` readable for `NV * 16` floats for every
    /// `k`, `w` for `taps.len() * MR`, `out` writable for the tile's rows.
    #[target_feature(enable = "avx512f")]
    pub(in crate::conv) unsafe fn forward_tile(
        x: *const f32,
        w: *const f32,
        taps: &[u32],
        out: *mut f32,
        ld: usize,
    ) {
        let mut acc = [[_mm512_setzero_ps(); NV]; MR];
        let mut wr = w;
        for &t in taps {
            let src = x.add(t as usize);
            let mut xv = [_mm512_setzero_ps(); NV];
            for (v, r) in xv.iter_mut().enumerate() {
                *r = _mm512_loadu_ps(src.add(v * LANES));
            }
            for (r, row) in acc.iter_mut().enumerate() {
                let b = _mm512_set1_ps(*wr.add(r));
                for (a, xv) in row.iter_mut().zip(&xv) {
                    *a = _mm512_fmadd_ps(b, *xv, *a);
                }
            }
            wr = wr.add(MR);
        }
        for (r, row) in acc.iter().enumerate() {
            for (v, a) in row.iter().enumerate() {
                _mm512_storeu_ps(out.add(r * ld + v * LANES), *a);
            }
        }
    }

    /// `dwt[t * ld + c] += Σ_q x[taps[t] + corner(q)] * dyt[q * ld + c]`
    /// for the tile's taps and channels, `q` running over `runs` of output
    /// pixels (padded corner, count) in order from `dyt`'s first row.
    ///
    /// # Safety
    /// AVX-512F; `dyt` readable for the runs' pixels at row stride `ld`
    /// and the tile's channels, `x` at every tap plus corner, `dwt`
    /// writable for the tile.
    #[target_feature(enable = "avx512f")]
    pub(in crate::conv) unsafe fn weight_tile(
        shape: super::WeightTile,
        dyt: *const f32,
        ld: usize,
        x: *const f32,
        taps: &[u32],
        runs: &[(u32, u32)],
        dwt: *mut f32,
    ) {
        match (shape.vectors, shape.taps) {
            (4, 6) => tile::<4, 6>(dyt, ld, x, taps, runs, dwt),
            (2, 12) => tile::<2, 12>(dyt, ld, x, taps, runs, dwt),
            _ => unreachable!("no weight tile {shape:?}"),
        }
    }

    #[inline(always)]
    unsafe fn tile<const V: usize, const T: usize>(
        dyt: *const f32,
        ld: usize,
        x: *const f32,
        taps: &[u32],
        runs: &[(u32, u32)],
        dwt: *mut f32,
    ) {
        let mut acc = [[_mm512_setzero_ps(); V]; T];
        for (t, row) in acc.iter_mut().enumerate() {
            for (v, a) in row.iter_mut().enumerate() {
                *a = _mm512_loadu_ps(dwt.add(t * ld + v * LANES));
            }
        }
        let xs: [*const f32; T] = std::array::from_fn(|t| x.add(taps[t] as usize));
        let mut d = dyt;
        for &(corner, n) in runs {
            let corner = corner as usize;
            for i in 0..n as usize {
                let mut dv = [_mm512_setzero_ps(); V];
                for (v, r) in dv.iter_mut().enumerate() {
                    *r = _mm512_loadu_ps(d.add(v * LANES));
                }
                for (row, xp) in acc.iter_mut().zip(&xs) {
                    let b = _mm512_set1_ps(*xp.add(corner + i));
                    for (a, dv) in row.iter_mut().zip(&dv) {
                        *a = _mm512_fmadd_ps(b, *dv, *a);
                    }
                }
                d = d.add(ld);
            }
        }
        for (t, row) in acc.iter().enumerate() {
            for (v, a) in row.iter().enumerate() {
                _mm512_storeu_ps(dwt.add(t * ld + v * LANES), *a);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::gemm;
    use super::*;
    use crate::test_util::values;

    #[test]
    fn transpose_in_registers_equals_the_scalar_one() {
        for (channels, l, width) in [(19, 37, 32), (64, 16, 64), (3, 5, 16), (32, 3969, 32)] {
            let planes = values(channels * l, 7);
            let (mut a, mut b) = (vec![f32::NAN; l * width], vec![f32::NAN; l * width]);
            let (mut sa, mut sb) = (vec![1.0; channels], vec![1.0; channels]);
            transpose(&planes, l, &mut a, width, &mut sa);
            transpose_scalar(&planes, l, &mut b, width, &mut sb);
            let written = channels.next_multiple_of(LANES);
            for q in 0..l {
                for c in 0..written {
                    let want = if c < channels { planes[c * l + q] } else { 0.0 };
                    assert_eq!(a[q * width + c], want, "{channels} {l} [{q}][{c}]");
                    assert_eq!(b[q * width + c], want, "{channels} {l} [{q}][{c}]");
                }
            }
            for (x, y) in sa.iter().zip(&sb) {
                assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{x} vs {y}");
            }
        }
    }

    fn close(got: &[f32], want: &[f32], what: &str, g: &Geometry) {
        assert_eq!(got.len(), want.len(), "{what} {g:?}");
        for (i, (a, b)) in got.iter().zip(want).enumerate() {
            assert!(
                (a - b).abs() <= 1e-3 * (1.0 + b.abs()),
                "{what} {g:?} [{i}]: {a} vs {b}"
            );
        }
    }

    #[test]
    fn spread_planes_start_in_distinct_cache_sets() {
        for n in [1, 16, 17, 900, 130 * 130, 4096, 4096 * 16, 63 * 16] {
            let s = spread(n);
            assert!(s >= n && s < n + 8 * LANES, "{n} -> {s}");
            assert_eq!(s % LANES, 0);
            // The first line of each of 64 consecutive planes, mod the 64
            // sets of the L1 cache: all different.
            let sets: std::collections::HashSet<usize> =
                (0..64).map(|c| c * s / LANES % 64).collect();
            assert_eq!(sets.len(), 64, "{n} -> {s}");
            // Neighbouring planes are not in neighbouring sets either.
            assert!(!matches!(s / LANES % 64, 1 | 63));
        }
    }

    #[test]
    fn lane_kernels_equal_the_gemm_path() {
        if !vectorized() {
            println!("skipped: no AVX-512 on this CPU; the lane kernels are not used here");
            return;
        }
        let base = Geometry {
            batch: 3,
            cin: 5,
            h: 13,
            w: 11,
            cout: 16,
            kh: 3,
            kw: 3,
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
        };
        for g in [
            base,
            Geometry {
                cout: 32,
                padding: [1, 1],
                ..base
            },
            Geometry {
                cout: 13,
                kh: 5,
                kw: 2,
                padding: [2, 0],
                ..base
            },
            Geometry {
                cin: 1,
                h: 3,
                w: 3,
                cout: 3,
                ..base
            },
            Geometry {
                cin: 3,
                h: 70,
                w: 90,
                cout: 9,
                padding: [1, 1],
                ..base
            },
            // 64 channels: the weight gradient's 6 x 4 tile.
            Geometry {
                cin: 7,
                cout: 64,
                padding: [1, 1],
                ..base
            },
        ] {
            let x = values(g.batch * g.cin * g.h * g.w, 1);
            let w = values(g.cout * g.cin * g.kh * g.kw, 2);
            let b = values(g.cout, 3);
            for (bias, relu) in [(None, false), (Some(&b[..]), true)] {
                let got = forward(&x, [g.h, g.w], &w, bias, relu, &g);
                let want = gemm::forward_gemm(&x, &w, bias, relu, &g);
                close(&got, &want, "forward", &g);
            }
            let gr = values(g.batch * g.cout * g.out_h() * g.out_w(), 4);
            let (dw, db) = backward_weight(&x, &gr, &g);
            let (want_dw, want_db) = gemm::backward_weight_gemm(&x, &gr, &g);
            close(&dw, &want_dw, "dw", &g);
            close(&db, &want_db, "db", &g);
            assert!(transposable(&g));
            close(
                &backward_input(&w, &gr, &g),
                &gemm::backward_input_gemm(&w, &gr, &g),
                "dx",
                &g,
            );
        }
        assert!(!supported(&Geometry {
            stride: [2, 2],
            ..base
        }));
        assert!(!transposable(&Geometry {
            padding: [3, 0],
            ..base
        }));
    }
}
