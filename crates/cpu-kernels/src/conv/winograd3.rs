//! 3x3, stride-1 convolutions by Winograd's minimal filtering F(2x2, 3x3):
//! the forward pass and both gradients with 16 multiplications per 2x2
//! block of outputs and channel pair instead of 36 (Lavin & Gray,
//! "Fast Algorithms for Convolutional Neural Networks", 2015; the
//! algorithm cuDNN, NNPACK and oneDNN use for such layers).
//!
//! For each 2x2 tile of outputs the 4x4 input patch `d` is transformed to
//! `V = Bᵀ d B`, each 3x3 filter `g` to `U = G g Gᵀ`, the products are
//! summed over input channels position by position (`M[ξ] = Σ_ci U[ξ] ·
//! V[ξ]`, 16 GEMMs), and `Y = Aᵀ M A` gives the tile's four outputs. The
//! tiles are the vector lanes: sixteen neighbouring tiles of one tile row
//! are transformed together, and the GEMMs run on
//! [`super::conv_lanes_cpu`]'s register tile (8 output channels times 48
//! tiles). The input gradient of a 3x3 stride-1 convolution is such a
//! convolution of the output gradient with the flipped, transposed filters.
//!
//! The weight gradient follows from `Y = Aᵀ [(G g Gᵀ) ⊙ V] A` being linear
//! in `g`: `∂g = Gᵀ [Σ_tiles (A ∂Y Aᵀ) ⊙ V] G`. Each tile's output gradient
//! is transformed with the output channels in the lanes, and the sums over
//! tiles run on the lane kernels' weight-gradient tile, one input channel's
//! `V` broadcast per step.
//!
//! The transforms only add and subtract (and halve, for `U`), so the
//! results differ from a direct sum by rounding alone; each output is
//! computed from its own image, so it does not depend on the thread count.

use rayon::prelude::*;

use super::direct::{pad, vectorized};
use super::lanes::{flipped, spread, transpose, transposed, WeightTile, MR, TILE};
use crate::geometry::Geometry;
use crate::geometry::Pass;
use crate::par::{images_per_task, par_fill};

/// Tiles per vector.
const LANES: usize = 16;
/// Positions of a transformed 4x4 tile.
const XI: usize = 16;
/// Floats of transformed input per block of tiles: the block's `V` (`16 x
/// cin x tiles`) stays in the core's L2 cache while every group of output
/// channels runs its GEMMs over it.
const BLOCK_FLOATS: usize = 96 * 1024;

/// Whether this CPU has the kernels and they take convolution `g` (its
/// forward pass; the input gradient also needs [`transposable`]).
pub fn supported(g: &Geometry) -> bool {
    vectorized()
        && [g.kh, g.kw] == [3, 3]
        && g.stride == [1, 1]
        && g.dilation == [1, 1]
        && g.out_h() * g.out_w() > 0
        // The GEMM tiles' row offsets (`cin * block`) are kept as u32.
        && g.cin.max(g.cout) < 1 << 20
}

/// Whether the input gradient is a forward pass here: padding at most 2,
/// so the output gradient is padded by `2 - padding`.
pub fn transposable(g: &Geometry) -> bool {
    supported(g) && g.padding[0] <= 2 && g.padding[1] <= 2 && supported(&transposed(g))
}

/// Whether [`super::forward`] and its siblings should run `g`'s `pass` here: both channel
/// counts fill the GEMM tiles' 8 output channels twice over, and at least
/// three quarters of the lanes hold real tiles (a tile row is padded to
/// whole vectors of 16 tiles; the input gradient's tiles cover the input
/// map). Measured with `examples/conv_ops` (2 threads, fastest of 3 or 5):
/// on the tutorial's five 3x3 layers (rows of 15 to 64 tiles) the three
/// passes took 105 / 110 / 137 ms against 174 / 182 / 205 for the lane
/// kernels; on the Fashion CNN's 11x11 outputs (6 tiles a row) the input
/// and weight gradients took 9.7 and 8.0 ms against 6.0 and 3.7.
pub fn pays(g: &Geometry, pass: Pass) -> bool {
    let filled = |width: usize| {
        let tiles = width.div_ceil(2);
        4 * tiles >= 3 * tiles.next_multiple_of(LANES)
    };
    g.cin >= 2 * MR
        && g.cout >= 2 * MR
        && match pass {
            Pass::Forward | Pass::Weight => filled(g.out_w()),
            Pass::Input => filled(g.w),
        }
}

