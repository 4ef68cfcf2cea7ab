//! 5x5, stride-1 convolutions on small maps by Winograd's F(2x2, 5x5): 36
//! multiplications per 2x2 block of outputs and channel pair instead of
//! 100, for the forward pass and both gradients.
//!
//! The algebra is [`super::conv_winograd_cpu`]'s with 6x6 transforms
//! (interpolation points 0, 1, -1, 2, -2 and infinity, as Lavin's
//! `wincnn` generates them). The layout differs: the tutorial's 5x5 layers
//! run on 14x14 and 12x12 maps, 7 and 4 tiles wide, so rows of tiles padded
//! to whole vectors would waste most lanes. Here the tiles of all the
//! images a task holds are numbered densely, sixteen tiles' patches are
//! gathered into one vector per pixel of the 6x6 patch, and the outputs
//! are scattered back. Gathers and scatters are slow, but these layers
//! have 128 to 512 channels, so each transform is shared by hundreds of
//! multiply-adds in the GEMMs ([`super::conv_lanes_cpu`]'s tiles).
//!
//! The transforms scale values by up to 5 and 1/24, so results differ from
//! a direct sum by more rounding than the 3x3 case; in the tests below the
//! largest difference from im2col + GEMM was 1.2e-5 of the largest value
//! (the weight gradient; at most 4.3e-6 for the other passes), and the
//! tests require at most 2e-5.

use rayon::prelude::*;

use super::direct::{pad, vectorized};
use super::lanes::{transpose, transposed, WeightTile, MR, TILE};
use crate::geometry::Geometry;
use crate::geometry::Pass;
use crate::par::{images_per_task, par_fill};

/// Tiles per vector.
const LANES: usize = 16;
/// Side of a transformed tile.
const N: usize = 6;
/// Positions of a transformed tile.
const XI: usize = N * N;
/// Tiles per block: a block's transformed input (`36 x cin x BLOCK`) and
/// sums (`36 x cout x BLOCK`) pass through L3 once; one position's input
/// (`cin x BLOCK`, at most 192 KiB for 512 channels) stays in L2 while
/// every group of output channels runs its GEMM over it.
const BLOCK: usize = 2 * TILE;

