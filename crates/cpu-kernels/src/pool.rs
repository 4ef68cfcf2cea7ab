//! 2D max pooling on the CPU, forward and backward, over plain `f32`
//! slices in NCHW order.
//!
//! burn-flex 0.21 runs 2D max pooling through its general 3D kernel, which
//! computes every window position with integer divisions and records an
//! `i64` index per output; on the Fashion-MNIST CNN that kernel and its
//! backward took about a fifth of a training step (bench/FINDINGS.md).
//! Here the forward pass records, per output, which element of its window
//! won as one byte, and the backward pass sends each output gradient to that
//! element. Ties go to the first element in row-major window order and a NaN
//! wins over numbers (PyTorch's rule). Planes are spread over rayon's pool.
//!
//! A ReLU can run inside the pooling (`relu`): `max(window)` then
//! `max(v, 0)`, which equals pooling the rectified input, and an output that
//! is not positive records [`NO_GRADIENT`] instead of a window position, so
//! the backward pass needs no separate ReLU mask.

use crate::par::{par_fill, zeroed};
use rayon::prelude::*;

/// The argmax byte of an output that gets no gradient: its ReLU (fused into
/// the pooling) cut it off. Window positions stay below it.
pub const NO_GRADIENT: u8 = u8::MAX;

/// Sizes of one max pooling: `planes` (batch x channels) planes of
/// `h x w`, a `kh x kw` window moved by `stride`, `padding` on each side
/// (padding never wins). Floor mode, dilation 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolGeometry {
    pub planes: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: [usize; 2],
    pub padding: [usize; 2],
}

impl PoolGeometry {
    /// Whether these kernels handle the geometry: every window overlaps the
    /// image (padding at most half the window, as PyTorch requires), a
    /// window position fits in a byte below [`NO_GRADIENT`], and the output
    /// is not empty.
    pub fn supported(&self) -> bool {
        let window_ok = self.kh * self.kw <= NO_GRADIENT as usize && self.kh > 0 && self.kw > 0;
        let padding_ok = 2 * self.padding[0] <= self.kh && 2 * self.padding[1] <= self.kw;
        let stride_ok = self.stride[0] > 0 && self.stride[1] > 0;
        let fits =
            self.h + 2 * self.padding[0] >= self.kh && self.w + 2 * self.padding[1] >= self.kw;
        window_ok && padding_ok && stride_ok && fits && self.h > 0 && self.w > 0
    }
    pub fn out_h(&self) -> usize {
        (self.h + 2 * self.padding[0] - self.kh) / self.stride[0] + 1
    }
    pub fn out_w(&self) -> usize {
        (self.w + 2 * self.padding[1] - self.kw) / self.stride[1] + 1
    }
    fn in_plane(&self) -> usize {
        self.h * self.w
    }
    fn out_plane(&self) -> usize {
        self.out_h() * self.out_w()
    }
    /// The 2x2 window with stride 2 and no padding, which has its own loop.
    fn is_2x2_stride_2(&self) -> bool {
        self.kh == 2 && self.kw == 2 && self.stride == [2, 2] && self.padding == [0, 0]
    }
}

/// Planes per rayon task: a few tasks per thread, at least one plane each,
/// and no more than about 64 KiB of output (`plane` floats per plane) so
/// that [`par_fill`] zeroes it in cache right before it is written.
fn planes_per_task(g: &PoolGeometry, plane: usize) -> usize {
    let tasks = rayon::current_num_threads().max(1) * 4;
    g.planes
        .div_ceil(tasks)
        .min((16 << 10) / plane.max(1))
        .max(1)
}

/// `b` replaces the running maximum `a` when larger, or when NaN.
#[inline(always)]
fn wins(b: f32, a: f32) -> bool {
    b > a || b.is_nan()
}