/// Sizes of one image's pass.
#[derive(Debug, Clone, Copy)]
struct Frame {
    oh: usize,
    ow: usize,
    /// Tile rows holding outputs.
    th: usize,
    /// Tiles per tile row, whole vectors (the last ones past `ow` are
    /// computed and dropped).
    twp: usize,
    /// Tiles computed: `th * twp` rounded up to whole GEMM tiles.
    tiles: usize,
    /// Row width of the padded input: every tile's 4x4 patch lies inside.
    cols: usize,
    /// Floats from one padded plane to the next ([`spread`]).
    plane: usize,
}

impl Frame {
    fn new(g: &Geometry) -> Frame {
        let (oh, ow) = (g.out_h(), g.out_w());
        let th = oh.div_ceil(2);
        let twp = ow.div_ceil(2).next_multiple_of(LANES);
        let tiles = (th * twp).next_multiple_of(TILE);
        // Tile row ty reads input rows 2ty..2ty+4 and tile tx columns
        // 2tx..2tx+4: rows for every computed tile, columns for twp tiles.
        let rows = 2 * tiles.div_ceil(twp) + 2;
        let cols = 2 * twp + 2;
        Frame {
            oh,
            ow,
            th,
            twp,
            tiles,
            cols,
            plane: spread(rows * cols),
        }
    }
}

/// Tiles per block for `cin` input channels: whole GEMM tiles whose
/// transformed input fills at most [`BLOCK_FLOATS`] (one GEMM tile at
/// least).
fn block(cin: usize) -> usize {
    (BLOCK_FLOATS / (XI * cin) / TILE).max(1) * TILE
}

/// The filters `[cout, cin, 3, 3]` transformed (`U = G g Gᵀ`) and packed
/// as `[cout / MR][ξ][cin][MR]`, zero past `cout`.
fn transform_weights(weight: &[f32], cout: usize, cin: usize) -> Vec<f32> {
    let mut u = vec![0.0; cout.div_ceil(MR) * XI * cin * MR];
    for co in 0..cout {
        for ci in 0..cin {
            let k = &weight[(co * cin + ci) * 9..][..9];
            // G g: 4 x 3.
            let mut gg = [[0.0f32; 3]; 4];
            for j in 0..3 {
                let (a, b, c) = (k[j], k[3 + j], k[6 + j]);
                gg[0][j] = a;
                gg[1][j] = 0.5 * (a + b + c);
                gg[2][j] = 0.5 * (a - b + c);
                gg[3][j] = c;
            }
            for (i, [a, b, c]) in gg.into_iter().enumerate() {
                let row = [a, 0.5 * (a + b + c), 0.5 * (a - b + c), c];
                for (j, v) in row.into_iter().enumerate() {
                    u[(((co / MR) * XI + i * 4 + j) * cin + ci) * MR + co % MR] = v;
                }
            }
        }
    }
    u
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
    assert!(supported(g), "the Winograd kernels do not take {g:?}");
    assert!(plane[0] >= g.h && plane[1] >= g.w);
    assert_eq!(x.len(), g.batch * g.cin * plane[0] * plane[1]);
    assert_eq!(weight.len(), g.cout * g.cin * 9);
    let f = Frame::new(g);
    let u = transform_weights(weight, g.cout, g.cin);
    let block = block(g.cin);
    // Offsets of the GEMM's rows (input channels) in a block of V.
    let rows: Vec<u32> = (0..g.cin).map(|c| (c * block) as u32).collect();
    let out_len = g.cout * f.oh * f.ow;
    par_fill(
        g.batch * out_len,
        out_len,
        x.par_chunks(g.cin * plane[0] * plane[1]),
        || (Vec::new(), Vec::new(), Vec::new()),
        |(padded, v, m), out, image| {
            pad(image, plane, g, f.cols, f.plane, g.cin * f.plane, padded);
            v.resize(XI * g.cin * block, 0.0);
            m.resize(XI * MR * block, 0.0);
            image_forward(padded, &u, &rows, bias, relu, g, &f, block, v, m, out);
        },
    )
}