/// `Bᵀ`: the input transform `V = Bᵀ d B`.
const BT: [[f32; N]; N] = [
    [4.0, 0.0, -5.0, 0.0, 1.0, 0.0],
    [0.0, -4.0, -4.0, 1.0, 1.0, 0.0],
    [0.0, 4.0, -4.0, -1.0, 1.0, 0.0],
    [0.0, -2.0, -1.0, 2.0, 1.0, 0.0],
    [0.0, 2.0, -1.0, -2.0, 1.0, 0.0],
    [0.0, 4.0, 0.0, -5.0, 0.0, 1.0],
];
/// `G`: the filter transform `U = G g Gᵀ`.
const G: [[f32; 5]; N] = [
    [1.0 / 4.0, 0.0, 0.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0, 1.0 / 3.0, 2.0 / 3.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0, -1.0 / 3.0, 2.0 / 3.0],
    [0.0, 0.0, 0.0, 0.0, 1.0],
];
/// `Aᵀ`: the output transform `Y = Aᵀ M A`.
const AT: [[f32; N]; 2] = [
    [1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
    [0.0, 1.0, -1.0, 2.0, -2.0, 1.0],
];

/// Whether this CPU has the kernels and they take convolution `g` (its
/// forward pass and weight gradient; the input gradient also needs
/// [`transposable`]).
pub fn supported(g: &Geometry) -> bool {
    vectorized()
        && [g.kh, g.kw] == [5, 5]
        && g.stride == [1, 1]
        && g.dilation == [1, 1]
        && g.out_h() * g.out_w() > 0
        // Gather and scatter offsets are i32.
        && g.batch * g.cin.max(g.cout) * Frame::new(g).plane < i32::MAX as usize / 2
}

/// Whether the input gradient is a forward pass here (padding at most 4).
pub fn transposable(g: &Geometry) -> bool {
    supported(g) && g.padding[0] <= 4 && g.padding[1] <= 4 && supported(&transposed(g))
}

/// Whether [`super::forward`] and its siblings should run `g`'s `pass` here: many channels
/// both ways (the gathers are shared by `cout` and the scatters by `cin`
/// multiply-adds) on maps of at most 32x32 (larger maps need the row
/// layout of [`super::conv_winograd_cpu`], which has no 5x5 yet).
/// Measured with `examples/conv_ops` (batch 32, 2 threads, fastest of 3):
/// the tutorial's 128 -> 512 layer on 14x14 took 60 / 70 / 69 ms against
/// 113 / 119 / 116 for im2col + GEMM, and its 512 -> 512 layer on the
/// 12x12 corner the pooling reads 90 / 159 ms against 147 / 191 for the
/// forward pass and input gradient. The weight gradient keeps its sums (36
/// x cin x cout floats) for the whole task and rewrites them every block
/// of tiles, so it runs here only while they fit in about 10 MiB of cache:
/// for 512 -> 512 channels (38 MiB) it took 236 against 172 ms.
pub fn pays(g: &Geometry, pass: Pass) -> bool {
    let map = match pass {
        Pass::Forward | Pass::Weight => g.out_h() * g.out_w(),
        Pass::Input => g.h * g.w,
    };
    let sums_fit = pass != Pass::Weight || XI * g.cin * g.cout * 4 <= 10 << 20;
    g.cin >= 64 && g.cout >= 64 && map <= 1024 && sums_fit
}

/// Sizes of one image's tiles.
#[derive(Debug, Clone, Copy)]
struct Frame {
    oh: usize,
    ow: usize,
    tw: usize,
    /// Tiles per image.
    tiles: usize,
    /// Row width of the padded input: every tile's 6x6 patch lies inside.
    wp: usize,
    /// Floats per padded plane.
    plane: usize,
}

impl Frame {
    fn new(g: &Geometry) -> Frame {
        let (oh, ow) = (g.out_h(), g.out_w());
        let (th, tw) = (oh.div_ceil(2), ow.div_ceil(2));
        let (hp, wp) = (2 * th + 4, 2 * tw + 4);
        Frame {
            oh,
            ow,
            tw,
            tiles: th * tw,
            wp,
            plane: hp * wp,
        }
    }
}

/// The filters `[cout, cin, 5, 5]` transformed (`U = G g Gᵀ`) and packed
/// as `[cout / MR][ξ][cin][MR]`, zero past `cout`. Where `flip`, `weight`
/// is `[cin, cout, 5, 5]` and each filter is turned by 180 degrees (the
/// input gradient's filters).
fn transform_weights(weight: &[f32], cout: usize, cin: usize, flip: bool) -> Vec<f32> {
    let mut u = vec![0.0; cout.div_ceil(MR) * XI * cin * MR];
    u.par_chunks_mut(XI * cin * MR).enumerate().for_each_init(
        || {
            (
                vec![0.0f32; 25 * cin],
                vec![0.0f32; N * 5 * cin],
                vec![0.0f32; cin],
            )
        },
        |(kt, gg, row), (b, part)| {
            for r in 0..MR.min(cout - b * MR) {
                let co = b * MR + r;
                // The channel's filters as [tap][cin], so that every step
                // below is one loop over the input channels.
                for ci in 0..cin {
                    match flip {
                        false => {
                            let k = &weight[(co * cin + ci) * 25..][..25];
                            for (tap, v) in k.iter().enumerate() {
                                kt[tap * cin + ci] = *v;
                            }
                        }
                        true => {
                            let k = &weight[(ci * cout + co) * 25..][..25];
                            for (tap, v) in k.iter().rev().enumerate() {
                                kt[tap * cin + ci] = *v;
                            }
                        }
                    }
                }
                // G g: [6][5][cin].
                for (i, gr) in G.iter().enumerate() {
                    for j in 0..5 {
                        let out = &mut gg[(i * 5 + j) * cin..][..cin];
                        out.fill(0.0);
                        for (l, c) in gr.iter().enumerate().filter(|(_, c)| **c != 0.0) {
                            axpy(out, *c, &kt[(l * 5 + j) * cin..][..cin]);
                        }
                    }
                }
                // (G g) Gᵀ: [6][6][cin], into the packed rows.
                for i in 0..N {
                    for (j, gc) in G.iter().enumerate() {
                        row.fill(0.0);
                        for (l, c) in gc.iter().enumerate().filter(|(_, c)| **c != 0.0) {
                            axpy(row, *c, &gg[(i * 5 + l) * cin..][..cin]);
                        }
                        let dst = &mut part[(i * N + j) * cin * MR..][..cin * MR];
                        for (d, v) in dst.chunks_exact_mut(MR).zip(row.iter()) {
                            d[r] = *v;
                        }
                    }
                }
            }
        },
    );
    u
}

/// `y += a * x`, elementwise (a loop the compiler vectorizes).
fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * *x;
    }
}

