//! 2D convolution on the CPU as im2col + GEMM, forward and both gradients.
//!
//! burn 0.21 computes a convolution's weight gradient as another
//! convolution over batch-swapped tensors (the output gradient becomes a
//! kernel as large as the image), and its input gradient with a transposed
//! convolution. On a 2-core CPU both run far below the forward pass (see
//! bench/FINDINGS.md). These kernels use the textbook formulation instead:
//!
//! - forward:  `out[n] = W · cols(x[n]) + b`
//! - weight:   `dW += g[n] · cols(x[n])ᵀ`, `db += Σ g[n]`
//! - input:    `dx[n] = col2im(Wᵀ · g[n])`
//!
//! with the column buffer kept small ([`Blocking`]): large images in tiles
//! of output pixels, small ones several whole images per GEMM. Images are
//! spread over rayon's pool; each GEMM runs on one thread unless there are
//! fewer images than threads. Plain `f32` slices in NCHW order, groups 1,
//! any stride, padding and dilation.

use std::cell::Cell;

use gemm::Parallelism;
use rayon::prelude::*;

use crate::geometry::Geometry;
use crate::par::{images_per_task, par_fill, zeroed};

/// Output pixels `[p0, p1)` (row-major over `oh x ow`) as runs of whole or
/// partial output rows: `(y, x_start, x_end, offset_in_tile)`.
fn runs(g: &Geometry, p0: usize, p1: usize) -> impl Iterator<Item = (usize, usize, usize, usize)> {
    let ow = g.out_w();
    let (y0, y1) = (p0 / ow, p1.div_ceil(ow));
    (y0..y1).filter_map(move |y| {
        let xs = p0.saturating_sub(y * ow);
        let xe = ((p1 - y * ow).min(ow)).max(xs);
        (xe > xs).then_some((y, xs, xe, y * ow + xs - p0))
    })
}

/// For output columns `xs..xe` and kernel column `j`: the sub-range whose
/// input column lies inside the image, and the input column of `xs`.
fn inside(g: &Geometry, j: usize, xs: usize, xe: usize) -> (usize, usize, isize) {
    let off = (j * g.dilation[1]) as isize - g.padding[1] as isize;
    // Input column of output column x is x*stride + off; inside when in [0, w).
    let s = g.stride[1] as isize;
    let lo = ((-off + s - 1).div_euclid(s)).clamp(xs as isize, xe as isize) as usize;
    let hi = ((g.w as isize - off + s - 1).div_euclid(s)).clamp(lo as isize, xe as isize) as usize;
    (lo, hi, off)
}

/// `cols[(c, i, j), p - p0] = x[c, oh*s + i*d - p, ow*s + j*d - p]` (0
/// outside) for output pixels `p` in `[p0, p1)`; row `r` of `cols` starts
/// at `cols[r * ld]` (`ld >= p1 - p0`).
fn im2col(x: &[f32], g: &Geometry, p0: usize, p1: usize, cols: &mut [f32], ld: usize) {
    let t = p1 - p0;
    let ow = g.out_w();
    if g.stride == [1, 1]
        && g.dilation == [1, 1]
        && p0.is_multiple_of(ow)
        && (p1.is_multiple_of(ow) || p1 == g.cols())
    {
        return im2col_whole_rows(x, g, p0 / ow, p1.div_ceil(ow), cols, ld);
    }
    for c in 0..g.cin {
        let plane = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
        for i in 0..g.kh {
            for j in 0..g.kw {
                let row = &mut cols[((c * g.kh + i) * g.kw + j) * ld..][..t];
                for (y, xs, xe, at) in runs(g, p0, p1) {
                    let dst = &mut row[at..at + (xe - xs)];
                    let iy = (y * g.stride[0] + i * g.dilation[0]) as isize - g.padding[0] as isize;
                    if iy < 0 || iy >= g.h as isize {
                        dst.fill(0.0);
                        continue;
                    }
                    let src = &plane[iy as usize * g.w..(iy as usize + 1) * g.w];
                    let (lo, hi, off) = inside(g, j, xs, xe);
                    dst[..lo - xs].fill(0.0);
                    if g.stride[1] == 1 {
                        let a = (lo as isize + off) as usize;
                        dst[lo - xs..hi - xs].copy_from_slice(&src[a..a + (hi - lo)]);
                    } else {
                        for (k, d) in dst[lo - xs..hi - xs].iter_mut().enumerate() {
                            *d = src[(((lo + k) * g.stride[1]) as isize + off) as usize];
                        }
                    }
                    dst[hi - xs..].fill(0.0);
                }
            }
        }
    }
}

