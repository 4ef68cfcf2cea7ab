//! Preprocessing and random augmentation with Keras `ImageDataGenerator`
//! meanings, in Keras's order: one affine transform (rotation, shift, shear,
//! zoom) with bilinear sampling and `fill_mode`, then flips, then brightness
//! (like PIL's `ImageEnhance.Brightness`), then `rescale`, then `normalize`.
//!
//! Two deliberate departures from Keras 3.15's code, both about geometry:
//! Keras swaps the axes of its shift parameters (its `width_shift_range`
//! moves rows) and turns non-square images about a point off their centre
//! (the centre's coordinates are swapped too).
//! Here `width_shift_range` moves the image horizontally by a fraction of its
//! width, `height_shift_range` vertically by a fraction of its height, and
//! every transform is about the true centre. `fill_mode = "wrap"` tiles the
//! image periodically (SciPy's `grid-wrap`); `reflect` mirrors about the
//! edge (`d c b a | a b c d`), as SciPy's `reflect`.

use rand::Rng;

use crate::plan::AugmentPlan;
use crate::vocab::FillMode;

/// An image as 32-bit floats in 0-255 units, rows of pixels, channels
/// interleaved (HWC), the layout the transforms work in.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub height: usize,
    pub width: usize,
    pub channels: usize,
    pub data: Vec<f32>,
}

impl Frame {
    pub fn from_u8(height: usize, width: usize, channels: usize, pixels: &[u8]) -> Frame {
        Frame {
            height,
            width,
            channels,
            data: pixels.iter().map(|&v| v as f32).collect(),
        }
    }

    /// Back to 8 bits, rounding and clamping (for pictures).
    pub fn to_u8(&self) -> Vec<u8> {
        self.data
            .iter()
            .map(|&v| v.round().clamp(0.0, 255.0) as u8)
            .collect()
    }
}

/// The random choices for one sample. Angles in degrees, shifts in pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    pub rotation: f64,
    /// Horizontal shift in pixels; positive moves the content left (Keras's sign).
    pub shift_x: f64,
    /// Vertical shift in pixels; positive moves the content up.
    pub shift_y: f64,
    pub shear: f64,
    /// Zoom factors: above 1 shows more of the image (the content shrinks).
    pub zoom_x: f64,
    pub zoom_y: f64,
    pub flip_horizontal: bool,
    pub flip_vertical: bool,
    pub brightness: Option<f64>,
}

impl Default for Params {
    fn default() -> Params {
        Params {
            rotation: 0.0,
            shift_x: 0.0,
            shift_y: 0.0,
            shear: 0.0,
            zoom_x: 1.0,
            zoom_y: 1.0,
            flip_horizontal: false,
            flip_vertical: false,
            brightness: None,
        }
    }
}

impl Params {
    /// Draw the parameters for an image of `height` x `width`, in a fixed
    /// order, only for the augmentations that are configured (as Keras does).
    pub fn draw(plan: &AugmentPlan, height: usize, width: usize, rng: &mut impl Rng) -> Params {
        let s = plan;
        let rotation = symmetric(rng, s.rotation_range);
        let shift_x = symmetric(rng, s.width_shift_range) * width as f64;
        let shift_y = symmetric(rng, s.height_shift_range) * height as f64;
        let shear = symmetric(rng, s.shear_range);
        let (zoom_x, zoom_y) = match s.zoom_range {
            Some([lo, hi]) if lo != 1.0 || hi != 1.0 => {
                (rng.random_range(lo..=hi), rng.random_range(lo..=hi))
            }
            _ => (1.0, 1.0),
        };
        let flip_horizontal = s.horizontal_flip && rng.random_bool(0.5);
        let flip_vertical = s.vertical_flip && rng.random_bool(0.5);
        let brightness = s.brightness_range.map(|[lo, hi]| {
            if lo < hi {
                rng.random_range(lo..=hi)
            } else {
                lo
            }
        });
        Params {
            rotation,
            shift_x,
            shift_y,
            shear,
            zoom_x,
            zoom_y,
            flip_horizontal,
            flip_vertical,
            brightness,
        }
    }

    fn has_affine(&self) -> bool {
        self.rotation != 0.0
            || self.shift_x != 0.0
            || self.shift_y != 0.0
            || self.shear != 0.0
            || self.zoom_x != 1.0
            || self.zoom_y != 1.0
    }

    /// The output-to-input map in (x = column, y = row) coordinates, about
    /// the image centre: rotation . shift . shear . zoom, as Keras composes it.
    pub fn matrix(&self, height: usize, width: usize) -> Affine {
        let (sin, cos) = self.rotation.to_radians().sin_cos();
        let rot = [[cos, -sin, 0.0], [sin, cos, 0.0]];
        let shift = [[1.0, 0.0, self.shift_x], [0.0, 1.0, self.shift_y]];
        let (ssin, scos) = self.shear.to_radians().sin_cos();
        let shear = [[1.0, -ssin, 0.0], [0.0, scos, 0.0]];
        let zoom = [[self.zoom_x, 0.0, 0.0], [0.0, self.zoom_y, 0.0]];
        let m = Affine(rot)
            .then(&Affine(shift))
            .then(&Affine(shear))
            .then(&Affine(zoom));
        let cx = (width as f64 - 1.0) / 2.0;
        let cy = (height as f64 - 1.0) / 2.0;
        let to_center = Affine([[1.0, 0.0, cx], [0.0, 1.0, cy]]);
        let from_center = Affine([[1.0, 0.0, -cx], [0.0, 1.0, -cy]]);
        to_center.then(&m).then(&from_center)
    }
}