/// Input gradient `[batch, cin, h, w]` from the output gradient. Panics
/// unless [`transposable`].
pub fn backward_input(weight: &[f32], grad: &[f32], g: &Geometry) -> Vec<f32> {
    assert!(transposable(g), "the Winograd kernels do not take {g:?}");
    let t = transposed(g);
    forward(grad, [t.h, t.w], &flipped(weight, g), None, false, &t)
}

/// One image, block by block of tiles: transform the block's input, run
/// the 16 GEMMs for each group of `MR` output channels and transform their
/// sums into the group's outputs.
#[allow(clippy::too_many_arguments)]
fn image_forward(
    padded: &[f32],
    u: &[f32],
    rows: &[u32],
    bias: Option<&[f32]>,
    relu: bool,
    g: &Geometry,
    f: &Frame,
    block: usize,
    v: &mut [f32],
    m: &mut [f32],
    out: &mut [f32],
) {
    assert_eq!(v.len(), XI * g.cin * block);
    assert_eq!(m.len(), XI * MR * block);
    assert_eq!(out.len(), g.cout * f.oh * f.ow);
    assert!(padded.len() >= g.cin * f.plane);
    let groups = g.cout.div_ceil(MR);
    for t0 in (0..f.tiles).step_by(block) {
        let n = (f.tiles - t0).min(block);
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `supported` checked AVX-512F. `input` reads the 4x4
        // patches of tiles t0..t0+n, inside the padded planes (`Frame`),
        // and writes v's rows [ξ][ci] at columns < n <= block. The GEMM
        // tiles read v at a row offset plus t + TILE <= n and u's group
        // (`XI * cin * MR` floats), and write m's rows [ξ][r] at columns <
        // n. `output` reads m the same way and writes inside `out` (masked
        // to the output rows and columns).
        unsafe {
            avx512::input(padded, f, g.cin, t0, n, block, v);
            for group in 0..groups {
                let ug = u.as_ptr().add(group * XI * g.cin * MR);
                for xi in 0..XI {
                    for t in (0..n).step_by(TILE) {
                        super::lanes::avx512::forward_tile(
                            v.as_ptr().add(xi * g.cin * block + t),
                            ug.add(xi * g.cin * MR),
                            rows,
                            m.as_mut_ptr().add(xi * MR * block + t),
                            block,
                        );
                    }
                }
                let c0 = group * MR;
                let channels = (g.cout - c0).min(MR);
                avx512::output(m, block, n, t0, f, c0, channels, bias, relu, out);
            }
        }
    }
}

