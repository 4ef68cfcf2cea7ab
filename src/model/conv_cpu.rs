//! 2D convolution on the CPU as im2col + GEMM, forward and both gradients.
//!
//! burn 0.21 computes a convolution's weight gradient as another
//! convolution over batch-swapped tensors (the output gradient becomes a
//! kernel as large as the image), and its input gradient with a transposed
//! convolution. On a 2-core CPU both run far below the forward pass (see
//! bench/FINDINGS.md). These kernels use the textbook formulation instead,
//! one image at a time so the column buffer stays small:
//!
//! - forward:  `out[n] = W · cols(x[n]) + b`
//! - weight:   `dW += g[n] · cols(x[n])ᵀ`, `db += Σ g[n]`
//! - input:    `dx[n] = col2im(Wᵀ · g[n])`
//!
//! Images are spread over rayon's pool; each GEMM runs on one thread
//! unless there are fewer images than threads. Plain `f32` slices in
//! NCHW order, groups 1, any stride, padding and dilation.

use gemm::Parallelism;
use rayon::prelude::*;

/// Sizes of one convolution. Weights are `[cout, cin, kh, kw]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub batch: usize,
    pub cin: usize,
    pub h: usize,
    pub w: usize,
    pub cout: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
}

impl Geometry {
    pub fn out_h(&self) -> usize {
        (self.h + 2 * self.padding[0] - self.dilation[0] * (self.kh - 1) - 1) / self.stride[0] + 1
    }
    pub fn out_w(&self) -> usize {
        (self.w + 2 * self.padding[1] - self.dilation[1] * (self.kw - 1) - 1) / self.stride[1] + 1
    }
    /// Rows of the column matrix: one per (input channel, kernel row, kernel column).
    fn rows(&self) -> usize {
        self.cin * self.kh * self.kw
    }
    /// Columns of the column matrix: one per output pixel.
    fn cols(&self) -> usize {
        self.out_h() * self.out_w()
    }
    fn in_len(&self) -> usize {
        self.cin * self.h * self.w
    }
    fn out_len(&self) -> usize {
        self.cout * self.cols()
    }
}

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
/// outside) for output pixels `p` in `[p0, p1)`; `cols` is `rows x (p1 - p0)`.
fn im2col(x: &[f32], g: &Geometry, p0: usize, p1: usize, cols: &mut [f32]) {
    let t = p1 - p0;
    let ow = g.out_w();
    if g.stride == [1, 1] && g.dilation == [1, 1] && p0 % ow == 0 && (p1 % ow == 0 || p1 == g.cols()) {
        return im2col_whole_rows(x, g, p0 / ow, p1.div_ceil(ow), cols);
    }
    for c in 0..g.cin {
        let plane = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
        for i in 0..g.kh {
            for j in 0..g.kw {
                let row = &mut cols[((c * g.kh + i) * g.kw + j) * t..][..t];
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
fn im2col_whole_rows(x: &[f32], g: &Geometry, y0: usize, y1: usize, cols: &mut [f32]) {
    let ow = g.out_w();
    let t = (y1 - y0) * ow;
    for c in 0..g.cin {
        let plane = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
        for i in 0..g.kh {
            for j in 0..g.kw {
                let row = &mut cols[((c * g.kh + i) * g.kw + j) * t..][..t];
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
                    dst[lo..hi].copy_from_slice(src);
                    dst[hi..].fill(0.0);
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: add each column entry back onto its input pixel.
fn col2im_add(cols: &[f32], g: &Geometry, p0: usize, p1: usize, x: &mut [f32]) {
    let t = p1 - p0;
    for c in 0..g.cin {
        let plane = &mut x[c * g.h * g.w..(c + 1) * g.h * g.w];
        for i in 0..g.kh {
            for j in 0..g.kw {
                let row = &cols[((c * g.kh + i) * g.kw + j) * t..][..t];
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

/// Output pixels per GEMM: enough that the column tile (rows x tile floats)
/// stays near 512 KiB, so it is still in L2 when the GEMM reads it.
/// Rounded down to whole output rows where a row fits, for [`im2col_whole_rows`].
fn tile(g: &Geometry) -> usize {
    let (l, ow) = (g.cols(), g.out_w());
    let t = (131_072 / g.rows().max(1)).max(256).min(l).max(1);
    if t >= ow && t < l {
        t / ow * ow
    } else {
        t
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
    let threads = rayon::current_num_threads().max(1);
    if batch >= threads {
        (batch.div_ceil(threads), Parallelism::None)
    } else {
        (1, Parallelism::Rayon(threads))
    }
}

/// Forward pass: `[batch, cout, oh, ow]` from `x: [batch, cin, h, w]`.
pub fn forward(x: &[f32], weight: &[f32], bias: Option<&[f32]>, g: &Geometry) -> Vec<f32> {
    forward_tiled(x, weight, bias, g, tile(g))
}

fn forward_tiled(
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    g: &Geometry,
    t: usize,
) -> Vec<f32> {
    assert_eq!(x.len(), g.batch * g.in_len());
    assert_eq!(weight.len(), g.cout * g.rows());
    let (rows, l) = (g.rows(), g.cols());
    let mut out = vec![0.0f32; g.batch * g.out_len()];
    let (per_task, par) = schedule(g.batch);
    let w_view = SendView(View {
        ptr: weight.as_ptr(),
        rs: rows as isize,
        cs: 1,
    });
    out.par_chunks_mut(per_task * g.out_len())
        .zip(x.par_chunks(per_task * g.in_len()))
        .for_each(|(out_chunk, x_chunk)| {
            // Moves the (Send, not Sync) view into each task instead of sharing it.
            #[allow(clippy::redundant_locals)]
            let w_view = w_view;
            let mut cols = vec![0.0f32; rows * t];
            for (o, xi) in out_chunk
                .chunks_mut(g.out_len())
                .zip(x_chunk.chunks(g.in_len()))
            {
                for p0 in (0..l).step_by(t) {
                    let p1 = (p0 + t).min(l);
                    im2col(xi, g, p0, p1, &mut cols);
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
                        w_view.0,
                        c_view,
                        par,
                    );
                }
                if let Some(b) = bias {
                    for (plane, bv) in o.chunks_mut(l).zip(b) {
                        for v in plane {
                            *v += *bv;
                        }
                    }
                }
            }
        });
    out
}

/// Weight and bias gradients: (`[cout, cin, kh, kw]`, `[cout]`).
pub fn backward_weight(x: &[f32], grad: &[f32], g: &Geometry) -> (Vec<f32>, Vec<f32>) {
    backward_weight_tiled(x, grad, g, tile(g))
}

fn backward_weight_tiled(x: &[f32], grad: &[f32], g: &Geometry, t: usize) -> (Vec<f32>, Vec<f32>) {
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
            let mut cols = vec![0.0f32; rows * t];
            let mut first = true;
            for (gi, xi) in g_chunk.chunks(g.out_len()).zip(x_chunk.chunks(g.in_len())) {
                for p0 in (0..l).step_by(t) {
                    let p1 = (p0 + t).min(l);
                    im2col(xi, g, p0, p1, &mut cols);
                    let g_view = View {
                        ptr: gi[p0..].as_ptr(),
                        rs: l as isize,
                        cs: 1,
                    };
                    // cols transposed: element (pixel, row) at cols[row*(p1-p0) + pixel].
                    let ct_view = View {
                        ptr: cols.as_ptr(),
                        rs: 1,
                        cs: (p1 - p0) as isize,
                    };
                    matmul(
                        g.cout,
                        rows,
                        p1 - p0,
                        &mut dw,
                        rows,
                        !first,
                        g_view,
                        ct_view,
                        par,
                    );
                    first = false;
                }
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

/// Input gradient: `[batch, cin, h, w]`.
pub fn backward_input(weight: &[f32], grad: &[f32], g: &Geometry) -> Vec<f32> {
    backward_input_tiled(weight, grad, g, tile(g))
}

fn backward_input_tiled(weight: &[f32], grad: &[f32], g: &Geometry, t: usize) -> Vec<f32> {
    assert_eq!(weight.len(), g.cout * g.rows());
    assert_eq!(grad.len(), g.batch * g.out_len());
    let (rows, l) = (g.rows(), g.cols());
    let (per_task, par) = schedule(g.batch);
    let mut dx = vec![0.0f32; g.batch * g.in_len()];
    // Wᵀ: element (row, cout) at weight[cout*rows + row].
    let wt_view = SendView(View {
        ptr: weight.as_ptr(),
        rs: 1,
        cs: rows as isize,
    });
    dx.par_chunks_mut(per_task * g.in_len())
        .zip(grad.par_chunks(per_task * g.out_len()))
        .for_each(|(dx_chunk, g_chunk)| {
            // Moves the (Send, not Sync) view into each task instead of sharing it.
            #[allow(clippy::redundant_locals)]
            let wt_view = wt_view;
            let mut cols = vec![0.0f32; rows * t];
            for (dxi, gi) in dx_chunk
                .chunks_mut(g.in_len())
                .zip(g_chunk.chunks(g.out_len()))
            {
                for p0 in (0..l).step_by(t) {
                    let p1 = (p0 + t).min(l);
                    let g_view = View {
                        ptr: gi[p0..].as_ptr(),
                        rs: l as isize,
                        cs: 1,
                    };
                    matmul(
                        rows,
                        p1 - p0,
                        g.cout,
                        &mut cols,
                        p1 - p0,
                        false,
                        wt_view.0,
                        g_view,
                        par,
                    );
                    col2im_add(&cols, g, p0, p1, dxi);
                }
            }
        });
    dx
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

/// A read-only matrix view shared across rayon tasks.
#[derive(Clone, Copy)]
struct SendView(View);
// SAFETY: the view points into a slice that outlives the parallel loop and
// is only read.
unsafe impl Send for SendView {}
unsafe impl Sync for SendView {}

#[cfg(test)]
mod tests {
    use super::*;

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
        ]
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

    /// Tile sizes to try: whole rows, partial rows, single pixels, all at once.
    fn tiles(g: &Geometry) -> Vec<usize> {
        let l = g.out_h() * g.out_w();
        vec![1, 3, g.out_w(), g.out_w() + 2, 2 * g.out_w(), l, tile(g)]
    }

    #[test]
    fn forward_matches_the_definition() {
        for g in geometries() {
            let x = pseudo(g.batch * g.cin * g.h * g.w, 1);
            let w = pseudo(g.cout * g.cin * g.kh * g.kw, 2);
            let b = pseudo(g.cout, 3);
            let expected = naive_forward(&x, &w, &b, &g);
            for t in tiles(&g) {
                close(&forward_tiled(&x, &w, Some(&b), &g, t), &expected);
            }
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
            let y = forward(&x, &w, None, &g);
            let dot = |a: &[f32], b: &[f32]| {
                a.iter()
                    .zip(b)
                    .map(|(p, q)| (*p as f64) * (*q as f64))
                    .sum::<f64>()
            };
            let uy = dot(&u, &y);
            for t in tiles(&g) {
                let dx = backward_input_tiled(&w, &u, &g, t);
                let (dw, _) = backward_weight_tiled(&x, &u, &g, t);
                assert!(
                    (dot(&dx, &x) - uy).abs() < 1e-3 * (1.0 + uy.abs()),
                    "dx for {g:?}, tile {t}"
                );
                assert!(
                    (dot(&dw, &w) - uy).abs() < 1e-3 * (1.0 + uy.abs()),
                    "dw for {g:?}, tile {t}"
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
}