/// Uniform in [-r, r], or 0 without drawing when `r` is 0.
fn symmetric(rng: &mut impl Rng, r: f64) -> f64 {
    if r > 0.0 {
        rng.random_range(-r..=r)
    } else {
        0.0
    }
}

/// A 2x3 affine matrix mapping output (x, y) to input (x, y).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Affine(pub [[f64; 3]; 2]);

impl Affine {
    /// `self * other` (apply `other` first).
    fn then(&self, o: &Affine) -> Affine {
        let a = &self.0;
        let b = &o.0;
        let mut r = [[0.0; 3]; 2];
        for (i, row) in r.iter_mut().enumerate() {
            for j in 0..3 {
                row[j] = a[i][0] * b[0][j] + a[i][1] * b[1][j] + if j == 2 { a[i][2] } else { 0.0 };
            }
        }
        Affine(r)
    }
}

/// Resample `src` through `m` (output pixel -> input position) with
/// bilinear interpolation; positions outside the image follow `fill`.
pub fn affine(src: &Frame, m: &Affine, fill: FillMode, cval: f32) -> Frame {
    match src.channels {
        1 => affine_n::<1>(src, m, fill, cval),
        3 => affine_n::<3>(src, m, fill, cval),
        _ => affine_any(src, m, fill, cval),
    }
}

/// Matrix entries this close to a multiple of 1/2 are taken as exact, so
/// that quarter turns, flips and whole-pixel shifts land exactly on pixels.
const SNAP: f64 = 1e-9;

fn snapped(m: &Affine) -> [[f64; 3]; 2] {
    m.0.map(|row| {
        row.map(|v| {
            let r = floor(v * 2.0 + 0.5) as f64 / 2.0;
            if (v - r).abs() < SNAP {
                r
            } else {
                v
            }
        })
    })
}

/// `v.floor()` as an integer, by casts: `f64::floor` is a library call on
/// baseline x86-64 (no SSE4.1), far too slow per pixel. Positions here are
/// small, finite numbers.
fn floor(v: f64) -> i64 {
    let i = v as i64;
    if (i as f64) > v {
        i - 1
    } else {
        i
    }
}

/// Where output pixel (x, y) samples from: the top-left neighbour, the
/// fractions, and whether all four neighbours are inside the image.
#[inline(always)]
fn locate(sx: f64, sy: f64, w: usize, h: usize) -> (i64, i64, f32, f32, bool) {
    let (x0, y0) = (floor(sx), floor(sy));
    let (fx, fy) = ((sx - x0 as f64) as f32, (sy - y0 as f64) as f32);
    let inside = x0 >= 0 && y0 >= 0 && (x0 as usize) + 1 < w && (y0 as usize) + 1 < h;
    (x0, y0, fx, fy, inside)
}

#[inline(always)]
fn lerp2(p00: f32, p01: f32, p10: f32, p11: f32, fx: f32, fy: f32) -> f32 {
    let top = p00 + (p01 - p00) * fx;
    let bottom = p10 + (p11 - p10) * fx;
    top + (bottom - top) * fy
}

/// Bilinear sample of a C-channel HWC image at input position (sx, sy).
#[inline(always)]
fn sample<T: Copy + Into<f32>, const C: usize>(
    data: &[T],
    w: usize,
    h: usize,
    sx: f64,
    sy: f64,
    fill: FillMode,
    cval: f32,
) -> [f32; C] {
    if fill == FillMode::Constant
        && !(sx >= 0.0 && sy >= 0.0 && sx <= (w - 1) as f64 && sy <= (h - 1) as f64)
    {
        return [cval; C];
    }
    let (x0, y0, fx, fy, inside) = locate(sx, sy, w, h);
    let mut px = [0.0f32; C];
    if inside {
        let base = (y0 as usize * w + x0 as usize) * C;
        let (r0, r1) = (
            &data[base..base + 2 * C],
            &data[base + w * C..base + w * C + 2 * C],
        );
        for ch in 0..C {
            px[ch] = lerp2(
                r0[ch].into(),
                r0[C + ch].into(),
                r1[ch].into(),
                r1[C + ch].into(),
                fx,
                fy,
            );
        }
    } else {
        let (c0, c1) = (index(x0, w, fill), index(x0 + 1, w, fill));
        let (q0, q1) = (index(y0, h, fill) * w, index(y0 + 1, h, fill) * w);
        for ch in 0..C {
            let p = |r: usize, c: usize| -> f32 { data[(r + c) * C + ch].into() };
            px[ch] = lerp2(p(q0, c0), p(q0, c1), p(q1, c0), p(q1, c1), fx, fy);
        }
    }
    px
}

fn affine_n<const C: usize>(src: &Frame, m: &Affine, fill: FillMode, cval: f32) -> Frame {
    let (h, w) = (src.height, src.width);
    let mut out = vec![0.0f32; h * w * C];
    let [[a, b, tx], [d, e, ty]] = snapped(m);
    for (row, line) in out.chunks_exact_mut(w * C).enumerate() {
        let y = row as f64;
        let (rx, ry) = (b * y + tx, e * y + ty);
        for (col, px) in line.chunks_exact_mut(C).enumerate() {
            let x = col as f64;
            px.copy_from_slice(&sample::<f32, C>(
                &src.data,
                w,
                h,
                a * x + rx,
                d * x + ry,
                fill,
                cval,
            ));
        }
    }
    Frame {
        height: h,
        width: w,
        channels: C,
        data: out,
    }
}

