//! The forward convolution as a direct AVX-512 kernel, without im2col.
//!
//! [`super::gemm`]'s forward pass copies every patch into a column
//! matrix (im2col), which the GEMM then copies again into its packed
//! panels; on small feature maps with many channels (the Fashion CNN's
//! second layer: 32 -> 64 channels on 13x13) those copies cost more than
//! the products. Here the output channels are the vector lanes: the
//! weights are packed once per call as `[k][channels]` rows (`k` one per
//! input channel and tap), and a tile of `MR` output pixels times `NV`
//! vectors of output channels is summed in registers, each step one row of
//! weights times `MR` input pixels read straight from the (zero-padded)
//! image. Stride 1 and dilation 1 only, output channels a multiple of 32;
//! [`supported`] says when.
//!
//! Each output is one fused multiply-add chain over `k` in order, so the
//! result does not depend on the thread count.

use rayon::prelude::*;

use crate::geometry::Geometry;
use crate::par::par_fill;

/// Output channels per vector.
const LANES: usize = 16;

/// Whether this CPU has the kernel and it takes convolution `g`.
pub fn supported(g: &Geometry) -> bool {
    vectorized()
        && g.stride == [1, 1]
        && g.dilation == [1, 1]
        && g.cout.is_multiple_of(2 * LANES)
        && g.out_h() * g.out_w() > 0
        // Pixel offsets and scatter indices are kept as i32.
        && g.cout * g.out_h() * g.out_w() < i32::MAX as usize
        && g.cin * (g.h + 2 * g.padding[0]) * (g.w + 2 * g.padding[1]) < i32::MAX as usize
}

/// Whether [`super::forward`] should run convolution `g` here:
/// at most 512 rows of weights per output channel (a tile's weights, 128
/// KiB, stay in the core's cache; there is no blocking over them) and at
/// most 1,024 output pixels per image. Measured with `examples/conv_ops`
/// (batch 128 and 32, 2 threads, forward only): the Fashion CNN's 32 -> 64
/// channels on 13x13, 4.4 ms against 6.7 ms for im2col + GEMM; on the
/// tutorial's larger maps and wider layers the GEMMs were faster (e.g.
/// 32 -> 64 on 63x63: 48.3 against 40.4 ms; 512 -> 512 5x5: 411 against
/// 259 ms).
pub fn pays(g: &Geometry) -> bool {
    g.cin * g.kh * g.kw <= 512 && g.out_h() * g.out_w() <= 1024
}