/// [`im2col`] for stride 1, dilation 1 and a tile of whole output rows
/// `y0..y1`, the common case: the in-image range of each kernel column is
/// the same for every output row, so it is worked out once per column.
fn im2col_whole_rows(x: &[f32], g: &Geometry, y0: usize, y1: usize, cols: &mut [f32], ld: usize) {
    let ow = g.out_w();
    let t = (y1 - y0) * ow;
    for c in 0..g.cin {
        let plane = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
        for i in 0..g.kh {
            for j in 0..g.kw {
                let row = &mut cols[((c * g.kh + i) * g.kw + j) * ld..][..t];
                let (lo, hi, off) = inside(g, j, 0, ow);
                let start = (lo as isize + off) as usize;
                for (dst, y) in row.chunks_exact_mut(ow).zip(y0..y1) {
                    let iy = (y + i) as isize - g.padding[0] as isize;
                    if iy < 0 || iy >= g.h as isize {
                        dst.fill(0.0);
                        continue;
                    }
                    let src = &plane[iy as usize * g.w + start..][..hi - lo];
                    dst[..lo].fill(0.0);
                    copy_row(&mut dst[lo..hi], src);
                    dst[hi..].fill(0.0);
                }
            }
        }
    }
}

/// `dst.copy_from_slice(src)` for the short rows of small feature maps
/// (8 to 64 floats) as inline 8-float moves, the last one overlapping,
/// instead of a call into the C library's `memcpy`. Measured on the Fashion
/// CNN (`perf annotate`): with the call, half of im2col's time was a stall
/// right after `memcpy` returned, in some builds and not others.
#[inline(always)]
fn copy_row(dst: &mut [f32], src: &[f32]) {
    let n = src.len();
    if !(8..=64).contains(&n) {
        return dst.copy_from_slice(src);
    }
    let dst = &mut dst[..n];
    let mut k = 0;
    while k + 8 <= n {
        dst[k..k + 8].copy_from_slice(&src[k..k + 8]);
        k += 8;
    }
    if k < n {
        dst[n - 8..].copy_from_slice(&src[n - 8..]);
    }
}

/// The adjoint of [`im2col`]: add each column entry back onto its input pixel.
fn col2im_add(cols: &[f32], g: &Geometry, p0: usize, p1: usize, x: &mut [f32], ld: usize) {
    let t = p1 - p0;
    let ow = g.out_w();
    if g.stride == [1, 1]
        && g.dilation == [1, 1]
        && p0.is_multiple_of(ow)
        && (p1.is_multiple_of(ow) || p1 == g.cols())
    {
        return col2im_add_whole_rows(cols, g, p0 / ow, p1.div_ceil(ow), x, ld);
    }
    for c in 0..g.cin {
        let plane = &mut x[c * g.h * g.w..(c + 1) * g.h * g.w];
        for i in 0..g.kh {
            for j in 0..g.kw {
                let row = &cols[((c * g.kh + i) * g.kw + j) * ld..][..t];
                for (y, xs, xe, at) in runs(g, p0, p1) {
                    let iy = (y * g.stride[0] + i * g.dilation[0]) as isize - g.padding[0] as isize;
                    if iy < 0 || iy >= g.h as isize {
                        continue;
                    }
                    let dst = &mut plane[iy as usize * g.w..(iy as usize + 1) * g.w];
                    let src = &row[at..at + (xe - xs)];
                    let (lo, hi, off) = inside(g, j, xs, xe);
                    if g.stride[1] == 1 {
                        let a = (lo as isize + off) as usize;
                        for (d, v) in dst[a..a + (hi - lo)].iter_mut().zip(&src[lo - xs..hi - xs]) {
                            *d += *v;
                        }
                    } else {
                        for (k, v) in src[lo - xs..hi - xs].iter().enumerate() {
                            dst[(((lo + k) * g.stride[1]) as isize + off) as usize] += *v;
                        }
                    }
                }
            }
        }
    }
}

/// [`col2im_add`] for stride 1, dilation 1 and whole output rows `y0..y1`
/// (the counterpart of [`im2col_whole_rows`]).
fn col2im_add_whole_rows(
    cols: &[f32],
    g: &Geometry,
    y0: usize,
    y1: usize,
    x: &mut [f32],
    ld: usize,
) {
    let ow = g.out_w();
    let t = (y1 - y0) * ow;
    for c in 0..g.cin {
        let plane = &mut x[c * g.h * g.w..(c + 1) * g.h * g.w];
        for i in 0..g.kh {
            for j in 0..g.kw {
                let row = &cols[((c * g.kh + i) * g.kw + j) * ld..][..t];
                let (lo, hi, off) = inside(g, j, 0, ow);
                let start = (lo as isize + off) as usize;
                for (src, y) in row.chunks_exact(ow).zip(y0..y1) {
                    let iy = (y + i) as isize - g.padding[0] as isize;
                    if iy < 0 || iy >= g.h as isize {
                        continue;
                    }
                    let dst = &mut plane[iy as usize * g.w + start..][..hi - lo];
                    for (d, v) in dst.iter_mut().zip(&src[lo..hi]) {
                        *d += *v;
                    }
                }
            }
        }
    }
}