/// Any channel count (the plan allows only 1 and 3; kept for completeness).
fn affine_any(src: &Frame, m: &Affine, fill: FillMode, cval: f32) -> Frame {
    let (h, w, c) = (src.height, src.width, src.channels);
    let planes: Vec<Frame> = (0..c)
        .map(|ch| Frame {
            height: h,
            width: w,
            channels: 1,
            data: src
                .data
                .iter()
                .skip(ch)
                .step_by(c.max(1))
                .copied()
                .collect(),
        })
        .map(|plane| affine_n::<1>(&plane, m, fill, cval))
        .collect();
    let mut data = vec![0.0f32; h * w * c];
    for (ch, plane) in planes.iter().enumerate() {
        for (i, v) in plane.data.iter().enumerate() {
            data[i * c + ch] = *v;
        }
    }
    Frame {
        height: h,
        width: w,
        channels: c,
        data,
    }
}

/// Map a possibly out-of-range index into `0..n` by the fill mode (the
/// constant mode only gets here for in-range positions and their right or
/// lower neighbour, which clamps).
fn index(i: i64, n: usize, fill: FillMode) -> usize {
    let n = n as i64;
    let i = match fill {
        FillMode::Nearest | FillMode::Constant => i.clamp(0, n - 1),
        FillMode::Wrap => i.rem_euclid(n),
        FillMode::Reflect => {
            let period = 2 * n;
            let m = i.rem_euclid(period);
            if m < n {
                m
            } else {
                period - 1 - m
            }
        }
    };
    i as usize
}

pub fn flip_horizontal(f: &mut Frame) {
    let (w, c) = (f.width, f.channels);
    for row in f.data.chunks_mut(w * c) {
        for col in 0..w / 2 {
            for ch in 0..c {
                row.swap(col * c + ch, (w - 1 - col) * c + ch);
            }
        }
    }
}

pub fn flip_vertical(f: &mut Frame) {
    let stride = f.width * f.channels;
    let h = f.height;
    for row in 0..h / 2 {
        let (top, bottom) = f.data.split_at_mut((h - 1 - row) * stride);
        top[row * stride..(row + 1) * stride].swap_with_slice(&mut bottom[..stride]);
    }
}

/// PIL's `ImageEnhance.Brightness(img).enhance(factor)` on the image as
/// Keras hands it over: values truncated to 8 bits, multiplied by the
/// factor, truncated and clipped to 0-255 again.
pub fn brightness(f: &mut Frame, factor: f64) {
    // Truncate and saturate: PIL's uint8 conversion and clip.
    rows::brightness(&mut f.data, factor as f32);
}

/// Apply the random part (geometry, flips, brightness) to `frame`.
pub fn apply(frame: Frame, p: &Params, plan: &AugmentPlan) -> Frame {
    let mut f = if p.has_affine() {
        let m = p.matrix(frame.height, frame.width);
        affine(&frame, &m, plan.fill_mode, plan.cval as f32)
    } else {
        frame
    };
    if p.flip_horizontal {
        flip_horizontal(&mut f);
    }
    if p.flip_vertical {
        flip_vertical(&mut f);
    }
    if let Some(b) = p.brightness {
        brightness(&mut f, b);
    }
    f
}

/// The deterministic part every split gets: `rescale`, then per-channel
/// `(x - mean) / std`; written channel-first (CHW) into `out`.
#[derive(Debug, Clone, PartialEq)]
pub struct Standardize {
    pub rescale: f32,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Standardize {
    pub fn new(plan: &AugmentPlan, channels: usize) -> Standardize {
        let (mean, std) = match &plan.normalize {
            Some(n) => (
                n.mean.iter().map(|&v| v as f32).collect(),
                n.std.iter().map(|&v| v as f32).collect(),
            ),
            None => (vec![0.0; channels], vec![1.0; channels]),
        };
        Standardize {
            rescale: plan.rescale as f32,
            mean,
            std,
        }
    }

    pub fn write_chw(&self, f: &Frame, out: &mut [f32]) {
        let plane = f.height * f.width;
        debug_assert_eq!(out.len(), plane * f.channels);
        for ch in 0..f.channels {
            let (mean, inv_std) = (self.mean[ch], 1.0 / self.std[ch]);
            let dst = &mut out[ch * plane..(ch + 1) * plane];
            for (i, d) in dst.iter_mut().enumerate() {
                *d = (f.data[i * f.channels + ch] * self.rescale - mean) * inv_std;
            }
        }
    }
}

/// The whole per-sample pipeline in one pass, from 8-bit HWC pixels
/// straight into model input (CHW floats): the same arithmetic, in the same
/// order, as [`apply`] followed by [`Standardize::write_chw`] (a test holds
/// them equal bit for bit), without intermediate images. Flips are folded
/// into the sampling position.
#[allow(clippy::too_many_arguments)]
pub fn render_chw(
    src: &[u8],
    height: usize,
    width: usize,
    channels: usize,
    p: &Params,
    plan: &AugmentPlan,
    st: &Standardize,
    out: &mut [f32],
) {
    match channels {
        1 => render_n::<1>(src, height, width, p, plan, st, out),
        3 => render_n::<3>(src, height, width, p, plan, st, out),
        _ => {
            let f = apply(Frame::from_u8(height, width, channels, src), p, plan);
            st.write_chw(&f, out);
        }
    }
}

fn render_n<const C: usize>(
    src: &[u8],
    h: usize,
    w: usize,
    p: &Params,
    plan: &AugmentPlan,
    st: &Standardize,
    out: &mut [f32],
) {
    let plane = h * w;
    let m = p.has_affine().then(|| snapped(&p.matrix(h, w)));
    let (fill, cval) = (plan.fill_mode, plan.cval as f32);
    // One output row, channel-planar: channel `ch` at `line[ch * w..][..w]`.
    let mut line = vec![0.0f32; w * C];
    for row in 0..h {
        // Geometry (and flips) for one output row.
        let fr = if p.flip_vertical { h - 1 - row } else { row };
        match m {
            Some([[a, b, tx], [d, e, ty]]) => {
                let y = fr as f64;
                let (rx, ry) = (b * y + tx, e * y + ty);
                if matches!(fill, FillMode::Nearest | FillMode::Constant) {
                    rows::clamped::<C>(
                        src,
                        w,
                        h,
                        &mut line,
                        p.flip_horizontal,
                        [a, d, rx, ry],
                        fill,
                        cval,
                    );
                } else {
                    for col in 0..w {
                        let x = if p.flip_horizontal { w - 1 - col } else { col } as f64;
                        let px = sample::<u8, C>(src, w, h, a * x + rx, d * x + ry, fill, cval);
                        for ch in 0..C {
                            line[ch * w + col] = px[ch];
                        }
                    }
                }
            }
            None => {
                let src_row = &src[fr * w * C..(fr + 1) * w * C];
                for col in 0..w {
                    let fc = if p.flip_horizontal { w - 1 - col } else { col };
                    for ch in 0..C {
                        line[ch * w + col] = src_row[fc * C + ch] as f32;
                    }
                }
            }
        }
        if let Some(b) = p.brightness {
            rows::brightness(&mut line, b as f32);
        }
        // Rescale, normalize, channel-first.
        for ch in 0..C {
            let (mean, inv_std, rescale) = (st.mean[ch], 1.0 / st.std[ch], st.rescale);
            let dst = &mut out[ch * plane + row * w..ch * plane + (row + 1) * w];
            for (d, v) in dst.iter_mut().zip(&line[ch * w..(ch + 1) * w]) {
                *d = (v * rescale - mean) * inv_std;
            }
        }
    }
}

/// `v as u8 as f32` (truncate, saturate to 0..=255, NaN to 0), written so
/// that it vectorises: same value for every input.
#[inline(always)]
fn to_u8(v: f32) -> f32 {
    v.clamp(0.0, 255.0) as i32 as f32
}

/// Rows of bilinear samples for the `nearest` and `constant` fill modes.
/// Both read the neighbours with clamped indices (inside the image that
/// changes nothing), so every pixel takes the same path: a branch-free
/// loop, and on x86-64 with AVX2 eight pixels at a time with gathers.
/// Either way equal to [`sample`] bit for bit (the tests hold them so).
mod rows {
    use super::{floor, lerp2, to_u8, FillMode};