/// The maximum of every window, and which window element (row-major,
/// `i * kw + j`) it came from. With `relu`, each maximum is then rectified
/// (`max(v, 0)`, NaN to 0 as burn's ReLU does) and one that was not positive
/// records [`NO_GRADIENT`].
pub fn max_forward(x: &[f32], g: &PoolGeometry, relu: bool) -> (Vec<f32>, Vec<u8>) {
    assert!(g.supported(), "unsupported max pooling {g:?}");
    assert_eq!(x.len(), g.planes * g.in_plane());
    let (ip, op) = (g.in_plane(), g.out_plane());
    let mut arg = zeroed(g.planes * op);
    let per = planes_per_task(g, op);
    let out = par_fill(
        g.planes * op,
        per * op,
        arg.par_chunks_mut(per * op).zip(x.par_chunks(per * ip)),
        || (),
        |_, out, (arg, x)| {
            for ((o, a), p) in out.chunks_mut(op).zip(arg.chunks_mut(op)).zip(x.chunks(ip)) {
                if g.is_2x2_stride_2() {
                    forward_plane_2x2(p, g, o, a);
                } else {
                    forward_plane(p, g, o, a);
                }
                if relu {
                    rectify(o, a);
                }
            }
        },
    );
    (out, arg)
}

/// The fused ReLU on one plane's maxima, right after they were written.
fn rectify(out: &mut [f32], arg: &mut [u8]) {
    for (o, a) in out.iter_mut().zip(arg) {
        if o.is_nan() || *o <= 0.0 {
            *o = 0.0;
            *a = NO_GRADIENT;
        }
    }
}

fn forward_plane(x: &[f32], g: &PoolGeometry, out: &mut [f32], arg: &mut [u8]) {
    let ow = g.out_w();
    for (oy, (orow, arow)) in out.chunks_mut(ow).zip(arg.chunks_mut(ow)).enumerate() {
        let y0 = (oy * g.stride[0]) as isize - g.padding[0] as isize;
        let rows = (0..g.kh).filter(|&i| (0..g.h as isize).contains(&(y0 + i as isize)));
        let rows: Vec<usize> = rows.collect();
        for (ox, (o, a)) in orow.iter_mut().zip(arow.iter_mut()).enumerate() {
            let x0 = (ox * g.stride[1]) as isize - g.padding[1] as isize;
            let mut best = f32::NEG_INFINITY;
            let mut at: Option<usize> = None;
            for &i in &rows {
                let line = &x[(y0 + i as isize) as usize * g.w..][..g.w];
                for j in 0..g.kw {
                    let xi = x0 + j as isize;
                    if xi < 0 || xi >= g.w as isize {
                        continue;
                    }
                    let v = line[xi as usize];
                    if at.is_none() || wins(v, best) {
                        best = v;
                        at = Some(i * g.kw + j);
                    }
                }
            }
            // `supported` guarantees every window overlaps the image.
            *o = best;
            *a = at.unwrap_or(0) as u8;
        }
    }
}

fn forward_plane_2x2(x: &[f32], g: &PoolGeometry, out: &mut [f32], arg: &mut [u8]) {
    let ow = g.out_w();
    for (oy, (orow, arow)) in out.chunks_mut(ow).zip(arg.chunks_mut(ow)).enumerate() {
        let r0 = &x[2 * oy * g.w..][..2 * ow];
        let r1 = &x[(2 * oy + 1) * g.w..][..2 * ow];
        for (((o, a), p0), p1) in orow
            .iter_mut()
            .zip(arow.iter_mut())
            .zip(r0.chunks_exact(2))
            .zip(r1.chunks_exact(2))
        {
            let (top, top_at) = if wins(p0[1], p0[0]) {
                (p0[1], 1u8)
            } else {
                (p0[0], 0)
            };
            let (bottom, bottom_at) = if wins(p1[1], p1[0]) {
                (p1[1], 3u8)
            } else {
                (p1[0], 2)
            };
            let (m, at) = if wins(bottom, top) {
                (bottom, bottom_at)
            } else {
                (top, top_at)
            };
            *o = m;
            *a = at;
        }
    }
}