/// How output pixels are grouped into GEMMs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Blocking {
    /// One image at a time, in tiles of this many output pixels.
    Tiles(usize),
    /// This many whole images side by side in one GEMM (small feature
    /// maps, where one image alone would make a thin GEMM that re-packs the
    /// whole weight matrix for a few output pixels).
    Images(usize),
}

impl Blocking {
    /// Images per GEMM task, and the scratch floats such a task needs: the
    /// column matrix, and for a group the `[cout, n]` matrix its GEMM
    /// reads or writes (0 for tiles).
    fn per_task(self, g: &Geometry) -> (usize, (usize, usize)) {
        let (rows, l) = (g.rows(), g.cols());
        match self {
            Blocking::Tiles(t) => (1, (rows * t, 0)),
            Blocking::Images(k) => (k, (rows * k * l, g.cout * k * l)),
        }
    }
}

/// Column-matrix floats per GEMM: about 512 KiB, so the tile is still in
/// L2 when the GEMM reads it.
const TILE_FLOATS: usize = 131_072;
/// Output pixels per GEMM when grouping whole images. Measured on the
/// tutorial's 512-filter 5x5 convolutions (10x10 outputs, `examples/conv_ops`):
/// groups of 3-6 images ran forward + both gradients 10-15 % faster than one
/// image at a time, 11 images slower than one (the column matrix no longer
/// stays in cache).
const GROUP_PIXELS: usize = 512;
/// The column matrix of a group stays under this many floats (32 MiB).
const MAX_GROUP_FLOATS: usize = 8 << 20;

/// Tiles of about [`TILE_FLOATS`] (at least 256 pixels, rounded down to
/// whole output rows for [`im2col_whole_rows`]) where an image has more
/// pixels than that; otherwise whole images, enough of them to reach
/// [`GROUP_PIXELS`] while the column matrix stays under [`MAX_GROUP_FLOATS`]
/// (one image alone is a tile).
fn blocking(g: &Geometry) -> Blocking {
    let (l, ow) = (g.cols().max(1), g.out_w());
    let t = (TILE_FLOATS / g.rows().max(1)).max(256);
    if t < l {
        Blocking::Tiles(if t >= ow { t / ow * ow } else { t })
    } else {
        let wanted = GROUP_PIXELS.div_ceil(l);
        let fits = MAX_GROUP_FLOATS / (g.rows().max(1) * l);
        match wanted.min(fits).min(g.batch) {
            // One image: its own output is the GEMM's, no regrouping copies.
            0 | 1 => Blocking::Tiles(l),
            n => Blocking::Images(n),
        }
    }
}

/// Row-major matrix view for [`matmul`]: element (r, c) at `ptr[r*rs + c*cs]`.
#[derive(Clone, Copy)]
struct View {
    ptr: *const f32,
    rs: isize,
    cs: isize,
}