/// The images of `x` (`[n][cin][plane]`, their top-left `h x w` corners)
/// zero-padded one after another into `out` (`[n][cin][f.plane]`).
fn pad_images(x: &[f32], plane: [usize; 2], g: &Geometry, f: &Frame, out: &mut Vec<f32>) {
    let image = g.cin * plane[0] * plane[1];
    let mut one = Vec::new();
    out.clear();
    for xi in x.chunks_exact(image) {
        pad(xi, plane, g, f.wp, f.plane, g.cin * f.plane, &mut one);
        out.extend_from_slice(&one);
    }
}

/// Each tile's patch corner, `[image][cin][plane]` offset, for tiles
/// `t0..t0 + n` of `images` images (tiles past the last repeat it).
fn corners(f: &Frame, cin: usize, images: usize, t0: usize, n: usize) -> Vec<i32> {
    let last = images * f.tiles - 1;
    (t0..t0 + n)
        .map(|t| {
            let t = t.min(last);
            let (img, q) = (t / f.tiles, t % f.tiles);
            let (ty, tx) = (q / f.tw, q % f.tw);
            (img * cin * f.plane + 2 * ty * f.wp + 2 * tx) as i32
        })
        .collect()
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
    assert!(supported(g), "the 5x5 Winograd kernels do not take {g:?}");
    assert_eq!(weight.len(), g.cout * g.cin * 25);
    let u = transform_weights(weight, g.cout, g.cin, false);
    run(x, plane, &u, bias, relu, g)
}

/// Input gradient `[batch, cin, h, w]` from the output gradient. Panics
/// unless [`transposable`].
pub fn backward_input(weight: &[f32], grad: &[f32], g: &Geometry) -> Vec<f32> {
    assert!(
        transposable(g),
        "the 5x5 Winograd kernels do not take {g:?}"
    );
    assert_eq!(weight.len(), g.cout * g.cin * 25);
    let t = transposed(g);
    let u = transform_weights(weight, t.cout, t.cin, true);
    run(grad, [t.h, t.w], &u, None, false, &t)
}