/// Weight and bias gradients: (`[cout, cin, 3, 3]`, `[cout]`). Panics
/// unless [`supported`].
pub fn backward_weight(x: &[f32], grad: &[f32], g: &Geometry) -> (Vec<f32>, Vec<f32>) {
    assert!(supported(g), "the Winograd kernels do not take {g:?}");
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
    // Tiles per block: the transformed input stays in L2 and one tile of
    // channels' transformed gradient (`n x width`) in L1.
    let block = block(g.cin).min(shape.span() / LANES * LANES);
    let mut offsets: Vec<u32> = (0..g.cin).map(|c| (c * block) as u32).collect();
    offsets.resize(rows, 0);
    let per_task = images_per_task(g.batch);
    let partials: Vec<(Vec<f32>, Vec<f32>)> = grad
        .par_chunks(per_task * g.cout * l)
        .zip(x.par_chunks(per_task * in_len))
        .map(|(gs, xs)| {
            // Σ (A ∂Y Aᵀ) ⊙ V as [ξ][rows][channels].
            let mut du = vec![0.0f32; XI * rows * channels];
            let mut db = vec![0.0f32; g.cout];
            let mut padded = Vec::new();
            let mut v = vec![0.0f32; XI * g.cin * block];
            let mut dm = vec![0.0f32; XI * block * channels];
            let mut dyt = vec![0.0f32; l * channels];
            for (gi, xi) in gs.chunks_exact(g.cout * l).zip(xs.chunks_exact(in_len)) {
                pad(
                    xi,
                    [g.h, g.w],
                    g,
                    f.cols,
                    f.plane,
                    g.cin * f.plane,
                    &mut padded,
                );
                transpose(gi, l, &mut dyt, channels, &mut db);
                for t0 in (0..f.tiles).step_by(block) {
                    let n = (f.tiles - t0).min(block);
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: `supported` checked AVX-512F. `input` as in
                    // `image_forward`; `gradient` reads `dyt`'s pixels
                    // inside the map and writes dm's rows [ξ][t < n]. The
                    // weight tiles read dm's rows t < n at columns c0 +
                    // width <= channels, v's rows at `offsets` (< cin *
                    // block) plus t < n, and write du's rows [ξ][r0..r0 +
                    // taps] (<= rows), columns c0..c0 + width.
                    unsafe {
                        avx512::input(&padded, &f, g.cin, t0, n, block, &mut v);
                        avx512::gradient(&dyt, channels, &f, t0, n, block, &mut dm);
                        let run = [(0, n as u32)];
                        for xi in 0..XI {
                            let vx = v.as_ptr().add(xi * g.cin * block);
                            for c0 in (0..channels).step_by(width) {
                                for r0 in (0..rows).step_by(shape.taps) {
                                    super::lanes::avx512::weight_tile(
                                        shape,
                                        dm.as_ptr().add(xi * block * channels + c0),
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
            }
            (du, db)
        })
        .collect();
    let mut du = vec![0.0f32; XI * rows * channels];
    let mut db = vec![0.0f32; g.cout];
    for (pu, pb) in partials {
        for (a, b) in du.iter_mut().zip(&pu) {
            *a += *b;
        }
        for (a, b) in db.iter_mut().zip(&pb) {
            *a += *b;
        }
    }
    // ∂g = Gᵀ ∂U G; row a of Gᵀ is column a of G.
    const GT: [[f32; 4]; 3] = [
        [1.0, 0.5, 0.5, 0.0],
        [0.0, 0.5, -0.5, 0.0],
        [0.0, 0.5, 0.5, 1.0],
    ];
    let mut dw = vec![0.0f32; g.cout * g.cin * 9];
    for co in 0..g.cout {
        for ci in 0..g.cin {
            let u = |xi: usize| du[(xi * rows + ci) * channels + co];
            let out = &mut dw[(co * g.cin + ci) * 9..][..9];
            for (a, ga) in GT.iter().enumerate() {
                for (b, gb) in GT.iter().enumerate() {
                    let mut s = 0.0;
                    for (i, gi) in ga.iter().enumerate() {
                        for (j, gj) in gb.iter().enumerate() {
                            s += gi * gj * u(i * 4 + j);
                        }
                    }
                    out[a * 3 + b] = s;
                }
            }
        }
    }
    (dw, db)
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{Frame, LANES, MR, XI};

    /// `v[(ξ * cin + c) * ld + t - t0]` for tiles `t0..t0 + n` (whole
    /// vectors of one tile row each): `Bᵀ d B` of each tile's 4x4 patch.
    ///
    /// # Safety
    /// AVX-512F; `padded` holds `cin` planes of `f`; `v` holds `16 * cin *
    /// ld` floats, `n <= ld`.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn input(
        padded: &[f32],
        f: &Frame,
        cin: usize,
        t0: usize,
        n: usize,
        ld: usize,
        v: &mut [f32],
    ) {
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        for t in (0..n).step_by(LANES) {
            let (ty, tx) = ((t0 + t) / f.twp, (t0 + t) % f.twp);
            let corner = 2 * ty * f.cols + 2 * tx;
            for c in 0..cin {
                let p = padded.as_ptr().add(c * f.plane + corner);
                let mut e = [[_mm512_setzero_ps(); 4]; 4];
                for (i, e) in e.iter_mut().enumerate() {
                    // Columns 2tx.. of row i: even and odd lanes are the
                    // patches' columns 0 and 1, two further on 2 and 3.
                    let r = p.add(i * f.cols);
                    let (a, b) = (_mm512_loadu_ps(r), _mm512_loadu_ps(r.add(LANES)));
                    let (c, d) = (_mm512_loadu_ps(r.add(2)), _mm512_loadu_ps(r.add(2 + LANES)));
                    let d0 = _mm512_permutex2var_ps(a, even, b);
                    let d1 = _mm512_permutex2var_ps(a, odd, b);
                    let d2 = _mm512_permutex2var_ps(c, even, d);
                    let d3 = _mm512_permutex2var_ps(c, odd, d);
                    *e = [
                        _mm512_sub_ps(d0, d2),
                        _mm512_add_ps(d1, d2),
                        _mm512_sub_ps(d2, d1),
                        _mm512_sub_ps(d1, d3),
                    ];
                }
                // j picks a column of every row of e.
                #[allow(clippy::needless_range_loop)]
                for j in 0..4 {
                    let col = [
                        _mm512_sub_ps(e[0][j], e[2][j]),
                        _mm512_add_ps(e[1][j], e[2][j]),
                        _mm512_sub_ps(e[2][j], e[1][j]),
                        _mm512_sub_ps(e[1][j], e[3][j]),
                    ];
                    for (i, x) in col.into_iter().enumerate() {
                        let at = ((i * 4 + j) * cin + c) * ld + t;
                        debug_assert!(at + LANES <= v.len());
                        _mm512_storeu_ps(v.as_mut_ptr().add(at), x);
                    }
                }
            }
        }
    }

    /// `dm[(ξ * ld + t - t0) * width + c]` for tiles `t0..t0 + n`: `A ∂Y
    /// Aᵀ` of each tile's 2x2 output gradient, zero outside the map, from
    /// the output gradient as `[pixel][width]` rows (`dyt`).
    ///
    /// # Safety
    /// AVX-512F; `dyt` holds `oh * ow * width` floats, `width` a multiple
    /// of 16; `dm` holds `16 * ld * width`, `n <= ld`.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn gradient(
        dyt: &[f32],
        width: usize,
        f: &Frame,
        t0: usize,
        n: usize,
        ld: usize,
        dm: &mut [f32],
    ) {
        debug_assert!(dyt.len() >= f.oh * f.ow * width && dm.len() >= XI * ld * width);
        let zero = _mm512_setzero_ps();
        for t in 0..n {
            let (ty, tx) = ((t0 + t) / f.twp, (t0 + t) % f.twp);
            let (y0, x0) = (2 * ty, 2 * tx);
            // The tile's four pixels' rows, where inside the map.
            let at = |dy: usize, dx: usize| {
                let (y, x) = (y0 + dy, x0 + dx);
                (y < f.oh && x < f.ow).then(|| dyt.as_ptr().add((y * f.ow + x) * width))
            };
            let px = [at(0, 0), at(0, 1), at(1, 0), at(1, 1)];
            for c in (0..width).step_by(LANES) {
                let [y00, y01, y10, y11] = px.map(|p| match p {
                    Some(p) => _mm512_loadu_ps(p.add(c)),
                    None => zero,
                });
                // z = A y (4x2), then each row times Aᵀ.
                let z = [
                    [y00, y01],
                    [_mm512_add_ps(y00, y10), _mm512_add_ps(y01, y11)],
                    [_mm512_sub_ps(y00, y10), _mm512_sub_ps(y01, y11)],
                    [_mm512_sub_ps(zero, y10), _mm512_sub_ps(zero, y11)],
                ];
                for (i, [a, b]) in z.into_iter().enumerate() {
                    let row = [
                        a,
                        _mm512_add_ps(a, b),
                        _mm512_sub_ps(a, b),
                        _mm512_sub_ps(zero, b),
                    ];
                    for (j, r) in row.into_iter().enumerate() {
                        let o = dm.as_mut_ptr().add(((i * 4 + j) * ld + t) * width + c);
                        _mm512_storeu_ps(o, r);
                    }
                }
            }
        }
    }

    /// Output channels `c0..c0 + channels` of tiles `t0..t0 + n` from their
    /// sums `m[(ξ * MR + r) * ld + t - t0]`: `Aᵀ M A`, plus the bias and
    /// the ReLU, into `out` (`[cout][oh][ow]`).
    ///
    /// # Safety
    /// AVX-512F; `m` holds `16 * MR * ld` floats, `n <= ld`, `channels <=
    /// MR` and `c0 + channels <= cout`.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    pub unsafe fn output(
        m: &[f32],
        ld: usize,
        n: usize,
        t0: usize,
        f: &Frame,
        c0: usize,
        channels: usize,
        bias: Option<&[f32]>,
        relu: bool,
        out: &mut [f32],
    ) {
        debug_assert!(m.len() >= XI * MR * ld && channels <= MR);
        let lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
        let hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
        let l = f.oh * f.ow;
        for r in 0..channels {
            let c = c0 + r;
            assert!((c + 1) * l <= out.len());
            let o = out.as_mut_ptr().add(c * l);
            let bv = _mm512_set1_ps(bias.map_or(0.0, |b| b[c]));
            for t in (0..n).step_by(LANES) {
                let (ty, tx) = ((t0 + t) / f.twp, (t0 + t) % f.twp);
                let x0 = 2 * tx;
                if ty >= f.th || x0 >= f.ow {
                    continue;
                }
                let mv = |xi: usize| _mm512_loadu_ps(m.as_ptr().add((xi * MR + r) * ld + t));
                let mut s0 = [_mm512_setzero_ps(); 4];
                let mut s1 = [_mm512_setzero_ps(); 4];
                for j in 0..4 {
                    let (a, b, c, d) = (mv(j), mv(4 + j), mv(8 + j), mv(12 + j));
                    s0[j] = _mm512_add_ps(_mm512_add_ps(a, b), c);
                    s1[j] = _mm512_sub_ps(_mm512_sub_ps(b, c), d);
                }
                let finish = |v: __m512| {
                    let v = _mm512_add_ps(v, bv);
                    match relu {
                        true => _mm512_max_ps(v, _mm512_setzero_ps()),
                        false => v,
                    }
                };
                let pair = |s: &[__m512; 4]| {
                    let y0 = finish(_mm512_add_ps(_mm512_add_ps(s[0], s[1]), s[2]));
                    let y1 = finish(_mm512_sub_ps(_mm512_sub_ps(s[1], s[2]), s[3]));
                    (
                        _mm512_permutex2var_ps(y0, lo, y1),
                        _mm512_permutex2var_ps(y0, hi, y1),
                    )
                };
                // Output columns x0..x0 + 32 of rows 2ty and 2ty + 1, masked
                // to the map.
                let cnt = (f.ow - x0).min(2 * LANES);
                let mask = |k: usize| -> __mmask16 {
                    match k {
                        0 => 0,
                        k if k >= LANES => 0xFFFF,
                        k => (1u16 << k) - 1,
                    }
                };
                let (k0, k1) = (mask(cnt), mask(cnt.saturating_sub(LANES)));
                for (dy, s) in [(0, &s0), (1, &s1)] {
                    let y = 2 * ty + dy;
                    if y < f.oh {
                        let (a, b) = pair(s);
                        let row = o.add(y * f.ow + x0);
                        _mm512_mask_storeu_ps(row, k0, a);
                        _mm512_mask_storeu_ps(row.add(LANES), k1, b);
                    }
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
    fn winograd_equals_the_gemm_path() {
        if !vectorized() {
            println!("skipped: no AVX-512 on this CPU; the Winograd kernels are not used here");
            return;
        }
        let base = Geometry {
            batch: 3,
            cin: 16,
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
            // 64 output channels: the weight gradient's 4 x 6 tile.
            Geometry {
                cin: 7,
                cout: 64,
                h: 9,
                w: 20,
                padding: [1, 1],
                ..base
            },
            // Odd channel counts, "same" padding, a map wider than one
            // vector of tiles with an odd output width.
            Geometry {
                cin: 19,
                cout: 13,
                h: 40,
                w: 35,
                padding: [1, 1],
                ..base
            },
            // Padding 2 (the transposed pass of a "valid" layer), an
            // output two vectors of tiles wide and one row high.
            Geometry {
                cin: 5,
                cout: 24,
                h: 1,
                w: 62,
                padding: [2, 0],
                ..base
            },
            // So many input channels that a block is one GEMM tile.
            Geometry {
                batch: 2,
                cin: 130,
                cout: 9,
                h: 30,
                w: 30,
                ..base
            },
        ] {
            assert!(supported(&g) && transposable(&g), "{g:?}");
            let x = values(g.batch * g.cin * g.h * g.w, 1);
            let w = values(g.cout * g.cin * 9, 2);
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
        let plane = [base.h + 2, base.w + 1];
        let big = values(base.batch * base.cin * plane[0] * plane[1], 5);
        let corner = corners(&big, plane, base.h, base.w);
        let w = values(base.cout * base.cin * 9, 6);
        assert_eq!(
            forward(&big, plane, &w, None, true, &base),
            forward(&corner, [base.h, base.w], &w, None, true, &base)
        );
        // Refusals.
        assert!(!supported(&Geometry {
            kh: 5,
            kw: 5,
            ..base
        }));
        assert!(!supported(&Geometry {
            stride: [2, 2],
            ..base
        }));
        assert!(!supported(&Geometry {
            dilation: [2, 2],
            ..base
        }));
        assert!(!transposable(&Geometry {
            padding: [3, 1],
            ..base
        }));
    }
}