/// `dst[m, n] (+)= a[m, k] · b[k, n]`; `dst` row-major with row stride
/// `dst_rs`, starting at `dst[0]`.
#[allow(clippy::too_many_arguments)]
fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    a: View,
    b: View,
    par: Parallelism,
) {
    assert!(m == 0 || n == 0 || dst.len() >= (m - 1) * dst_rs + n);
    // SAFETY: `dst` holds the m x n block at row stride dst_rs (checked
    // above); the callers build `a` and `b` from slices holding the m x k and
    // k x n blocks at the given strides. gemm reads `dst` only when
    // `read_dst` is true.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            a.ptr,
            a.cs,
            a.rs,
            b.ptr,
            b.cs,
            b.rs,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

/// How to spread `batch` images over the pool: (images per task, GEMM parallelism).
fn schedule(batch: usize) -> (usize, Parallelism) {
    (images_per_task(batch), gemm_parallelism(batch))
}

/// Each GEMM on one thread while there are at least as many images as
/// threads to spread; otherwise the GEMMs themselves use the pool.
fn gemm_parallelism(batch: usize) -> Parallelism {
    let threads = rayon::current_num_threads().max(1);
    if batch >= threads {
        Parallelism::None
    } else {
        Parallelism::Rayon(threads)
    }
}

/// [`forward_gemm`] on the top-left `g.h x g.w` corner of input planes of
/// `plane` pixels, through a cropped copy.
pub fn forward_corner_gemm(
    x: &[f32],
    plane: [usize; 2],
    weight: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    g: &Geometry,
) -> Vec<f32> {
    match plane == [g.h, g.w] {
        true => forward_gemm(x, weight, bias, relu, g),
        false => forward_gemm(&crop(x, plane, g), weight, bias, relu, g),
    }
}

/// The top-left `g.h x g.w` corner of every plane of `x` (planes of
/// `plane` pixels).
fn crop(x: &[f32], plane: [usize; 2], g: &Geometry) -> Vec<f32> {
    let mut out = zeroed(g.batch * g.cin * g.h * g.w);
    out.par_chunks_mut(g.h * g.w)
        .zip(x.par_chunks(plane[0] * plane[1]))
        .for_each(|(o, p)| {
            for (orow, prow) in o.chunks_exact_mut(g.w).zip(p.chunks_exact(plane[1])) {
                orow.copy_from_slice(&prow[..g.w]);
            }
        });
    out
}

/// [`super::forward`] as im2col + GEMM.
pub fn forward_gemm(
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    g: &Geometry,
) -> Vec<f32> {
    forward_blocked(x, weight, bias, relu, g, blocking(g))
}

/// The forward pass's epilogue on one image's output planes (`l` pixels
/// each): add the bias, then `max(v, 0)` where `relu` (burn's ReLU, which
/// also maps NaN to 0). Runs right after the image's GEMM, while its output
/// is still in cache.
fn finish_image(o: &mut [f32], bias: Option<&[f32]>, relu: bool, l: usize) {
    for (c, plane) in o.chunks_mut(l).enumerate() {
        let bv = bias.map_or(0.0, |b| b[c]);
        if relu {
            for v in plane {
                *v = (*v + bv).max(0.0);
            }
        } else if bias.is_some() {
            for v in plane {
                *v += bv;
            }
        }
    }
}

/// Copy image `k`'s planes (`[channels, l]`) into column block `k` of a
/// `[channels, n]` matrix that holds a group of images side by side.
fn to_group(image: &[f32], group: &mut [f32], k: usize, l: usize, n: usize) {
    for (plane, row) in image.chunks(l).zip(group.chunks_mut(n)) {
        row[k * l..(k + 1) * l].copy_from_slice(plane);
    }
}

/// The inverse of [`to_group`].
fn from_group(group: &[f32], image: &mut [f32], k: usize, l: usize, n: usize) {
    for (plane, row) in image.chunks_mut(l).zip(group.chunks(n)) {
        plane.copy_from_slice(&row[k * l..(k + 1) * l]);
    }
}

fn forward_blocked(
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    g: &Geometry,
    blocks: Blocking,
) -> Vec<f32> {
    assert_eq!(x.len(), g.batch * g.in_len());
    assert_eq!(weight.len(), g.cout * g.rows());
    let (rows, l) = (g.rows(), g.cols());
    let par = gemm_parallelism(g.batch);
    let w_view = SendView(View {
        ptr: weight.as_ptr(),
        rs: rows as isize,
        cs: 1,
    });
    // Images per task, and the scratch each rayon job keeps: the column
    // matrix, and for groups the GEMM's [cout, n] result.
    let (images, scratch) = blocks.per_task(g);
    par_fill(
        g.batch * g.out_len(),
        images * g.out_len(),
        x.par_chunks(images * g.in_len()),
        || Scratch::take(scratch.0 + scratch.1),
        |s, o, xs| {
            let (cols, res) = s.split(scratch.0, scratch.1);
            match blocks {
                Blocking::Tiles(t) => {
                    for p0 in (0..l).step_by(t) {
                        let p1 = (p0 + t).min(l);
                        im2col(xs, g, p0, p1, cols, p1 - p0);
                        let c_view = View {
                            ptr: cols.as_ptr(),
                            rs: (p1 - p0) as isize,
                            cs: 1,
                        };
                        matmul(
                            g.cout,
                            p1 - p0,
                            rows,
                            &mut o[p0..],
                            l,
                            false,
                            w_view.get(),
                            c_view,
                            par,
                        );
                    }
                    finish_image(o, bias, relu, l);
                }
                Blocking::Images(_) => {
                    let n = xs.len() / g.in_len() * l;
                    for (k, xi) in xs.chunks(g.in_len()).enumerate() {
                        im2col(xi, g, 0, l, &mut cols[k * l..], n);
                    }
                    let c_view = View {
                        ptr: cols.as_ptr(),
                        rs: n as isize,
                        cs: 1,
                    };
                    matmul(g.cout, n, rows, res, n, false, w_view.get(), c_view, par);
                    for (k, oi) in o.chunks_mut(g.out_len()).enumerate() {
                        from_group(res, oi, k, l, n);
                        finish_image(oi, bias, relu, l);
                    }
                }
            }
        },
    )
}

/// [`super::backward_weight`] as im2col + GEMM.
pub fn backward_weight_gemm(x: &[f32], grad: &[f32], g: &Geometry) -> (Vec<f32>, Vec<f32>) {
    backward_weight_blocked(x, grad, g, blocking(g))
}

fn backward_weight_blocked(
    x: &[f32],
    grad: &[f32],
    g: &Geometry,
    blocks: Blocking,
) -> (Vec<f32>, Vec<f32>) {
    assert_eq!(x.len(), g.batch * g.in_len());
    assert_eq!(grad.len(), g.batch * g.out_len());
    let (rows, l) = (g.rows(), g.cols());
    let (per_task, par) = schedule(g.batch);
    let partials: Vec<(Vec<f32>, Vec<f32>)> = grad
        .par_chunks(per_task * g.out_len())
        .zip(x.par_chunks(per_task * g.in_len()))
        .map(|(g_chunk, x_chunk)| {
            let mut dw = vec![0.0f32; g.cout * rows];
            let mut db = vec![0.0f32; g.cout];
            // dw (+)= grad block · (cols block)ᵀ, the column block being `n` pixels at row stride `ld`.
            let mut first = true;
            let mut accumulate = |grad_view: View, cols: &[f32], n: usize, ld: usize| {
                let ct_view = View {
                    ptr: cols.as_ptr(),
                    rs: 1,
                    cs: ld as isize,
                };
                matmul(
                    g.cout, rows, n, &mut dw, rows, !first, grad_view, ct_view, par,
                );
                first = false;
            };
            match blocks {
                Blocking::Tiles(t) => {
                    let sizes = blocks.per_task(g).1;
                    let mut scratch = Scratch::take(sizes.0);
                    let cols = &mut scratch.0[..sizes.0];
                    for (gi, xi) in g_chunk.chunks(g.out_len()).zip(x_chunk.chunks(g.in_len())) {
                        for p0 in (0..l).step_by(t) {
                            let p1 = (p0 + t).min(l);
                            im2col(xi, g, p0, p1, cols, p1 - p0);
                            let g_view = View {
                                ptr: gi[p0..].as_ptr(),
                                rs: l as isize,
                                cs: 1,
                            };
                            accumulate(g_view, cols, p1 - p0, p1 - p0);
                        }
                    }
                }
                Blocking::Images(per_gemm) => {
                    let sizes = blocks.per_task(g).1;
                    let mut scratch = Scratch::take(sizes.0 + sizes.1);
                    let (cols, grads) = scratch.split(sizes.0, sizes.1);
                    for (gs, xs) in g_chunk
                        .chunks(per_gemm * g.out_len())
                        .zip(x_chunk.chunks(per_gemm * g.in_len()))
                    {
                        let n = xs.len() / g.in_len() * l;
                        for (k, (gi, xi)) in gs
                            .chunks(g.out_len())
                            .zip(xs.chunks(g.in_len()))
                            .enumerate()
                        {
                            im2col(xi, g, 0, l, &mut cols[k * l..], n);
                            to_group(gi, grads, k, l, n);
                        }
                        let g_view = View {
                            ptr: grads.as_ptr(),
                            rs: n as isize,
                            cs: 1,
                        };
                        accumulate(g_view, cols, n, n);
                    }
                }
            }
            for gi in g_chunk.chunks(g.out_len()) {
                for (acc, plane) in db.iter_mut().zip(gi.chunks(l)) {
                    *acc += sum(plane);
                }
            }
            (dw, db)
        })
        .collect();
    let mut iter = partials.into_iter();
    let (mut dw, mut db) = iter
        .next()
        .unwrap_or_else(|| (vec![0.0; g.cout * rows], vec![0.0; g.cout]));
    for (pw, pb) in iter {
        for (a, b) in dw.iter_mut().zip(&pw) {
            *a += *b;
        }
        for (a, b) in db.iter_mut().zip(&pb) {
            *a += *b;
        }
    }
    (dw, db)
}

/// [`super::backward_input`] as GEMM + col2im.
pub fn backward_input_gemm(weight: &[f32], grad: &[f32], g: &Geometry) -> Vec<f32> {
    backward_input_blocked(weight, grad, g, blocking(g))
}

fn backward_input_blocked(
    weight: &[f32],
    grad: &[f32],
    g: &Geometry,
    blocks: Blocking,
) -> Vec<f32> {
    assert_eq!(weight.len(), g.cout * g.rows());
    assert_eq!(grad.len(), g.batch * g.out_len());
    let (rows, l) = (g.rows(), g.cols());
    let par = gemm_parallelism(g.batch);
    // Wᵀ: element (row, cout) at weight[cout*rows + row].
    let wt_view = SendView(View {
        ptr: weight.as_ptr(),
        rs: 1,
        cs: rows as isize,
    });
    let (images, scratch) = blocks.per_task(g);
    // par_fill hands each task its images' input gradient zeroed, for col2im_add to add onto.
    par_fill(
        g.batch * g.in_len(),
        images * g.in_len(),
        grad.par_chunks(images * g.out_len()),
        || Scratch::take(scratch.0 + scratch.1),
        |s, dxs, gs| {
            let (cols, grads) = s.split(scratch.0, scratch.1);
            match blocks {
                Blocking::Tiles(t) => {
                    for p0 in (0..l).step_by(t) {
                        let p1 = (p0 + t).min(l);
                        let g_view = View {
                            ptr: gs[p0..].as_ptr(),
                            rs: l as isize,
                            cs: 1,
                        };
                        matmul(
                            rows,
                            p1 - p0,
                            g.cout,
                            cols,
                            p1 - p0,
                            false,
                            wt_view.get(),
                            g_view,
                            par,
                        );
                        col2im_add(cols, g, p0, p1, dxs, p1 - p0);
                    }
                }
                Blocking::Images(_) => {
                    let n = gs.len() / g.out_len() * l;
                    for (k, gi) in gs.chunks(g.out_len()).enumerate() {
                        to_group(gi, grads, k, l, n);
                    }
                    let g_view = View {
                        ptr: grads.as_ptr(),
                        rs: n as isize,
                        cs: 1,
                    };
                    matmul(rows, n, g.cout, cols, n, false, wt_view.get(), g_view, par);
                    for (k, dxi) in dxs.chunks_mut(g.in_len()).enumerate() {
                        col2im_add(&cols[k * l..], g, 0, l, dxi, n);
                    }
                }
            }
        },
    )
}

/// The sum of `v` in eight lanes (a plain `iter().sum()` is one serial
/// chain of additions, which the compiler may not reorder into vectors).
fn sum(v: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let chunks = v.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for (l, x) in lanes.iter_mut().zip(c) {
            *l += *x;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

thread_local! {
    /// Each thread's spare scratch buffer, see [`Scratch`].
    static SPARE: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// Scratch floats for the column matrices and group buffers above, kept
/// per thread between calls instead of allocated and zeroed for every task
/// (a 0.5-32 MiB memset each; the buffer stays as large as the largest
/// layer's). The contents are stale: every user writes what it then reads.
/// Taken out of the thread's slot while in use, so a task nested on the
/// same thread (work stealing inside a parallel GEMM) gets a buffer of its own.
struct Scratch(Vec<f32>);

impl Scratch {
    fn take(n: usize) -> Scratch {
        let mut v = SPARE.take();
        if v.len() < n {
            v.resize(n, 0.0);
        }
        Scratch(v)
    }

    /// Two disjoint parts of `a` and `b` floats.
    fn split(&mut self, a: usize, b: usize) -> (&mut [f32], &mut [f32]) {
        let (first, rest) = self.0.split_at_mut(a);
        (first, &mut rest[..b])
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        SPARE.set(std::mem::take(&mut self.0));
    }
}

/// A read-only matrix view shared across rayon tasks.
#[derive(Clone, Copy)]
struct SendView(View);
// SAFETY: the view points into a slice that outlives the parallel loop and
// is only read.
unsafe impl Send for SendView {}
unsafe impl Sync for SendView {}

impl SendView {
    /// The view (a method, so that closures capture the whole `SendView`
    /// rather than its non-`Sync` field).
    fn get(&self) -> View {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::{backward_weight, forward, relu_backward};

    /// Direct definition of the convolution, for checking.
    fn naive_forward(x: &[f32], w: &[f32], b: &[f32], g: &Geometry) -> Vec<f32> {
        let (oh, ow) = (g.out_h(), g.out_w());
        let mut out = vec![0.0; g.batch * g.cout * oh * ow];
        for n in 0..g.batch {
            for co in 0..g.cout {
                for y in 0..oh {
                    for xo in 0..ow {
                        let mut s = b[co];
                        for ci in 0..g.cin {
                            for i in 0..g.kh {
                                for j in 0..g.kw {
                                    let iy = (y * g.stride[0] + i * g.dilation[0]) as isize
                                        - g.padding[0] as isize;
                                    let ix = (xo * g.stride[1] + j * g.dilation[1]) as isize
                                        - g.padding[1] as isize;
                                    if iy >= 0
                                        && ix >= 0
                                        && (iy as usize) < g.h
                                        && (ix as usize) < g.w
                                    {
                                        s += x[((n * g.cin + ci) * g.h + iy as usize) * g.w
                                            + ix as usize]
                                            * w[((co * g.cin + ci) * g.kh + i) * g.kw + j];
                                    }
                                }
                            }
                        }
                        out[((n * g.cout + co) * oh + y) * ow + xo] = s;
                    }
                }
            }
        }
        out
    }

    fn pseudo(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    fn geometries() -> Vec<Geometry> {
        let base = Geometry {
            batch: 3,
            cin: 2,
            h: 7,
            w: 6,
            cout: 4,
            kh: 3,
            kw: 3,
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
        };
        vec![
            base,
            Geometry {
                padding: [1, 1],
                ..base
            },
            Geometry {
                kh: 5,
                kw: 3,
                padding: [2, 1],
                ..base
            },
            Geometry {
                stride: [2, 2],
                padding: [1, 1],
                ..base
            },
            Geometry {
                dilation: [2, 1],
                padding: [1, 0],
                ..base
            },
            Geometry {
                batch: 1,
                cin: 1,
                ..base
            },
            Geometry {
                stride: [2, 3],
                padding: [2, 1],
                kh: 4,
                kw: 2,
                ..base
            },
            // Rows of 8 to 64 floats take copy_row's inline path.
            Geometry {
                h: 9,
                w: 21,
                ..base
            },
            Geometry {
                h: 9,
                w: 21,
                padding: [1, 1],
                ..base
            },
        ]
    }

    #[test]
    fn par_fill_hands_out_zeroed_chunks_that_cover_the_vector() {
        let starts: Vec<usize> = (0..8).map(|i| i * 3).collect();
        // 23 values in chunks of 3: the last chunk has 2.
        let v: Vec<f32> = par_fill(
            23,
            3,
            starts.par_iter(),
            || 0usize,
            |calls, part, &start| {
                *calls += 1;
                assert!(
                    part.iter().all(|&x| x == 0.0),
                    "chunk at {start} not zeroed"
                );
                for (k, x) in part.iter_mut().enumerate() {
                    *x = (start + k) as f32;
                }
            },
        );
        assert_eq!(v, (0..23).map(|k| k as f32).collect::<Vec<_>>());
    }

    #[test]
    #[should_panic(expected = "one input per output chunk")]
    fn par_fill_refuses_fewer_inputs_than_chunks() {
        let _: Vec<f32> = par_fill(10, 3, [0u8; 3].par_iter(), || (), |_, _, _| {});
    }

    #[test]
    fn scratch_is_reused_per_thread_and_a_nested_take_gets_its_own() {
        let first = {
            let s = Scratch::take(100);
            s.0.as_ptr()
        };
        let s = Scratch::take(50);
        assert_eq!(s.0.as_ptr(), first, "the thread's buffer comes back");
        assert!(s.0.len() >= 100);
        let inner = Scratch::take(10);
        assert_ne!(inner.0.as_ptr(), s.0.as_ptr());
    }

    #[test]
    fn copy_row_copies_every_length() {
        for n in 0..80 {
            let src = pseudo(n, n as u32);
            let mut dst = vec![9.0; n + 3];
            copy_row(&mut dst[..n], &src);
            assert_eq!(dst[..n], src[..], "length {n}");
            assert_eq!(dst[n..], [9.0; 3], "length {n} wrote past its row");
        }
    }

    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-3 * (1.0 + y.abs()),
                "element {i}: {x} vs {y}"
            );
        }
    }

    /// Blockings to try: tiles of whole rows, partial rows, single pixels,
    /// whole images; groups of images (with a smaller last group); the default.
    fn tiles(g: &Geometry) -> Vec<Blocking> {
        let l = g.out_h() * g.out_w();
        let mut b: Vec<Blocking> = [1, 3, g.out_w(), g.out_w() + 2, 2 * g.out_w(), l]
            .into_iter()
            .map(Blocking::Tiles)
            .collect();
        b.extend([
            Blocking::Images(1),
            Blocking::Images(2),
            Blocking::Images(g.batch),
            blocking(g),
        ]);
        b
    }

    #[test]
    fn forward_matches_the_definition() {
        for g in geometries() {
            let x = pseudo(g.batch * g.cin * g.h * g.w, 1);
            let w = pseudo(g.cout * g.cin * g.kh * g.kw, 2);
            let b = pseudo(g.cout, 3);
            let expected = naive_forward(&x, &w, &b, &g);
            let rectified: Vec<f32> = expected.iter().map(|v| v.max(0.0)).collect();
            assert!(rectified.iter().zip(&expected).any(|(r, e)| r != e));
            let unbiased = naive_forward(&x, &w, &vec![0.0; g.cout], &g);
            for t in tiles(&g) {
                close(&forward_blocked(&x, &w, Some(&b), false, &g, t), &expected);
                close(&forward_blocked(&x, &w, Some(&b), true, &g, t), &rectified);
                close(&forward_blocked(&x, &w, None, false, &g, t), &unbiased);
            }
        }
    }

    #[test]
    fn fused_relu_rectifies_without_bias_and_masks_the_gradient() {
        let g = geometries()[1];
        let x = pseudo(g.batch * g.cin * g.h * g.w, 7);
        let w = pseudo(g.cout * g.cin * g.kh * g.kw, 8);
        let plain = forward(&x, &w, None, false, &g);
        let fused = forward(&x, &w, None, true, &g);
        let expected: Vec<f32> = plain.iter().map(|v| v.max(0.0)).collect();
        assert_eq!(fused, expected);
        // NaN and -0.0 follow burn's relu (`max(v, 0)`) and relu_backward (`out > 0`).
        let out = [1.0, 0.0, -0.0, 2.5, 0.0, f32::MIN_POSITIVE];
        let grad = [3.0, 4.0, 5.0, f32::NAN, 6.0, 7.0];
        let masked = relu_backward(&out, &grad);
        assert_eq!(masked[..3], [3.0, 0.0, 0.0]);
        assert!(masked[3].is_nan());
        assert_eq!(masked[4..], [0.0, 7.0]);
        let long_out = pseudo(100_000, 9);
        let long_grad = pseudo(100_000, 10);
        let long = relu_backward(&long_out, &long_grad);
        for ((m, o), g) in long.iter().zip(&long_out).zip(&long_grad) {
            assert_eq!(*m, if *o > 0.0 { *g } else { 0.0 });
        }
    }

    /// The gradients are the adjoints of the forward map: for a random
    /// output gradient `u`, `<u, conv(x, w)>` equals `<dx, x>` and `<dw, w>`.
    #[test]
    fn gradients_are_the_adjoints_of_the_forward_pass() {
        for g in geometries() {
            let x = pseudo(g.batch * g.cin * g.h * g.w, 4);
            let w = pseudo(g.cout * g.cin * g.kh * g.kw, 5);
            let u = pseudo(g.batch * g.cout * g.out_h() * g.out_w(), 6);
            let y = forward(&x, &w, None, false, &g);
            let dot = |a: &[f32], b: &[f32]| {
                a.iter()
                    .zip(b)
                    .map(|(p, q)| (*p as f64) * (*q as f64))
                    .sum::<f64>()
            };
            let uy = dot(&u, &y);
            for t in tiles(&g) {
                let dx = backward_input_blocked(&w, &u, &g, t);
                let (dw, _) = backward_weight_blocked(&x, &u, &g, t);
                assert!(
                    (dot(&dx, &x) - uy).abs() < 1e-3 * (1.0 + uy.abs()),
                    "dx for {g:?}, {t:?}"
                );
                assert!(
                    (dot(&dw, &w) - uy).abs() < 1e-3 * (1.0 + uy.abs()),
                    "dw for {g:?}, {t:?}"
                );
            }
            let (_, db) = backward_weight(&x, &u, &g);
            // db is the sum of u per output channel.
            let l = g.out_h() * g.out_w();
            for co in 0..g.cout {
                let s: f32 = (0..g.batch)
                    .map(|n| u[(n * g.cout + co) * l..][..l].iter().sum::<f32>())
                    .sum();
                assert!((db[co] - s).abs() < 1e-3 * (1.0 + s.abs()));
            }
        }
    }

    #[test]
    fn large_maps_are_tiled_by_whole_rows_and_small_ones_grouped() {
        let g = |batch, cin, hw, cout, k| Geometry {
            batch,
            cin,
            h: hw,
            w: hw,
            cout,
            kh: k,
            kw: k,
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
        };
        // The tutorial's second conv: 126x126 outputs, 288 rows -> 455 pixels, 3 whole rows.
        assert_eq!(blocking(&g(32, 32, 128, 32, 3)), Blocking::Tiles(378));
        // Its last conv: 10x10 outputs from 512 channels, 5x5 -> 6 images (>= 512 pixels) per GEMM.
        assert_eq!(blocking(&g(32, 512, 14, 512, 5)), Blocking::Images(6));
        // The Fashion CNN's second conv: 11x11 outputs -> 5 images.
        assert_eq!(blocking(&g(128, 32, 13, 64, 3)), Blocking::Images(5));
        // Never more images than the batch has, nor a column matrix over 32 MiB.
        assert_eq!(blocking(&g(4, 512, 14, 512, 5)), Blocking::Images(4));
        assert_eq!(blocking(&g(32, 2048, 14, 512, 5)), Blocking::Tiles(100));
        // The Fashion CNN's first conv: 26x26 outputs are enough for one GEMM.
        assert_eq!(blocking(&g(128, 1, 28, 32, 3)), Blocking::Tiles(676));
    }
}