    /// Output column `x` of a row samples input position
    /// `(a * x + rx, d * x + ry)`; `line` is channel-planar.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn clamped<const C: usize>(
        src: &[u8],
        w: usize,
        h: usize,
        line: &mut [f32],
        flip: bool,
        coef: [f64; 4],
        fill: FillMode,
        cval: f32,
    ) {
        #[cfg(target_arch = "x86_64")]
        {
            if avx2::available() && C <= 3 {
                // SAFETY: AVX2 is present (checked at run time).
                let done = unsafe { avx2::clamped::<C>(src, w, h, line, flip, coef, fill, cval) };
                scalar::<C>(src, w, h, line, flip, coef, fill, cval, done);
                return;
            }
        }
        scalar::<C>(src, w, h, line, flip, coef, fill, cval, 0);
    }

    /// [`super::brightness`] on a row: `to_u8(to_u8(v) * b)`.
    pub(super) fn brightness(line: &mut [f32], b: f32) {
        // SAFETY: AVX2 is present (checked at run time).
        #[cfg(target_arch = "x86_64")]
        let from = if avx2::available() {
            unsafe { avx2::brightness(line, b) }
        } else {
            0
        };
        #[cfg(not(target_arch = "x86_64"))]
        let from = 0;
        for v in &mut line[from..] {
            *v = to_u8(to_u8(*v) * b);
        }
    }