/// [`forward`] with the transformed filters `u`.
fn run(
    x: &[f32],
    plane: [usize; 2],
    u: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    g: &Geometry,
) -> Vec<f32> {
    assert!(plane[0] >= g.h && plane[1] >= g.w);
    let image = g.cin * plane[0] * plane[1];
    assert_eq!(x.len(), g.batch * image);
    let f = Frame::new(g);
    let blocks = g.cout.div_ceil(MR);
    let rows: Vec<u32> = (0..g.cin).map(|c| (c * BLOCK) as u32).collect();
    let out_len = g.cout * f.oh * f.ow;
    let per_task = images_per_task(g.batch);
    par_fill(
        g.batch * out_len,
        per_task * out_len,
        x.par_chunks(per_task * image),
        || {
            (
                Vec::new(),
                vec![0.0; XI * g.cin * BLOCK],
                vec![0.0; blocks * MR * XI * BLOCK],
            )
        },
        |(padded, v, m), out, xs| {
            let images = xs.len() / image;
            pad_images(xs, plane, g, &f, padded);
            let tiles = images * f.tiles;
            for t0 in (0..tiles).step_by(BLOCK) {
                let n = (tiles - t0).min(BLOCK).next_multiple_of(TILE);
                let at = corners(&f, g.cin, images, t0, n);
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `supported` checked AVX-512F. `input` gathers
                // inside `padded` (corners of real tiles plus patch
                // offsets < plane, channel c < cin) and writes v's rows
                // [ξ][c] at columns < n <= BLOCK. The GEMM tiles read v
                // at a row offset plus t + TILE <= n and u's [b][ξ] block
                // (cin * MR floats), and write m's rows [co][ξ] at columns
                // < n. `output` scatters inside `out` (masked to real tiles
                // and to the map).
                unsafe {
                    avx512::input(padded, &at, g.cin, f.plane, f.wp, n, BLOCK, v);
                    for xi in 0..XI {
                        for b in 0..blocks {
                            let ub = u.as_ptr().add((b * XI + xi) * g.cin * MR);
                            for t in (0..n).step_by(TILE) {
                                super::lanes::avx512::forward_tile(
                                    v.as_ptr().add(xi * g.cin * BLOCK + t),
                                    ub,
                                    &rows,
                                    m.as_mut_ptr().add((b * MR * XI + xi) * BLOCK + t),
                                    XI * BLOCK,
                                );
                            }
                        }
                    }
                    avx512::output(m, &f, g.cout, images, t0, n, bias, relu, out);
                }
            }
        },
    )
}