/// The input gradient: each output's gradient added to the element its
/// maximum came from (`arg` from [`max_forward`]; none for [`NO_GRADIENT`]).
pub fn max_backward(grad: &[f32], arg: &[u8], g: &PoolGeometry) -> Vec<f32> {
    assert!(g.supported(), "unsupported max pooling {g:?}");
    let (ip, op) = (g.in_plane(), g.out_plane());
    assert_eq!(grad.len(), g.planes * op);
    assert_eq!(arg.len(), g.planes * op);
    let per = planes_per_task(g, ip);
    // par_fill zeroes each chunk first: windows need not cover the input.
    par_fill(
        g.planes * ip,
        per * ip,
        grad.par_chunks(per * op).zip(arg.par_chunks(per * op)),
        || (),
        |_, dx, (grad, arg)| {
            for ((d, gr), a) in dx.chunks_mut(ip).zip(grad.chunks(op)).zip(arg.chunks(op)) {
                if g.is_2x2_stride_2() {
                    backward_plane_2x2(gr, a, g, d);
                } else {
                    backward_plane(gr, a, g, d);
                }
            }
        },
    )
}

fn backward_plane(grad: &[f32], arg: &[u8], g: &PoolGeometry, dx: &mut [f32]) {
    let ow = g.out_w();
    for (o, (gv, a)) in grad.iter().zip(arg).enumerate() {
        if *a == NO_GRADIENT {
            continue;
        }
        let (oy, ox) = (o / ow, o % ow);
        let (i, j) = (*a as usize / g.kw, *a as usize % g.kw);
        let y = oy * g.stride[0] + i - g.padding[0];
        let x = ox * g.stride[1] + j - g.padding[1];
        dx[y * g.w + x] += *gv;
    }
}