    /// Columns `from..w` one at a time.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn scalar<const C: usize>(
        src: &[u8],
        w: usize,
        h: usize,
        line: &mut [f32],
        flip: bool,
        [a, d, rx, ry]: [f64; 4],
        fill: FillMode,
        cval: f32,
        from: usize,
    ) {
        let (wl, hl) = (w as i64 - 1, h as i64 - 1);
        let (wmax, hmax) = ((w - 1) as f64, (h - 1) as f64);
        let constant = fill == FillMode::Constant;
        for col in from..w {
            let x = if flip { w - 1 - col } else { col } as f64;
            let (sx, sy) = (a * x + rx, d * x + ry);
            if constant && !(sx >= 0.0 && sy >= 0.0 && sx <= wmax && sy <= hmax) {
                for ch in 0..C {
                    line[ch * w + col] = cval;
                }
                continue;
            }
            let (x0, y0) = (floor(sx), floor(sy));
            let (fx, fy) = ((sx - x0 as f64) as f32, (sy - y0 as f64) as f32);
            let (xa, xb) = (
                x0.clamp(0, wl) as usize * C,
                (x0 + 1).clamp(0, wl) as usize * C,
            );
            let (ra, rb) = (
                y0.clamp(0, hl) as usize * w * C,
                (y0 + 1).clamp(0, hl) as usize * w * C,
            );
            for ch in 0..C {
                let p = |i: usize| src[i + ch] as f32;
                line[ch * w + col] = lerp2(p(ra + xa), p(ra + xb), p(rb + xa), p(rb + xb), fx, fy);
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    pub(super) mod avx2 {
        use std::arch::x86_64::*;
        use std::sync::OnceLock;

        use super::FillMode;

        pub fn available() -> bool {
            static AVX2: OnceLock<bool> = OnceLock::new();
            *AVX2.get_or_init(|| is_x86_feature_detected!("avx2"))
        }

        /// The brightness step on whole groups of eight values; returns
        /// how many were done. `max(v, 0)` turns NaN into 0 and truncating
        /// conversion is `as i32`: the same values as `to_u8`.
        ///
        /// # Safety
        /// The CPU must support AVX2.
        #[target_feature(enable = "avx2")]
        pub unsafe fn brightness(line: &mut [f32], b: f32) -> usize {
            let (zero, top, vb) = (
                _mm256_setzero_ps(),
                _mm256_set1_ps(255.0),
                _mm256_set1_ps(b),
            );
            let to_u8 = |v: __m256| {
                _mm256_cvtepi32_ps(_mm256_cvttps_epi32(_mm256_min_ps(
                    _mm256_max_ps(v, zero),
                    top,
                )))
            };
            let whole = line.len() / 8 * 8;
            for c in line[..whole].chunks_exact_mut(8) {
                let v = _mm256_loadu_ps(c.as_ptr());
                _mm256_storeu_ps(c.as_mut_ptr(), to_u8(_mm256_mul_ps(to_u8(v), vb)));
            }
            whole
        }

        /// Eight columns at a time, as far as whole groups of eight go and
        /// every 32-bit gather stays inside `src`; returns the first column
        /// not written. The arithmetic is the scalar path's, operation for
        /// operation (no fused multiply-add), so the values are identical.
        ///
        /// # Safety
        /// The CPU must support AVX2.
        #[target_feature(enable = "avx2")]
        #[allow(clippy::too_many_arguments)]
        pub unsafe fn clamped<const C: usize>(
            src: &[u8],
            w: usize,
            h: usize,
            line: &mut [f32],
            flip: bool,
            [a, d, rx, ry]: [f64; 4],
            fill: FillMode,
            cval: f32,
        ) -> usize {
            // Each gather reads 4 bytes from the first byte of a pixel: the
            // last pixels of the image would read past its end.
            let len = src.len();
            if w < 8 || h == 0 || len != w * h * C || len > i32::MAX as usize || len < 4 {
                return 0;
            }
            let last_safe = (len - 4) as i32; // largest byte offset a gather may start at
            let (wl, hl) = (
                _mm256_set1_epi32(w as i32 - 1),
                _mm256_set1_epi32(h as i32 - 1),
            );
            let zero = _mm256_setzero_si256();
            let (stride, cc) = (
                _mm256_set1_epi32((w * C) as i32),
                _mm256_set1_epi32(C as i32),
            );
            let (wmax, hmax) = (
                _mm256_set1_pd((w - 1) as f64),
                _mm256_set1_pd((h - 1) as f64),
            );
            let (va, vd, vrx, vry) = (
                _mm256_set1_pd(a),
                _mm256_set1_pd(d),
                _mm256_set1_pd(rx),
                _mm256_set1_pd(ry),
            );
            let constant = fill == FillMode::Constant;
            let vcval = _mm256_set1_ps(cval);
            let byte = _mm256_set1_epi32(0xFF);
            let base = src.as_ptr() as *const i32;
            let one = _mm256_set1_epi32(1);
            // Far-off positions are clamped before the i32 conversion (the
            // scalar path's i64 cannot overflow; i32 could).
            let lim = _mm256_set1_pd(1e9);
            let fl =
                |v: __m256d| _mm256_round_pd::<{ _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC }>(v);
            let frac = |v: [__m256d; 2], f: [__m256d; 2]| {
                _mm256_set_m128(
                    _mm256_cvtpd_ps(_mm256_sub_pd(v[1], f[1])),
                    _mm256_cvtpd_ps(_mm256_sub_pd(v[0], f[0])),
                )
            };
            let to_i = |v: [__m256d; 2]| {
                let c = |v: __m256d| {
                    _mm256_cvttpd_epi32(_mm256_max_pd(
                        _mm256_min_pd(v, lim),
                        _mm256_sub_pd(_mm256_setzero_pd(), lim),
                    ))
                };
                _mm256_set_m128i(c(v[1]), c(v[0]))
            };
            let clamp = |v: __m256i, hi: __m256i| _mm256_min_epi32(_mm256_max_epi32(v, zero), hi);
            let mut col = 0;
            while col + 8 <= w {
                // x for columns col..col+8, as f64 in two halves.
                let xs: [f64; 8] =
                    std::array::from_fn(|k| if flip { w - 1 - (col + k) } else { col + k } as f64);
                let (x_lo, x_hi) = (
                    _mm256_loadu_pd(xs.as_ptr()),
                    _mm256_loadu_pd(xs.as_ptr().add(4)),
                );
                // sx = a * x + rx, sy = d * x + ry (separate multiply and add).
                let sx = [
                    _mm256_add_pd(_mm256_mul_pd(va, x_lo), vrx),
                    _mm256_add_pd(_mm256_mul_pd(va, x_hi), vrx),
                ];
                let sy = [
                    _mm256_add_pd(_mm256_mul_pd(vd, x_lo), vry),
                    _mm256_add_pd(_mm256_mul_pd(vd, x_hi), vry),
                ];
                let (x0d, y0d) = ([fl(sx[0]), fl(sx[1])], [fl(sy[0]), fl(sy[1])]);
                let (fx, fy) = (frac(sx, x0d), frac(sy, y0d));
                let (x0, y0) = (to_i(x0d), to_i(y0d));
                let xa = _mm256_mullo_epi32(clamp(x0, wl), cc);
                let xb = _mm256_mullo_epi32(clamp(_mm256_add_epi32(x0, one), wl), cc);
                let ra = _mm256_mullo_epi32(clamp(y0, hl), stride);
                let rb = _mm256_mullo_epi32(clamp(_mm256_add_epi32(y0, one), hl), stride);
                let offs = [
                    _mm256_add_epi32(ra, xa),
                    _mm256_add_epi32(ra, xb),
                    _mm256_add_epi32(rb, xa),
                    _mm256_add_epi32(rb, xb),
                ];
                // A gather past the end: leave this group (and the rest of the row) to the scalar path.
                let mut worst = [0i32; 8];
                _mm256_storeu_si256(
                    worst.as_mut_ptr() as *mut __m256i,
                    _mm256_max_epi32(
                        _mm256_max_epi32(offs[0], offs[1]),
                        _mm256_max_epi32(offs[2], offs[3]),
                    ),
                );
                if worst.iter().any(|&o| o > last_safe) {
                    return col;
                }
                let g = |o: __m256i| _mm256_i32gather_epi32::<1>(base, o);
                let q = [g(offs[0]), g(offs[1]), g(offs[2]), g(offs[3])];
                let outside = if constant {
                    let inside = |s: __m256d, max: __m256d| {
                        _mm256_and_pd(
                            _mm256_cmp_pd::<_CMP_GE_OQ>(s, _mm256_setzero_pd()),
                            _mm256_cmp_pd::<_CMP_LE_OQ>(s, max),
                        )
                    };
                    let both = |k: usize| _mm256_and_pd(inside(sx[k], wmax), inside(sy[k], hmax));
                    // f64 masks (4 x 64 bits) to one f32 mask (8 x 32 bits), inverted.
                    let m = _mm256_set_m128(_mm256_cvtpd_ps(both(1)), _mm256_cvtpd_ps(both(0)));
                    Some(_mm256_cmp_ps::<_CMP_EQ_OQ>(m, _mm256_setzero_ps()))
                } else {
                    None
                };
                for ch in 0..C {
                    let shift = _mm_cvtsi32_si128(8 * ch as i32);
                    let chan = |v: __m256i| {
                        _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srl_epi32(v, shift), byte))
                    };
                    let (p00, p01, p10, p11) = (chan(q[0]), chan(q[1]), chan(q[2]), chan(q[3]));
                    let top = _mm256_add_ps(p00, _mm256_mul_ps(_mm256_sub_ps(p01, p00), fx));
                    let bottom = _mm256_add_ps(p10, _mm256_mul_ps(_mm256_sub_ps(p11, p10), fx));
                    let mut v = _mm256_add_ps(top, _mm256_mul_ps(_mm256_sub_ps(bottom, top), fy));
                    if let Some(out) = outside {
                        v = _mm256_blendv_ps(v, vcval, out);
                    }
                    _mm256_storeu_ps(line.as_mut_ptr().add(ch * w + col), v);
                }
                col += 8;
            }
            col
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Normalize;

    /// A 1-channel frame from rows of values.
    fn gray(rows: &[&[f32]]) -> Frame {
        Frame {
            height: rows.len(),
            width: rows[0].len(),
            channels: 1,
            data: rows.concat(),
        }
    }

    fn rows(f: &Frame) -> Vec<Vec<f32>> {
        f.data
            .chunks(f.width * f.channels)
            .map(|r| r.to_vec())
            .collect()
    }

    fn grid4() -> Frame {
        gray(&[
            &[0., 1., 2., 3.],
            &[4., 5., 6., 7.],
            &[8., 9., 10., 11.],
            &[12., 13., 14., 15.],
        ])
    }

    #[test]
    fn horizontal_flip_mirrors_columns_of_every_channel() {
        let mut f = Frame {
            height: 1,
            width: 3,
            channels: 2,
            data: vec![1., 10., 2., 20., 3., 30.],
        };
        flip_horizontal(&mut f);
        assert_eq!(f.data, vec![3., 30., 2., 20., 1., 10.]);
    }

    #[test]
    fn vertical_flip_mirrors_rows() {
        let mut f = gray(&[&[1., 2.], &[3., 4.], &[5., 6.]]);
        flip_vertical(&mut f);
        assert_eq!(rows(&f), vec![vec![5., 6.], vec![3., 4.], vec![1., 2.]]);
    }

    #[test]
    fn rotation_by_90_degrees_turns_the_image_counter_clockwise() {
        // Same result as Keras's apply_affine_transform(x, theta=90) and np.rot90.
        let p = Params {
            rotation: 90.0,
            ..Params::default()
        };
        let out = affine(&grid4(), &p.matrix(4, 4), FillMode::Nearest, 0.0);
        assert_eq!(
            rows(&out),
            vec![
                vec![3., 7., 11., 15.],
                vec![2., 6., 10., 14.],
                vec![1., 5., 9., 13.],
                vec![0., 4., 8., 12.],
            ]
        );
    }

    #[test]
    fn width_shift_moves_columns_and_fills_by_mode() {
        let shift = |dx: f64, fill: FillMode, cval: f32| {
            let p = Params {
                shift_x: dx,
                ..Params::default()
            };
            rows(&affine(&grid4(), &p.matrix(4, 4), fill, cval))[0].clone()
        };
        // Output column c samples input column c + dx.
        assert_eq!(shift(1.0, FillMode::Nearest, 0.0), vec![1., 2., 3., 3.]);
        assert_eq!(shift(-1.0, FillMode::Nearest, 0.0), vec![0., 0., 1., 2.]);
        assert_eq!(shift(3.0, FillMode::Reflect, 0.0), vec![3., 3., 2., 1.]);
        assert_eq!(shift(3.0, FillMode::Wrap, 0.0), vec![3., 0., 1., 2.]);
        assert_eq!(
            shift(1.5, FillMode::Constant, -1.0),
            vec![1.5, 2.5, -1., -1.]
        );
    }

    #[test]
    fn every_channel_moves_alike_whatever_the_channel_count() {
        let p = Params {
            rotation: 90.0,
            ..Params::default()
        };
        let m = p.matrix(4, 4);
        let one = affine(&grid4(), &m, FillMode::Nearest, 0.0);
        for c in [2, 3] {
            let multi = Frame {
                height: 4,
                width: 4,
                channels: c,
                data: grid4()
                    .data
                    .iter()
                    .flat_map(|&v| (0..c).map(move |k| v + 100.0 * k as f32))
                    .collect(),
            };
            let out = affine(&multi, &m, FillMode::Nearest, 0.0);
            for (i, v) in one.data.iter().enumerate() {
                for k in 0..c {
                    assert_eq!(out.data[i * c + k], v + 100.0 * k as f32, "{c} channels");
                }
            }
        }
    }

    #[test]
    fn height_shift_moves_rows() {
        let p = Params {
            shift_y: 1.0,
            ..Params::default()
        };
        let out = affine(&grid4(), &p.matrix(4, 4), FillMode::Nearest, 0.0);
        assert_eq!(rows(&out)[0], vec![4., 5., 6., 7.]);
        assert_eq!(rows(&out)[3], vec![12., 13., 14., 15.]);
    }

    #[test]
    fn zoom_and_shear_match_keras_on_a_square_image() {
        // Keras: apply_affine_transform(x, zx=2) on this 4x4 grid.
        let p = Params {
            zoom_x: 2.0,
            ..Params::default()
        };
        let out = affine(&grid4(), &p.matrix(4, 4), FillMode::Nearest, 0.0);
        assert_eq!(rows(&out)[0], vec![0., 0.5, 2.5, 3.]);
        // Keras: shear=45 gives 2.8180194, 3.8180194, 4.7573595, 4.7573595 on row 0.
        let p = Params {
            shear: 45.0,
            ..Params::default()
        };
        let out = affine(&grid4(), &p.matrix(4, 4), FillMode::Nearest, 0.0);
        for (got, want) in rows(&out)[0]
            .iter()
            .zip([2.8180194, 3.8180194, 4.7573595, 4.7573595])
        {
            assert!((got - want).abs() < 1e-4, "{got} vs {want}");
        }
    }

    #[test]
    fn brightness_truncates_like_pil() {
        // PIL: ImageEnhance.Brightness on [100, 201, 255, 3, 0, 77].
        let mut f = gray(&[&[100., 201., 255., 3., 0., 77.]]);
        let original = f.clone();
        brightness(&mut f, 0.5);
        assert_eq!(f.data, vec![50., 100., 127., 1., 0., 38.]);
        let mut g = original.clone();
        brightness(&mut g, 1.5);
        assert_eq!(g.data, vec![150., 255., 255., 4., 0., 115.]);
        let mut h = gray(&[&[100.7, -3.0]]);
        brightness(&mut h, 1.0);
        assert_eq!(
            h.data,
            vec![100., 0.],
            "values are truncated to 8 bits first"
        );
    }

    #[test]
    fn standardize_rescales_then_normalizes_into_chw() {
        let f = Frame {
            height: 1,
            width: 2,
            channels: 2,
            data: vec![255., 0., 51., 102.],
        };
        let p = AugmentPlan {
            rescale: 1.0 / 255.0,
            normalize: Some(Normalize {
                mean: vec![0.5, 0.0],
                std: vec![0.5, 2.0],
            }),
            ..AugmentPlan::default()
        };
        let s = Standardize::new(&p, 2);
        let mut out = vec![0.0; 4];
        s.write_chw(&f, &mut out);
        let want = [1.0, (0.2 - 0.5) / 0.5, 0.0, 0.4 / 2.0];
        for (g, w) in out.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{out:?}");
        }
    }

    #[test]
    fn draw_only_uses_what_is_configured_and_stays_in_range() {
        let p = AugmentPlan {
            rotation_range: 90.0,
            width_shift_range: 0.5,
            brightness_range: Some([0.1, 0.7]),
            horizontal_flip: true,
            ..AugmentPlan::default()
        };
        let mut rng = crate::data::split::rng(&[1]);
        let mut flips = 0;
        for _ in 0..200 {
            let d = Params::draw(&p, 10, 20, &mut rng);
            assert!(d.rotation.abs() <= 90.0);
            assert!(d.shift_x.abs() <= 10.0);
            assert_eq!(d.shift_y, 0.0);
            assert_eq!((d.zoom_x, d.zoom_y, d.shear), (1.0, 1.0, 0.0));
            assert!(!d.flip_vertical);
            let b = d.brightness.unwrap_or(-1.0);
            assert!((0.1..=0.7).contains(&b));
            flips += d.flip_horizontal as usize;
        }
        assert!(
            (60..140).contains(&flips),
            "about half the images flip: {flips}"
        );
        assert_eq!(
            Params::draw(&AugmentPlan::default(), 4, 4, &mut rng),
            Params::default()
        );
    }

    #[test]
    fn the_row_brightness_equals_the_scalar_one_for_every_kind_of_value() {
        let special = [
            f32::NAN,
            -0.0,
            0.0,
            -1.5,
            0.999,
            254.99,
            255.0,
            255.5,
            300.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            1e10,
        ];
        let values: Vec<f32> = special
            .iter()
            .copied()
            .chain((0..2000).map(|i| i as f32 * 0.137 - 10.0))
            .collect();
        for b in [0.1f32, 0.7, 1.0, 1.9] {
            let mut row = values.clone();
            rows::brightness(&mut row, b);
            for (v, got) in values.iter().zip(&row) {
                let want = (*v as u8 as f32 * b) as u8 as f32;
                assert_eq!(got.to_bits(), want.to_bits(), "{v} x {b}");
            }
        }
    }

    #[test]
    fn the_vector_row_sampler_equals_the_scalar_one() {
        use rand::Rng;
        let mut rng = crate::data::split::rng(&[11]);
        let mut vector_columns = 0;
        for fill in [FillMode::Nearest, FillMode::Constant] {
            for channels in [1usize, 3] {
                let (h, w) = (17, 40);
                let src: Vec<u8> = (0..h * w * channels).map(|_| rng.random()).collect();
                for trial in 0..200 {
                    let angle: f64 = rng.random_range(-3.2..3.2);
                    let zoom: f64 = rng.random_range(0.3..3.0);
                    let (a, d) = (angle.cos() * zoom, angle.sin() * zoom);
                    let (rx, ry) = (rng.random_range(-60.0..60.0), rng.random_range(-30.0..30.0));
                    let coef = [a, d, rx, ry];
                    let flip = trial % 2 == 1;
                    let mut scalar = vec![f32::NAN; w * channels];
                    let mut any = vec![f32::NAN; w * channels];
                    match channels {
                        1 => {
                            rows::scalar::<1>(&src, w, h, &mut scalar, flip, coef, fill, 9.0, 0);
                            rows::clamped::<1>(&src, w, h, &mut any, flip, coef, fill, 9.0);
                        }
                        _ => {
                            rows::scalar::<3>(&src, w, h, &mut scalar, flip, coef, fill, 9.0, 0);
                            rows::clamped::<3>(&src, w, h, &mut any, flip, coef, fill, 9.0);
                        }
                    }
                    #[cfg(target_arch = "x86_64")]
                    if rows::avx2::available() {
                        let mut v = vec![f32::NAN; w * channels];
                        // SAFETY: AVX2 is present.
                        vector_columns += match channels {
                            1 => unsafe {
                                rows::avx2::clamped::<1>(&src, w, h, &mut v, flip, coef, fill, 9.0)
                            },
                            _ => unsafe {
                                rows::avx2::clamped::<3>(&src, w, h, &mut v, flip, coef, fill, 9.0)
                            },
                        };
                    }
                    let same = scalar
                        .iter()
                        .zip(&any)
                        .all(|(x, y)| x.to_bits() == y.to_bits());
                    assert!(
                        same,
                        "{fill:?} {channels} channels {coef:?} flip {flip}:\n{scalar:?}\n{any:?}"
                    );
                }
            }
        }
        #[cfg(target_arch = "x86_64")]
        if rows::avx2::available() {
            assert!(
                vector_columns > 20_000,
                "the vector path ran for {vector_columns} columns"
            );
        }
    }

    #[test]
    fn the_one_pass_pipeline_equals_the_step_by_step_one() {
        use rand::Rng;
        let mut rng = crate::data::split::rng(&[9]);
        for (k, fill) in [
            FillMode::Nearest,
            FillMode::Constant,
            FillMode::Reflect,
            FillMode::Wrap,
        ]
        .into_iter()
        .enumerate()
        {
            for channels in [1, 3] {
                let (h, w) = (9 + k, 13);
                let src: Vec<u8> = (0..h * w * channels).map(|_| rng.random()).collect();
                let p = AugmentPlan {
                    rescale: 1.0 / 255.0,
                    normalize: Some(Normalize {
                        mean: vec![0.4; channels],
                        std: vec![0.2; channels],
                    }),
                    rotation_range: 90.0,
                    width_shift_range: 0.3,
                    height_shift_range: 0.2,
                    shear_range: 20.0,
                    zoom_range: Some([0.7, 1.3]),
                    brightness_range: Some([0.2, 1.8]),
                    horizontal_flip: true,
                    vertical_flip: true,
                    fill_mode: fill,
                    cval: 77.0,
                };
                let st = Standardize::new(&p, channels);
                for _ in 0..20 {
                    let params = Params::draw(&p, h, w, &mut rng);
                    let mut reference = vec![0.0; h * w * channels];
                    st.write_chw(
                        &apply(Frame::from_u8(h, w, channels, &src), &params, &p),
                        &mut reference,
                    );
                    let mut fused = vec![0.0; h * w * channels];
                    render_chw(&src, h, w, channels, &params, &p, &st, &mut fused);
                    assert_eq!(
                        fused, reference,
                        "{fill:?}, {channels} channels, {params:?}"
                    );
                }
                let none = Params::default();
                let mut reference = vec![0.0; h * w * channels];
                st.write_chw(
                    &apply(Frame::from_u8(h, w, channels, &src), &none, &p),
                    &mut reference,
                );
                let mut fused = vec![0.0; h * w * channels];
                render_chw(&src, h, w, channels, &none, &p, &st, &mut fused);
                assert_eq!(fused, reference);
            }
        }
    }

    #[test]
    fn apply_runs_geometry_then_flips_then_brightness() {
        let p = Params {
            shift_x: 1.0,
            flip_horizontal: true,
            brightness: Some(0.5),
            ..Params::default()
        };
        let out = apply(grid4(), &p, &AugmentPlan::default());
        // shift: [1,2,3,3]; flip: [3,3,2,1]; brightness 0.5 truncates: [1,1,1,0].
        assert_eq!(rows(&out)[0], vec![1., 1., 1., 0.]);
    }
}