/// Weight and bias gradients: (`[cout, cin, 5, 5]`, `[cout]`), as
/// `Gᵀ [Σ_tiles (A ∂Y Aᵀ) ⊙ V] G` (see [`super::conv_winograd_cpu`]).
/// Panics unless [`supported`].
pub fn backward_weight(x: &[f32], grad: &[f32], g: &Geometry) -> (Vec<f32>, Vec<f32>) {
    assert!(supported(g), "the 5x5 Winograd kernels do not take {g:?}");
    let f = Frame::new(g);
    let (in_len, l) = (g.cin * g.h * g.w, f.oh * f.ow);
    assert_eq!(x.len(), g.batch * in_len);
    assert_eq!(grad.len(), g.batch * g.cout * l);
    let shape = WeightTile::new(g.cout);
    let width = shape.width();
    let channels = g.cout.next_multiple_of(width);
    // Input channels padded to whole weight tiles (the extra rows read
    // channel 0 and are dropped).
    let rows = g.cin.next_multiple_of(shape.taps);
    let mut offsets: Vec<u32> = (0..g.cin).map(|c| (c * BLOCK) as u32).collect();
    offsets.resize(rows, 0);
    let per_task = images_per_task(g.batch);
    let partials: Vec<(Vec<f32>, Vec<f32>)> = grad
        .par_chunks(per_task * g.cout * l)
        .zip(x.par_chunks(per_task * in_len))
        .map(|(gs, xs)| {
            let images = xs.len() / in_len;
            // Σ (A ∂Y Aᵀ) ⊙ V as [ξ][rows][channels].
            let mut du = vec![0.0f32; XI * rows * channels];
            let mut db = vec![0.0f32; g.cout];
            let mut padded = Vec::new();
            pad_images(xs, [g.h, g.w], g, &f, &mut padded);
            let mut dyt = vec![0.0f32; images * l * channels];
            for (gi, d) in gs
                .chunks_exact(g.cout * l)
                .zip(dyt.chunks_exact_mut(l * channels))
            {
                transpose(gi, l, d, channels, &mut db);
            }
            let mut v = vec![0.0f32; XI * g.cin * BLOCK];
            let mut dm = vec![0.0f32; XI * BLOCK * channels];
            let tiles = images * f.tiles;
            for t0 in (0..tiles).step_by(BLOCK) {
                let n = (tiles - t0).min(BLOCK);
                let at = corners(&f, g.cin, images, t0, n.next_multiple_of(LANES));
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `supported` checked AVX-512F. `input` as in
                // `forward` (n rounded up to whole vectors <= BLOCK);
                // `gradient` reads dyt's pixels inside the map and writes
                // dm's rows [ξ][t < n]. The weight tiles read dm's rows t <
                // n at columns c0 + width <= channels, v's rows at
                // `offsets` (< cin * BLOCK) plus t < n, and write du's rows
                // [ξ][r0..r0 + taps] (<= rows), columns c0..c0 + width.
                unsafe {
                    avx512::input(&padded, &at, g.cin, f.plane, f.wp, at.len(), BLOCK, &mut v);
                    avx512::gradient(&dyt, channels, &f, t0, n, &mut dm);
                    let run = [(0, n as u32)];
                    for xi in 0..XI {
                        let vx = v.as_ptr().add(xi * g.cin * BLOCK);
                        for c0 in (0..channels).step_by(width) {
                            for r0 in (0..rows).step_by(shape.taps) {
                                super::lanes::avx512::weight_tile(
                                    shape,
                                    dm.as_ptr().add(xi * BLOCK * channels + c0),
                                    channels,
                                    vx,
                                    &offsets[r0..r0 + shape.taps],
                                    &run,
                                    du.as_mut_ptr().add((xi * rows + r0) * channels + c0),
                                );
                            }
                        }
                    }
                }
            }
            (du, db)
        })
        .collect();
    let mut du = vec![0.0f32; XI * rows * channels];
    let mut db = vec![0.0f32; g.cout];
    for (pu, pb) in partials {
        axpy(&mut du, 1.0, &pu);
        axpy(&mut db, 1.0, &pb);
    }
    // ∂g = Gᵀ ∂U G, input channel by input channel with the output
    // channels as the loops' elements: [ci][a][b][co], then into place.
    let per_channel: Vec<Vec<f32>> = (0..g.cin)
        .into_par_iter()
        .map(|ci| {
            let u = |xi: usize| &du[(xi * rows + ci) * channels..][..g.cout];
            // t = Gᵀ ∂U: [5][6][cout].
            let mut t = vec![0.0f32; 5 * N * g.cout];
            for a in 0..5 {
                for j in 0..N {
                    let out = &mut t[(a * N + j) * g.cout..][..g.cout];
                    for (i, gi) in G.iter().enumerate().filter(|(_, gi)| gi[a] != 0.0) {
                        axpy(out, gi[a], u(i * N + j));
                    }
                }
            }
            // t G: [5][5][cout].
            let mut d = vec![0.0f32; 25 * g.cout];
            for a in 0..5 {
                for b in 0..5 {
                    let out = &mut d[(a * 5 + b) * g.cout..][..g.cout];
                    for (j, gj) in G.iter().enumerate().filter(|(_, gj)| gj[b] != 0.0) {
                        axpy(out, gj[b], &t[(a * N + j) * g.cout..][..g.cout]);
                    }
                }
            }
            d
        })
        .collect();
    let mut dw = vec![0.0f32; g.cout * g.cin * 25];
    for (ci, d) in per_channel.iter().enumerate() {
        for (tap, row) in d.chunks_exact(g.cout).enumerate() {
            for (co, v) in row.iter().enumerate() {
                dw[(co * g.cin + ci) * 25 + tap] = *v;
            }
        }
    }
    (dw, db)
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{Frame, AT, BLOCK, BT, LANES, N, XI};

    /// `v[(ξ * cin + c) * ld + t]` for the `n` tiles whose patch corners
    /// are `at`: `Bᵀ d B` of each tile's 6x6 patch.
    ///
    /// # Safety
    /// AVX-512F; every corner plus `(cin - 1) * plane + 5 * wp + 5` lies
    /// inside `padded`; `v` holds `36 * cin * ld` floats; `n <= ld`, `n`
    /// and `at.len()` whole vectors.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    pub unsafe fn input(
        padded: &[f32],
        at: &[i32],
        cin: usize,
        plane: usize,
        wp: usize,
        n: usize,
        ld: usize,
        v: &mut [f32],
    ) {
        debug_assert!(at.len() >= n && n <= ld && v.len() >= 36 * cin * ld);
        for t in (0..n).step_by(LANES) {
            let corner = _mm512_loadu_si512(at.as_ptr().add(t).cast());
            for c in 0..cin {
                let base = padded.as_ptr().add(c * plane);
                // e = Bᵀ d, row by row of the patch's columns.
                let mut e = [[_mm512_setzero_ps(); N]; N];
                // j picks a column of every row of e.
                #[allow(clippy::needless_range_loop)]
                for j in 0..N {
                    let mut d = [_mm512_setzero_ps(); N];
                    for (i, d) in d.iter_mut().enumerate() {
                        let off = _mm512_add_epi32(corner, _mm512_set1_epi32((i * wp + j) as i32));
                        *d = _mm512_i32gather_ps::<4>(off, base.cast());
                    }
                    for (r, bt) in BT.iter().enumerate() {
                        e[r][j] = combine(bt, &d);
                    }
                }
                // V = e B: row r of V is row r of e times Bᵀ's rows.
                for (r, er) in e.iter().enumerate() {
                    for (s, bt) in BT.iter().enumerate() {
                        let x = combine(bt, er);
                        _mm512_storeu_ps(v.as_mut_ptr().add(((r * N + s) * cin + c) * ld + t), x);
                    }
                }
            }
        }
    }

    /// `dm[(ξ * BLOCK + t - t0) * width + c]` for tiles `t0..t0 + n`: `A
    /// ∂Y Aᵀ` of each tile's 2x2 output gradient, zero outside the map,
    /// from the task's output gradients as `[image][pixel][width]` rows.
    ///
    /// # Safety
    /// AVX-512F; `dyt` holds the rows of every image whose tiles are
    /// among `t0..t0 + n`, `width` a multiple of 16; `dm` holds `36 *
    /// BLOCK * width` floats, `n <= BLOCK`.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn gradient(
        dyt: &[f32],
        width: usize,
        f: &Frame,
        t0: usize,
        n: usize,
        dm: &mut [f32],
    ) {
        debug_assert!(n <= BLOCK && dm.len() >= XI * BLOCK * width);
        let zero = _mm512_setzero_ps();
        let l = f.oh * f.ow;
        for t in 0..n {
            let (img, q) = ((t0 + t) / f.tiles, (t0 + t) % f.tiles);
            let (y0, x0) = (2 * (q / f.tw), 2 * (q % f.tw));
            // The tile's four pixels' rows, where inside the map.
            let px = [(0, 0), (0, 1), (1, 0), (1, 1)].map(|(dy, dx)| {
                let (y, x) = (y0 + dy, x0 + dx);
                (y < f.oh && x < f.ow).then(|| {
                    debug_assert!((img * l + y * f.ow + x + 1) * width <= dyt.len());
                    dyt.as_ptr().add((img * l + y * f.ow + x) * width)
                })
            });
            for c in (0..width).step_by(LANES) {
                let [y00, y01, y10, y11] = px.map(|p| match p {
                    Some(p) => _mm512_loadu_ps(p.add(c)),
                    None => zero,
                });
                // z = A ∂Y (6 x 2), then each row times Aᵀ.
                let z: [[__m512; 2]; N] = std::array::from_fn(|i| {
                    [
                        combine2(AT[0][i], y00, AT[1][i], y10),
                        combine2(AT[0][i], y01, AT[1][i], y11),
                    ]
                });
                for (i, [a, b]) in z.into_iter().enumerate() {
                    for (j, (c0, c1)) in AT[0].iter().zip(&AT[1]).enumerate() {
                        let r = combine2(*c0, a, *c1, b);
                        _mm512_storeu_ps(
                            dm.as_mut_ptr().add(((i * N + j) * BLOCK + t) * width + c),
                            r,
                        );
                    }
                }
            }
        }
    }

    /// `ca * a + cb * b` for the coefficients of `Aᵀ` (0, ±1, ±2).
    #[inline(always)]
    unsafe fn combine2(ca: f32, a: __m512, cb: f32, b: __m512) -> __m512 {
        let mut c = [0.0f32; N];
        c[0] = ca;
        c[1] = cb;
        let mut x = [_mm512_setzero_ps(); N];
        x[0] = a;
        x[1] = b;
        combine(&c, &x)
    }

    /// `Σ_k coef[k] * x[k]`, skipping zero coefficients and multiplying
    /// only by coefficients other than ±1.
    #[inline(always)]
    unsafe fn combine(coef: &[f32; N], x: &[__m512; N]) -> __m512 {
        let mut acc = _mm512_setzero_ps();
        for (c, x) in coef.iter().zip(x) {
            acc = match *c {
                0.0 => acc,
                1.0 => _mm512_add_ps(acc, *x),
                -1.0 => _mm512_sub_ps(acc, *x),
                c => _mm512_fmadd_ps(_mm512_set1_ps(c), *x, acc),
            };
        }
        acc
    }

    /// Outputs of tiles `t0..t0 + n` (of the task's `images` images) from
    /// their sums `m[(co * 36 + ξ) * BLOCK + t - t0]`: `Aᵀ M A`, plus the
    /// bias and the ReLU, scattered into `out` (`[images][cout][oh][ow]`).
    ///
    /// # Safety
    /// AVX-512F; `m` holds `cout * 36 * BLOCK` floats, `n <= BLOCK`, `out`
    /// the task's images.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    pub unsafe fn output(
        m: &[f32],
        f: &Frame,
        cout: usize,
        images: usize,
        t0: usize,
        n: usize,
        bias: Option<&[f32]>,
        relu: bool,
        out: &mut [f32],
    ) {
        let l = f.oh * f.ow;
        debug_assert!(m.len() >= cout * XI * BLOCK && out.len() >= images * cout * l);
        let tiles = images * f.tiles;
        for t in (0..n).step_by(LANES) {
            // Each lane's output offset (channel 0) and which of its four
            // pixels lie inside the map (and belong to a real tile).
            let mut base = [0i32; LANES];
            let mut masks = [0u16; 4];
            for (lane, b) in base.iter_mut().enumerate() {
                let tt = t0 + t + lane;
                if tt >= tiles {
                    continue;
                }
                let (img, q) = (tt / f.tiles, tt % f.tiles);
                let (y, x) = (2 * (q / f.tw), 2 * (q % f.tw));
                *b = (img * cout * l + y * f.ow + x) as i32;
                for (k, (dy, dx)) in [(0, 0), (0, 1), (1, 0), (1, 1)].into_iter().enumerate() {
                    if y + dy < f.oh && x + dx < f.ow {
                        masks[k] |= 1 << lane;
                    }
                }
            }
            let base = _mm512_loadu_si512(base.as_ptr().cast());
            let steps = [0, 1, f.ow as i32, f.ow as i32 + 1];
            for co in 0..cout {
                let mut mv = [[_mm512_setzero_ps(); N]; N];
                for (xi, x) in mv.iter_mut().flatten().enumerate() {
                    *x = _mm512_loadu_ps(m.as_ptr().add((co * XI + xi) * BLOCK + t));
                }
                // s = Aᵀ M (2 x 6), then y = s A (2 x 2).
                let mut s = [[_mm512_setzero_ps(); N]; 2];
                for (sr, at) in s.iter_mut().zip(&AT) {
                    for (j, x) in sr.iter_mut().enumerate() {
                        let col: [__m512; N] = std::array::from_fn(|i| mv[i][j]);
                        *x = combine(at, &col);
                    }
                }
                let bv = _mm512_set1_ps(bias.map_or(0.0, |b| b[co]));
                let channel = _mm512_add_epi32(base, _mm512_set1_epi32((co * l) as i32));
                for (k, (a, b)) in [(0, 0), (0, 1), (1, 0), (1, 1)].into_iter().enumerate() {
                    let mut y = _mm512_add_ps(combine(&AT[b], &s[a]), bv);
                    if relu {
                        y = _mm512_max_ps(y, _mm512_setzero_ps());
                    }
                    let off = _mm512_add_epi32(channel, _mm512_set1_epi32(steps[k]));
                    _mm512_mask_i32scatter_ps::<4>(out.as_mut_ptr().cast(), masks[k], off, y);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::gemm;
    use super::*;
    use crate::test_util::{close_to_scale as close, corners, values};

    #[test]
    fn winograd_5x5_equals_the_gemm_path() {
        if !vectorized() {
            println!("skipped: no AVX-512 on this CPU; the Winograd kernels are not used here");
            return;
        }
        let base = Geometry {
            batch: 3,
            cin: 16,
            h: 14,
            w: 14,
            cout: 24,
            kh: 5,
            kw: 5,
            stride: [1, 1],
            padding: [2, 2],
            dilation: [1, 1],
        };
        for g in [
            base,
            // 64 output channels (the weight gradient's 4 x 6 tile) and
            // enough tiles for several blocks.
            Geometry {
                batch: 4,
                cin: 6,
                cout: 64,
                h: 20,
                w: 18,
                ..base
            },
            // Odd output sizes (tiles half outside), no padding, odd channels.
            Geometry {
                batch: 5,
                cin: 9,
                cout: 13,
                h: 11,
                w: 8,
                padding: [0, 0],
                ..base
            },
            // Asymmetric padding, one row of outputs.
            Geometry {
                batch: 2,
                cin: 7,
                h: 1,
                w: 9,
                padding: [2, 1],
                ..base
            },
        ] {
            assert!(supported(&g) && transposable(&g), "{g:?}");
            let x = values(g.batch * g.cin * g.h * g.w, 1);
            let w = values(g.cout * g.cin * 25, 2);
            let b = values(g.cout, 3);
            for (bias, relu) in [(None, false), (Some(&b[..]), true)] {
                let got = forward(&x, [g.h, g.w], &w, bias, relu, &g);
                let want = gemm::forward_gemm(&x, &w, bias, relu, &g);
                close(&got, &want, &format!("forward {g:?}"));
            }
            let dy = values(g.batch * g.cout * g.out_h() * g.out_w(), 4);
            let got = backward_input(&w, &dy, &g);
            let want = gemm::backward_input_gemm(&w, &dy, &g);
            close(&got, &want, &format!("input gradient {g:?}"));
            let (dw, db) = backward_weight(&x, &dy, &g);
            let (want_w, want_b) = gemm::backward_weight_gemm(&x, &dy, &g);
            close(&dw, &want_w, &format!("weight gradient {g:?}"));
            close(&db, &want_b, &format!("bias gradient {g:?}"));
        }
        // The top-left corner of larger planes, read in place.
        let g = Geometry {
            padding: [0, 0],
            ..base
        };
        let plane = [g.h + 2, g.w + 1];
        let big = values(g.batch * g.cin * plane[0] * plane[1], 5);
        let corner = corners(&big, plane, g.h, g.w);
        let w = values(g.cout * g.cin * 25, 6);
        assert_eq!(
            forward(&big, plane, &w, None, true, &g),
            forward(&corner, [g.h, g.w], &w, None, true, &g)
        );
        assert!(!supported(&Geometry {
            kh: 3,
            kw: 3,
            ..base
        }));
        assert!(!supported(&Geometry {
            stride: [2, 2],
            ..base
        }));
    }
}