/// Whether the CPU has AVX-512F.
pub fn vectorized() -> bool {
    #[cfg(target_arch = "x86_64")]
    return is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Vectors of output channels per tile: 4 (64 channels) where they divide
/// evenly, else 2.
fn vectors(g: &Geometry) -> usize {
    match g.cout.is_multiple_of(4 * LANES) {
        true => 4,
        false => 2,
    }
}

/// The weight `[cout, cin, kh, kw]` as `[cout / (nv * 16)][k][nv * 16]`.
fn pack(weight: &[f32], g: &Geometry, nv: usize) -> Vec<f32> {
    let k = g.cin * g.kh * g.kw;
    let width = nv * LANES;
    let mut out = vec![0.0; g.cout * k];
    out.par_chunks_mut(k * width)
        .enumerate()
        .for_each(|(group, part)| {
            for (r, row) in part.chunks_exact_mut(width).enumerate() {
                for (j, v) in row.iter_mut().enumerate() {
                    *v = weight[(group * width + j) * k + r];
                }
            }
        });
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
    assert!(supported(g), "the direct kernel does not take {g:?}");
    let k = g.cin * g.kh * g.kw;
    assert!(plane[0] >= g.h && plane[1] >= g.w);
    assert_eq!(x.len(), g.batch * g.cin * plane[0] * plane[1]);
    assert_eq!(weight.len(), g.cout * k);
    let nv = vectors(g);
    let packed = pack(weight, g, nv);
    let (hp, wp) = (g.h + 2 * g.padding[0], g.w + 2 * g.padding[1]);
    // Offset of each (channel, tap) from an output pixel's patch corner.
    let taps: Vec<usize> = (0..g.cin)
        .flat_map(|c| (0..g.kh).flat_map(move |i| (0..g.kw).map(move |j| (c * hp + i) * wp + j)))
        .collect();
    let out_len = g.cout * g.out_h() * g.out_w();
    par_fill(
        g.batch * out_len,
        out_len,
        x.par_chunks(g.cin * plane[0] * plane[1]),
        Vec::new,
        |padded, out, image| {
            pad(image, plane, g, wp, hp * wp, g.cin * hp * wp, padded);
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `supported` checked that the CPU has AVX-512F; the
            // kernel's reads stay inside `padded` and `packed` and its
            // writes inside `out` (see `avx512::tiles`).
            unsafe {
                avx512::image(padded, &packed, &taps, bias, relu, g, nv, out)
            };
        },
    )
}

/// The top-left `h x w` corner of one image's `[cin][plane]` planes with
/// the convolution's zero padding around it, into `out` (resized to `len`
/// floats, the padded planes `stride` floats apart, rows `wp >= w + 2 *
/// padding` floats wide).
pub(super) fn pad(
    image: &[f32],
    plane: [usize; 2],
    g: &Geometry,
    wp: usize,
    stride: usize,
    len: usize,
    out: &mut Vec<f32>,
) {
    assert!(wp >= g.w + 2 * g.padding[1]);
    out.clear();
    out.resize(len, 0.0);
    let planes = image.chunks_exact(plane[0] * plane[1]);
    for (src, o) in planes.zip(out.chunks_exact_mut(stride)) {
        let rows = o.chunks_exact_mut(wp).skip(g.padding[0]);
        for (row, r) in rows.zip(src.chunks_exact(plane[1])).take(g.h) {
            row[g.padding[1]..][..g.w].copy_from_slice(&r[..g.w]);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{Geometry, LANES};

    /// Output pixels per tile for `NV` vectors of channels: 20 and 16
    /// sums in registers, leaving room for the weight row and the
    /// broadcast pixels among the 32 vector registers (with 24 sums the
    /// compiler moved some to the stack).
    const fn pixels(nv: usize) -> usize {
        match nv {
            4 => 5,
            _ => 8,
        }
    }

    /// One image: every tile of output pixels for every group of output
    /// channels.
    ///
    /// # Safety
    /// The CPU must support AVX-512F; `padded` holds the padded image,
    /// `packed` the weights of [`super::pack`] for `nv`, `taps` the
    /// `cin * kh * kw` corner offsets, and `out` the `[cout, oh, ow]` output.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    pub unsafe fn image(
        padded: &[f32],
        packed: &[f32],
        taps: &[usize],
        bias: Option<&[f32]>,
        relu: bool,
        g: &Geometry,
        nv: usize,
        out: &mut [f32],
    ) {
        match nv {
            4 => tiles::<4, { pixels(4) }>(padded, packed, taps, bias, relu, g, out),
            _ => tiles::<2, { pixels(2) }>(padded, packed, taps, bias, relu, g, out),
        }
    }

    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    unsafe fn tiles<const NV: usize, const MR: usize>(
        padded: &[f32],
        packed: &[f32],
        taps: &[usize],
        bias: Option<&[f32]>,
        relu: bool,
        g: &Geometry,
        out: &mut [f32],
    ) {
        let (ow, l) = (g.out_w(), g.out_h() * g.out_w());
        let wp = g.w + 2 * g.padding[1];
        let k = taps.len();
        let width = NV * LANES;
        assert_eq!(packed.len(), g.cout * k);
        assert_eq!(out.len(), g.cout * l);
        // The largest corner plus the largest tap offset stays inside.
        let last = (g.out_h() - 1) * wp + (ow - 1);
        assert!(last + taps[k - 1] < padded.len());
        // Lane `j` of a vector writes plane `j` of its channels.
        let planes = _mm512_mullo_epi32(
            _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
            _mm512_set1_epi32(l as i32),
        );
        for group in 0..g.cout / width {
            let w = &packed[group * k * width..][..k * width];
            let c0 = group * width;
            let mut p = 0;
            while p < l {
                let n = (l - p).min(MR);
                let mut corner = [0usize; MR];
                for (i, c) in corner.iter_mut().enumerate() {
                    let q = p + i.min(n - 1);
                    *c = q / ow * wp + q % ow;
                }
                // (A last, short tile repeats its last pixel, unwritten.)
                let acc = sums::<NV, MR>(padded, w, taps, &corner);
                for (i, row) in acc.iter().enumerate().take(n) {
                    for (v, a) in row.iter().enumerate() {
                        let c = c0 + v * LANES;
                        let mut a = *a;
                        if let Some(b) = bias {
                            a = _mm512_add_ps(a, _mm512_loadu_ps(b[c..c + LANES].as_ptr()));
                        }
                        if relu {
                            a = _mm512_max_ps(a, _mm512_setzero_ps());
                        }
                        // SAFETY: lane j writes out[(c + j) * l + p + i],
                        // inside `out` ([cout, l]; c + 15 < cout, p + i < l).
                        let at = out.as_mut_ptr().add(c * l + p + i);
                        _mm512_i32scatter_ps::<4>(at.cast(), planes, a);
                    }
                }
                p += n;
            }
        }
    }

    /// The `MR x NV` sums of one tile: for each `k`, one row of `NV` weight
    /// vectors times the `MR` pixels at `corner + taps[k]`.
    #[inline(always)]
    unsafe fn sums<const NV: usize, const MR: usize>(
        padded: &[f32],
        w: &[f32],
        taps: &[usize],
        corner: &[usize; MR],
    ) -> [[__m512; NV]; MR] {
        let mut acc = [[_mm512_setzero_ps(); NV]; MR];
        // SAFETY: the corners lie inside `padded` (`tiles`).
        let xs = corner.map(|c| padded.as_ptr().add(c));
        let mut wr = w.as_ptr();
        for t in taps {
            let mut wv = [_mm512_setzero_ps(); NV];
            for (v, r) in wv.iter_mut().enumerate() {
                // SAFETY: `w` holds `taps.len()` rows of NV vectors.
                *r = _mm512_loadu_ps(wr.add(v * LANES));
            }
            for (row, x) in acc.iter_mut().zip(&xs) {
                // SAFETY: corners and tap offsets were checked to stay
                // inside `padded` (`tiles`).
                let xv = _mm512_set1_ps(*x.add(*t));
                for (a, wv) in row.iter_mut().zip(&wv) {
                    *a = _mm512_fmadd_ps(xv, *wv, *a);
                }
            }
            wr = wr.add(NV * LANES);
        }
        acc
    }
}

#[cfg(test)]
mod tests {
    use super::super::gemm;
    use super::*;
    use crate::test_util::{corners, values};

    #[test]
    fn direct_kernel_equals_the_gemm_path() {
        if !vectorized() {
            println!("skipped: no AVX-512 on this CPU; the direct kernel is not used here");
            return;
        }
        let base = Geometry {
            batch: 3,
            cin: 5,
            h: 13,
            w: 11,
            cout: 64,
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
                cout: 96,
                kh: 5,
                kw: 2,
                padding: [2, 0],
                ..base
            },
            Geometry {
                cin: 1,
                h: 3,
                w: 3,
                ..base
            },
        ] {
            let x = values(g.batch * g.cin * g.h * g.w, 1);
            let w = values(g.cout * g.cin * g.kh * g.kw, 2);
            let b = values(g.cout, 3);
            for (bias, relu) in [(None, false), (Some(&b[..]), true)] {
                let got = forward(&x, [g.h, g.w], &w, bias, relu, &g);
                let want = gemm::forward_gemm(&x, &w, bias, relu, &g);
                assert_eq!(got.len(), want.len());
                for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                        "{g:?} [{i}]: {a} vs {b}"
                    );
                }
            }
        }
        // The top-left corner of larger planes, read in place.
        let plane = [base.h + 2, base.w + 1];
        let big = values(base.batch * base.cin * plane[0] * plane[1], 4);
        let corner = corners(&big, plane, base.h, base.w);
        let w = values(base.cout * base.cin * base.kh * base.kw, 5);
        assert_eq!(
            forward(&big, plane, &w, None, true, &base),
            forward(&corner, [base.h, base.w], &w, None, true, &base)
        );
        let strided = Geometry {
            stride: [2, 2],
            ..base
        };
        assert!(!supported(&strided));
        assert!(!supported(&Geometry { cout: 48, ..base }));
    }
}