fn backward_plane_2x2(grad: &[f32], arg: &[u8], g: &PoolGeometry, dx: &mut [f32]) {
    let ow = g.out_w();
    for (oy, (grow, arow)) in grad.chunks(ow).zip(arg.chunks(ow)).enumerate() {
        let (top, rest) = dx[2 * oy * g.w..].split_at_mut(g.w);
        let bottom = &mut rest[..2 * ow];
        for (((gv, a), t), b) in grow
            .iter()
            .zip(arow)
            .zip(top[..2 * ow].chunks_exact_mut(2))
            .zip(bottom.chunks_exact_mut(2))
        {
            // Windows do not overlap: every input element gets one value
            // (0 everywhere for NO_GRADIENT).
            let pick = |k: u8| if *a == k { *gv } else { 0.0 };
            t[0] = pick(0);
            t[1] = pick(1);
            b[0] = pick(2);
            b[1] = pick(3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geometry(
        planes: usize,
        h: usize,
        w: usize,
        k: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> PoolGeometry {
        PoolGeometry {
            planes,
            h,
            w,
            kh: k[0],
            kw: k[1],
            stride,
            padding,
        }
    }

    #[test]
    fn two_by_two_windows_pick_the_maximum_and_remember_where_it_was() {
        #[rustfmt::skip]
        let x = [
            1.0, 5.0,   2.0, 2.0,   9.0,
            3.0, 4.0,   7.0, 2.0,   9.0,
            0.0, 0.0,  -1.0, -3.0,  9.0,
            8.0, 0.0,  -2.0, -1.0,  9.0,
            9.0, 9.0,   9.0, 9.0,   9.0,
        ];
        let g = geometry(1, 5, 5, [2, 2], [2, 2], [0, 0]);
        let (out, arg) = max_forward(&x, &g, false);
        assert_eq!(out, [5.0, 7.0, 8.0, -1.0]);
        assert_eq!(arg, [1, 2, 2, 0]);
        // The last window holds -1.0 twice: the first one wins. Each gradient
        // lands where its maximum was; row 4 and column 4 are in no window.
        let dx = max_backward(&[10.0, 20.0, 30.0, 40.0], &arg, &g);
        #[rustfmt::skip]
        let want = [
            0.0, 10.0,  0.0, 0.0,  0.0,
            0.0, 0.0,  20.0, 0.0,  0.0,
            0.0, 0.0,  40.0, 0.0,  0.0,
            30.0, 0.0,  0.0, 0.0,  0.0,
            0.0, 0.0,   0.0, 0.0,  0.0,
        ];
        assert_eq!(dx, want);
    }

    #[test]
    fn ties_go_to_the_first_element_and_nan_wins() {
        let g = geometry(1, 2, 4, [2, 2], [2, 2], [0, 0]);
        let x = [3.0, 3.0, 1.0, f32::NAN, 3.0, 3.0, 2.0, 5.0];
        let (out, arg) = max_forward(&x, &g, false);
        assert_eq!(arg, [0, 1]);
        assert_eq!(out[0], 3.0);
        assert!(out[1].is_nan());
        // The general loop follows the same rules.
        let g3 = geometry(1, 2, 4, [2, 2], [2, 1], [0, 0]);
        let (out3, arg3) = max_forward(&x, &g3, false);
        assert_eq!(arg3, [0, 0, 1]);
        assert_eq!(&out3[..2], &[3.0, 3.0]);
        assert!(out3[2].is_nan());
    }

    #[test]
    fn padded_and_overlapping_windows_follow_the_definition() {
        // 3x3 windows, stride 2, padding 1 over a 5x4 plane: padding never
        // wins, and overlapping windows add their gradients.
        let g = geometry(2, 5, 4, [3, 3], [2, 2], [1, 1]);
        let x: Vec<f32> = (0..40).map(|i| ((i * 7919) % 23) as f32 - 11.0).collect();
        let (out, arg) = max_forward(&x, &g, false);
        assert_eq!((g.out_h(), g.out_w()), (3, 2));
        let grad: Vec<f32> = (0..out.len()).map(|i| i as f32 + 1.0).collect();
        let dx = max_backward(&grad, &arg, &g);
        let mut want_dx = vec![0.0f32; x.len()];
        for p in 0..2 {
            for oy in 0..3 {
                for ox in 0..2 {
                    let mut best = (f32::NEG_INFINITY, 0usize);
                    for i in 0..3 {
                        for j in 0..3 {
                            let (y, xx) = ((oy * 2 + i) as isize - 1, (ox * 2 + j) as isize - 1);
                            if (0..5).contains(&y) && (0..4).contains(&xx) {
                                let at = p * 20 + y as usize * 4 + xx as usize;
                                if x[at] > best.0 {
                                    best = (x[at], at);
                                }
                            }
                        }
                    }
                    let o = p * 6 + oy * 2 + ox;
                    assert_eq!(out[o], best.0, "output {o}");
                    want_dx[best.1] += grad[o];
                }
            }
        }
        assert_eq!(dx, want_dx);
    }

    #[test]
    fn the_two_by_two_loop_equals_the_general_one() {
        let g = geometry(3, 7, 9, [2, 2], [2, 2], [0, 0]);
        let x: Vec<f32> = (0..g.planes * 63)
            .map(|i| ((i * 104729) % 97) as f32 / 7.0 - 5.0)
            .collect();
        let (fast, fast_arg) = max_forward(&x, &g, false);
        let (mut slow, mut slow_arg) = (vec![0.0; fast.len()], vec![0u8; fast.len()]);
        for p in 0..g.planes {
            let op = g.out_plane();
            forward_plane(
                &x[p * 63..][..63],
                &g,
                &mut slow[p * op..][..op],
                &mut slow_arg[p * op..][..op],
            );
        }
        assert_eq!((fast, fast_arg.clone()), (slow, slow_arg));
        let grad: Vec<f32> = (0..fast_arg.len()).map(|i| i as f32 - 10.0).collect();
        let fast_dx = max_backward(&grad, &fast_arg, &g);
        let mut slow_dx = vec![0.0; x.len()];
        for p in 0..g.planes {
            let op = g.out_plane();
            backward_plane(
                &grad[p * op..][..op],
                &fast_arg[p * op..][..op],
                &g,
                &mut slow_dx[p * 63..][..63],
            );
        }
        assert_eq!(fast_dx, slow_dx);
    }

    #[test]
    fn fused_relu_equals_pooling_the_rectified_input() {
        // Planes whose windows hold only negatives, zeros, mixed signs and a
        // NaN, through both loops (2x2 stride 2, and 3x3 stride 2 padded).
        let x: Vec<f32> = (0..2 * 6 * 7)
            .map(|i| match i % 11 {
                0 => 0.0,
                5 if i == 49 => f32::NAN,
                _ => ((i * 7919) % 23) as f32 - 14.0,
            })
            .collect();
        for g in [
            geometry(2, 6, 7, [2, 2], [2, 2], [0, 0]),
            geometry(2, 6, 7, [3, 3], [2, 2], [1, 1]),
        ] {
            let (plain, plain_arg) = max_forward(&x, &g, false);
            let (fused, fused_arg) = max_forward(&x, &g, true);
            let relu = |v: f32| v.max(0.0);
            let rectified: Vec<f32> = x.iter().map(|v| relu(*v)).collect();
            let mut cut = 0;
            for (i, (f, p)) in fused.iter().zip(&plain).enumerate() {
                assert_eq!(*f, relu(*p), "output {i} of {g:?}");
                if *p > 0.0 {
                    assert_eq!(fused_arg[i], plain_arg[i]);
                } else {
                    assert_eq!(fused_arg[i], NO_GRADIENT);
                    cut += 1;
                }
            }
            assert!(
                cut > 0 && cut < fused.len(),
                "both cases exercised in {g:?}"
            );
            // Away from the NaN the values equal pooling relu(x) (burn's
            // order); the gradient reaches an element only through a positive
            // maximum.
            let (r, _) = max_forward(&rectified, &g, false);
            let (nan_plane, op) = (49 / g.in_plane(), g.out_plane());
            for (i, (a, b)) in fused.iter().zip(&r).enumerate() {
                if i / op != nan_plane {
                    assert_eq!(a, b, "output {i}");
                }
            }
            let grad: Vec<f32> = (0..fused.len()).map(|i| i as f32 + 1.0).collect();
            let masked: Vec<f32> = grad
                .iter()
                .zip(&plain)
                .map(|(d, p)| if *p > 0.0 { *d } else { 0.0 })
                .collect();
            assert_eq!(
                max_backward(&grad, &fused_arg, &g),
                max_backward(&masked, &plain_arg, &g)
            );
        }
    }

    #[test]
    fn unsupported_geometries_are_refused() {
        assert!(
            !geometry(1, 4, 4, [2, 2], [2, 2], [2, 0]).supported(),
            "padding larger than half the window"
        );
        assert!(
            !geometry(1, 4, 4, [17, 16], [1, 1], [0, 0]).supported(),
            "window too large for a byte"
        );
        assert!(
            !geometry(1, 16, 16, [16, 16], [1, 1], [0, 0]).supported(),
            "256 positions: the last would read as NO_GRADIENT"
        );
        assert!(geometry(1, 15, 17, [15, 17], [1, 1], [0, 0]).supported());
        assert!(
            !geometry(1, 1, 4, [2, 2], [1, 1], [0, 0]).supported(),
            "window taller than the plane"
        );
        assert!(geometry(1, 1, 4, [2, 2], [1, 1], [1, 0]).supported());
    }
}
