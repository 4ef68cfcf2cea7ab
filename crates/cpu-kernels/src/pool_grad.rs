//! A convolution's gradients taken straight from the gradient of the max
//! pooling after it (with the pooling's fused ReLU, [`crate::pool`]).
//!
//! A max pooling passes each pooled output's gradient to the one
//! convolution output its maximum came from: of a `k x k` window's `k²`
//! outputs, one gets a gradient, the rest get zeros. The separate path
//! writes that mostly-zero gradient at full size and multiplies it through
//! im2col GEMMs as if it were dense. Here each pooled output is a *hit*,
//! (convolution output position, gradient), and
//!
//! - input:  `dx[:, iy, ix] += g · W[co, :, ky, kx]` for every tap of every hit;
//! - weight: `dW[co, :, ky, kx] += g · x[:, iy, ix]`, and `db[co] += g`;
//!
//! with the input channels in blocks of 16, one AVX-512 vector
//! (`[block][pixel][lane]`, zero-padded), so that every update is one vector
//! `y + g·x` and a block of the operands stays in the core's cache while the
//! hits run over it. The blocks hold the input planes with the
//! convolution's zero padding around them, so every tap of every hit reads
//! at a fixed offset from its patch's corner, without a border case. That is
//! `k²` times less arithmetic than the dense GEMMs, but at more memory
//! operations per product: measured on this project's 2-core AVX-512 VM, it
//! runs the tutorial's 4x4 pooling's convolution gradients in about a third
//! of the dense time, a 2x2 pooling's faster on small maps (13x13) and
//! slower on large ones (63x63 and up), see `conv_pool::sparse_pays`.
//!
//! Sums run in a fixed order whatever the thread count, products then
//! additions and never a fused multiply-add, so the AVX-512 kernels (sums in
//! registers) give the portable loops' bits. Input gradient: per (block,
//! image), output positions in order, each position's channels summed per
//! tap (ascending), then added to the pixels its taps read. Weight gradient:
//! per output channel, images in order, then hits, per tap.

use rayon::prelude::*;

use crate::geometry::Geometry;
use crate::par::zeroed;
use crate::pool::{PoolGeometry, NO_GRADIENT};

/// Input channels per block: one AVX-512 vector.
const LANES: usize = 16;

/// One block's values at one pixel, aligned to a cache line (the AVX-512
/// kernels use aligned loads and stores; no access straddles two lines).
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C, align(64))]
struct Lanes([f32; LANES]);

const ZERO: Lanes = Lanes([0.0; LANES]);

/// About this many floats of weight gradient per task (a few hundred KiB,
/// to stay in the core's cache while the images stream past).
const WEIGHT_FLOATS_PER_TASK: usize = 64 << 10;

/// Whether the pooling `pool` takes convolution `g`'s output: its planes
/// are the convolution's output planes.
pub fn fits(g: &Geometry, pool: &PoolGeometry) -> bool {
    pool.planes == g.batch * g.cout
        && pool.h == g.out_h()
        && pool.w == g.out_w()
        && pool.supported()
}

/// Convolution `g` cut to the input rows and columns whose outputs the
/// pooling `window` (kernel, stride; no padding) reads, where the
/// convolution has no padding and the pooling leaves outputs unread (the
/// tutorial's 10x10 maps under a 4x4 pooling: 8x8 read). The pooled values,
/// the argmax bytes and every gradient stay the same; `None` where nothing
/// would be cut.
pub fn read_region(g: &Geometry, kernel: [usize; 2], stride: [usize; 2]) -> Option<Geometry> {
    if g.padding != [0, 0] {
        return None;
    }
    // Convolution outputs read, then the input they read, per dimension.
    let cut = |out: usize, size: usize, k: usize, s: usize, cs: usize, d: usize, ck: usize| {
        let read = (out.checked_sub(k)? / s) * s + k;
        Some((read - 1) * cs + (ck - 1) * d + 1).filter(|&n| n < size)
    };
    let h = cut(
        g.out_h(),
        g.h,
        kernel[0],
        stride[0],
        g.stride[0],
        g.dilation[0],
        g.kh,
    );
    let w = cut(
        g.out_w(),
        g.w,
        kernel[1],
        stride[1],
        g.stride[1],
        g.dilation[1],
        g.kw,
    );
    (h.is_some() || w.is_some()).then(|| Geometry {
        h: h.unwrap_or(g.h),
        w: w.unwrap_or(g.w),
        ..*g
    })
}

/// Where each argmax byte's maximum sits in its window: (row, column), for
/// all 256 byte values ([`NO_GRADIENT`] and unused ones at (0, 0)).
fn window_table(pool: &PoolGeometry) -> Vec<(usize, usize)> {
    (0..256)
        .map(|a| match a < pool.kh * pool.kw {
            true => (a / pool.kw, a % pool.kw),
            false => (0, 0),
        })
        .collect()
}

/// Offsets of the taps (`ky * kw + kx` order) from the patch's first
/// pixel, in the padded planes ([`Shapes::padded`]).
fn tap_offsets(g: &Geometry) -> Vec<usize> {
    let wp = g.w + 2 * g.padding[1];
    (0..g.kh)
        .flat_map(|ky| (0..g.kw).map(move |kx| ky * g.dilation[0] * wp + kx * g.dilation[1]))
        .collect()
}

/// Every hit of a batch, gathered once for both gradients, image by image.
pub struct Hits {
    cout: usize,
    images: Vec<ImageHits>,
}

/// One image's hits, plane by plane (output channels in order), each as its
/// convolution output position (`oy * ow + ox`), its patch's corner in the
/// padded input ([`Shapes::corner`]) and its gradient.
struct ImageHits {
    /// `start[c]..start[c + 1]` index output channel `c`'s hits.
    start: Vec<u32>,
    position: Vec<u32>,
    corner: Vec<u32>,
    grad: Vec<f32>,
}

impl Hits {
    /// The hits of the pooled gradient `grad` with the pooling's argmax
    /// bytes `arg` (both `[batch, cout, ph, pw]`), one image per task.
    pub fn new(grad: &[f32], arg: &[u8], g: &Geometry, pool: &PoolGeometry) -> Hits {
        let s = Shapes::new(g, pool);
        let per_image = g.cout * s.pooled();
        assert_eq!(grad.len(), g.batch * per_image);
        assert_eq!(arg.len(), grad.len());
        let images = grad
            .par_chunks(per_image.max(1))
            .zip(arg.par_chunks(per_image.max(1)))
            .map(|(gi, ai)| ImageHits::gather(gi, ai, &s))
            .collect();
        Hits {
            cout: g.cout,
            images,
        }
    }

    /// Plane `p`'s (image `p / cout`, channel `p % cout`) hits: their
    /// corners and gradients.
    #[inline(always)]
    fn plane(&self, p: usize) -> (&[u32], &[f32]) {
        let (image, c) = (&self.images[p / self.cout], p % self.cout);
        let (lo, hi) = (image.start[c] as usize, image.start[c + 1] as usize);
        (&image.corner[lo..hi], &image.grad[lo..hi])
    }
}

impl ImageHits {
    /// Each pooled output of one image (`grad`, `arg`: `[cout][ph * pw]`)
    /// that passes a gradient, as the convolution output its maximum came
    /// from. Written without a branch per pooled output (whether the ReLU
    /// cut one off is as good as random): every output writes the next
    /// slot, and only a hit moves on from it.
    fn gather(grad: &[f32], arg: &[u8], s: &Shapes) -> ImageHits {
        let (pool, ow, pw) = (s.pool, s.g.out_w(), s.pool.out_w());
        let plane = s.pooled();
        let mut hits = ImageHits {
            start: Vec::with_capacity(s.g.cout + 1),
            position: vec![0; grad.len()],
            corner: vec![0; grad.len()],
            grad: vec![0.0; grad.len()],
        };
        hits.start.push(0);
        let mut k = 0;
        for (gp, ap) in grad.chunks_exact(plane).zip(arg.chunks_exact(plane)) {
            for (i, (gv, a)) in gp.iter().zip(ap).enumerate() {
                let (py, px) = (i / pw, i % pw);
                // Padding never wins: a hit's position is inside the plane
                // (a cut-off output's, which may not be, is replaced by 0).
                let hit = *a != NO_GRADIENT;
                let (wy, wx) = s.table[*a as usize];
                let y = (py * pool.stride[0] + wy).wrapping_sub(pool.padding[0]);
                let x = (px * pool.stride[1] + wx).wrapping_sub(pool.padding[1]);
                let (y, x) = if hit { (y, x) } else { (0, 0) };
                hits.position[k] = (y * ow + x) as u32;
                hits.corner[k] = s.corner(y, x) as u32;
                hits.grad[k] = *gv;
                k += usize::from(hit);
            }
            hits.start.push(k as u32);
        }
        hits.position.truncate(k);
        hits.corner.truncate(k);
        hits.grad.truncate(k);
        hits
    }
}

/// One image's hits grouped by convolution output position (counting sort;
/// output channels ascending within a position).
struct Buckets {
    /// `start[q]..start[q + 1]` index the hits at output position `q`.
    start: Vec<u32>,
    channel: Vec<u32>,
    grad: Vec<f32>,
}

impl Buckets {
    /// Image `n`'s hits grouped by position.
    fn new(hits: &Hits, n: usize, g: &Geometry) -> Buckets {
        let image = &hits.images[n];
        let positions = g.out_h() * g.out_w();
        let mut start = vec![0u32; positions + 1];
        for q in &image.position {
            start[*q as usize + 1] += 1;
        }
        for q in 0..positions {
            start[q + 1] += start[q];
        }
        let total = image.position.len();
        let (mut channel, mut grad) = (vec![0; total], vec![0.0; total]);
        let mut next = start[..positions].to_vec();
        for (co, span) in image.start.windows(2).enumerate() {
            for i in span[0] as usize..span[1] as usize {
                let slot = &mut next[image.position[i] as usize];
                channel[*slot as usize] = co as u32;
                grad[*slot as usize] = image.grad[i];
                *slot += 1;
            }
        }
        Buckets {
            start,
            channel,
            grad,
        }
    }
}

/// `y += a · x` in one vector: a product then an addition per lane.
#[inline(always)]
fn axpy(y: &mut Lanes, a: f32, x: &Lanes) {
    for (y, x) in y.0.iter_mut().zip(&x.0) {
        *y += a * x;
    }
}

/// `y += x`.
#[inline(always)]
fn add(y: &mut Lanes, x: &Lanes) {
    for (y, x) in y.0.iter_mut().zip(&x.0) {
        *y += x;
    }
}

/// The top-left `h x w` corner of one image's `[cin][plane]` planes as
/// `[block][padded pixel]` vectors ([`Shapes::padded`]), the padding and
/// the lanes past `cin` zero.
fn to_blocks(s: &Shapes, planes: &[f32], plane: [usize; 2], out: &mut [Lanes]) {
    let (g, len) = (s.g, s.padded());
    let (wp, [py, px]) = (g.w + 2 * g.padding[1], g.padding);
    for (ci, src) in planes.chunks_exact(plane[0] * plane[1]).enumerate() {
        let (block, lane) = (ci / LANES, ci % LANES);
        let rows = out[block * len..][..len].chunks_exact_mut(wp).skip(py);
        for (o, r) in rows.zip(src.chunks_exact(plane[1])).take(g.h) {
            for (o, v) in o[px..].iter_mut().zip(&r[..g.w]) {
                o.0[lane] = *v;
            }
        }
    }
}

/// A block's padded vectors back into the top-left `h x w` corner of its
/// channels' planes of `plane` pixels (`planes` holds only that block's
/// channels), the padding dropped and the rest of the planes untouched.
fn from_block(s: &Shapes, rows: &[Lanes], plane: [usize; 2], planes: &mut [f32]) {
    let g = s.g;
    let (wp, [py, px]) = (g.w + 2 * g.padding[1], g.padding);
    for (lane, dst) in planes.chunks_exact_mut(plane[0] * plane[1]).enumerate() {
        let pairs = dst
            .chunks_exact_mut(plane[1])
            .zip(rows.chunks_exact(wp).skip(py));
        for (p, r) in pairs.take(g.h) {
            for (v, r) in p[..g.w].iter_mut().zip(&r[px..]) {
                *v = r.0[lane];
            }
        }
    }
}

/// The weight `[cout, cin, kh, kw]` as `[block][cout][kh * kw]` vectors.
fn weight_blocks(weight: &[f32], g: &Geometry) -> Vec<Lanes> {
    let taps = g.kh * g.kw;
    let blocks = g.cin.div_ceil(LANES);
    let mut out = vec![ZERO; blocks * g.cout * taps];
    out.par_chunks_mut(g.cout * taps)
        .enumerate()
        .for_each(|(b, part)| {
            for (co, o) in part.chunks_exact_mut(taps).enumerate() {
                for lane in 0..LANES.min(g.cin - b * LANES) {
                    let ci = b * LANES + lane;
                    let w = &weight[(co * g.cin + ci) * taps..][..taps];
                    for (o, v) in o.iter_mut().zip(w) {
                        o.0[lane] = *v;
                    }
                }
            }
        });
    out
}

/// What every kernel call shares: both geometries and their lookup tables.
struct Shapes<'a> {
    g: &'a Geometry,
    pool: &'a PoolGeometry,
    /// [`window_table`].
    table: Vec<(usize, usize)>,
    /// [`tap_offsets`].
    offsets: Vec<usize>,
}

impl<'a> Shapes<'a> {
    fn new(g: &'a Geometry, pool: &'a PoolGeometry) -> Shapes<'a> {
        assert!(
            fits(g, pool),
            "pooling {pool:?} does not follow convolution {g:?}"
        );
        let padded = (g.h + 2 * g.padding[0]) * (g.w + 2 * g.padding[1]);
        assert!(
            padded <= u32::MAX as usize && g.out_h() * g.out_w() <= u32::MAX as usize,
            "positions and corners are kept as u32"
        );
        Shapes {
            g,
            pool,
            table: window_table(pool),
            offsets: tap_offsets(g),
        }
    }
    fn taps(&self) -> usize {
        self.g.kh * self.g.kw
    }
    /// Pixels of an input plane with the convolution's padding around it.
    fn padded(&self) -> usize {
        (self.g.h + 2 * self.g.padding[0]) * (self.g.w + 2 * self.g.padding[1])
    }
    /// The padded pixel of output `(oy, ox)`'s patch's first tap.
    #[inline(always)]
    fn corner(&self, oy: usize, ox: usize) -> usize {
        let wp = self.g.w + 2 * self.g.padding[1];
        oy * self.g.stride[0] * wp + ox * self.g.stride[1]
    }
    fn blocks(&self) -> usize {
        self.g.cin.div_ceil(LANES)
    }
    /// Pooled outputs per plane.
    fn pooled(&self) -> usize {
        self.pool.out_h() * self.pool.out_w()
    }
}

/// The input gradient from the pooled gradient's hits ([`Hits`]), as
/// `[batch, cin]` planes of `plane` (`>= [h, w]`) pixels: convolution `g`
/// read the top-left corner of a larger input, the rest gets zeros.
pub fn backward_input(
    weight: &[f32],
    hits: &Hits,
    g: &Geometry,
    pool: &PoolGeometry,
    plane: [usize; 2],
) -> Vec<f32> {
    backward_input_with(weight, hits, g, pool, plane, kernels::input_block())
}

/// [`backward_input`] with `kernel` for each (block, image) (the tests run
/// the portable loops through it on any CPU).
fn backward_input_with(
    weight: &[f32],
    hits: &Hits,
    g: &Geometry,
    pool: &PoolGeometry,
    plane: [usize; 2],
    kernel: kernels::InputBlock,
) -> Vec<f32> {
    let s = Shapes::new(g, pool);
    assert!(plane[0] >= g.h && plane[1] >= g.w);
    let (hw, taps, len) = (plane[0] * plane[1], s.taps(), s.padded());
    assert_eq!(weight.len(), g.cout * g.cin * taps);
    assert_eq!((hits.images.len(), hits.cout), (g.batch, g.cout));
    let wb = weight_blocks(weight, g);
    // Each image's hits by position, once for all its blocks.
    let buckets: Vec<Buckets> = (0..g.batch)
        .into_par_iter()
        .map(|n| Buckets::new(hits, n, g))
        .collect();
    let mut dx = zeroed(g.batch * g.cin * hw);
    // One task per (block, image), block by block: a block's weights stay
    // in cache while the images pass. Each writes its channels of one image.
    let mut parts: Vec<(usize, usize, &mut [f32])> = dx
        .chunks_mut(g.cin * hw)
        .enumerate()
        .flat_map(|(n, image)| {
            image
                .chunks_mut(LANES * hw)
                .enumerate()
                .map(move |(b, part)| (b, n, part))
        })
        .collect();
    parts.sort_by_key(|&(b, n, _)| (b, n));
    parts
        .into_par_iter()
        .for_each_init(Vec::new, |img, (b, n, part)| {
            img.clear();
            img.resize(len, ZERO);
            let wb = &wb[b * g.cout * taps..][..g.cout * taps];
            kernel(&s, wb, &buckets[n], img);
            from_block(&s, img, plane, part);
        });
    dx
}

/// One image's input gradient for one block of input channels (`wb`:
/// `[cout][taps]` vectors) from its hits grouped by position, added onto
/// `img` (padded, [`Shapes::padded`]).
#[inline(always)]
fn input_block(s: &Shapes, wb: &[Lanes], hits: &Buckets, img: &mut [Lanes]) {
    let t = s.taps();
    input_positions(s, wb, hits, img, &mut vec![ZERO; t]);
}

/// [`input_block`] with scratch `acc`, one per tap: per output
/// position, the sum of its channels' `g · W` per tap, then added to the
/// pixels the taps read. (The AVX-512 kernel keeps `acc` in registers.)
#[inline(always)]
fn input_positions(s: &Shapes, wb: &[Lanes], hits: &Buckets, img: &mut [Lanes], acc: &mut [Lanes]) {
    let taps = acc.len();
    let ow = s.g.out_w();
    for (q, span) in hits.start.windows(2).enumerate() {
        let (lo, hi) = (span[0] as usize, span[1] as usize);
        if lo == hi {
            continue;
        }
        acc.fill(ZERO);
        for (co, gv) in hits.channel[lo..hi].iter().zip(&hits.grad[lo..hi]) {
            let w = &wb[*co as usize * taps..][..taps];
            for (a, w) in acc.iter_mut().zip(w) {
                axpy(a, *gv, w);
            }
        }
        let corner = s.corner(q / ow, q % ow);
        for (a, o) in acc.iter().zip(&s.offsets) {
            add(&mut img[corner + o], a);
        }
    }
}

/// Weight and bias gradients (`[cout, cin, kh, kw]`, `[cout]`) from the
/// pooled gradient's hits ([`Hits`]), for input `x`: `[batch, cin]` planes
/// of `plane` (`>= [h, w]`) pixels, of which `g` reads the top-left corner.
pub fn backward_weight(
    x: &[f32],
    plane: [usize; 2],
    hits: &Hits,
    g: &Geometry,
    pool: &PoolGeometry,
) -> (Vec<f32>, Vec<f32>) {
    backward_weight_with(x, plane, hits, g, pool, kernels::weight_block())
}

/// [`backward_weight`] with `kernel` for each (block, chunk of channels).
fn backward_weight_with(
    x: &[f32],
    plane: [usize; 2],
    hits: &Hits,
    g: &Geometry,
    pool: &PoolGeometry,
    kernel: kernels::WeightBlock,
) -> (Vec<f32>, Vec<f32>) {
    let s = Shapes::new(g, pool);
    assert!(plane[0] >= g.h && plane[1] >= g.w);
    let (hw, taps, blocks, len) = (plane[0] * plane[1], s.taps(), s.blocks(), s.padded());
    assert_eq!(x.len(), g.batch * g.cin * hw);
    assert_eq!((hits.images.len(), hits.cout), (g.batch, g.cout));
    // The input as `[image][block][padded pixel]` vectors.
    let mut xb = vec![ZERO; g.batch * blocks * len];
    xb.par_chunks_mut(blocks * len)
        .zip(x.par_chunks(g.cin * hw))
        .for_each(|(o, xi)| to_blocks(&s, xi, plane, o));
    // One task per (block, chunk of output channels), each over all images.
    // (How the channels are chunked does not change any sum.)
    let wanted = (4 * rayon::current_num_threads()).div_ceil(blocks).max(1);
    let chunk = (WEIGHT_FLOATS_PER_TASK / (taps * LANES))
        .min(g.cout.div_ceil(wanted))
        .max(1);
    let chunks = g.cout.div_ceil(chunk);
    let partials: Vec<Vec<Lanes>> = (0..blocks * chunks)
        .into_par_iter()
        .map(|t| {
            let (b, c0) = (t / chunks, (t % chunks) * chunk);
            let c1 = (c0 + chunk).min(g.cout);
            let mut dw = vec![ZERO; (c1 - c0) * taps];
            kernel(&s, &xb, hits, b, [c0, c1], &mut dw);
            dw
        })
        .collect();
    // `[block][cout][taps]` vectors back into `[cout][cin][taps]`.
    let mut dw = vec![0.0f32; g.cout * g.cin * taps];
    dw.par_chunks_mut(g.cin * taps)
        .enumerate()
        .for_each(|(co, out)| {
            let (c, k) = (co / chunk, co % chunk);
            for (ci, o) in out.chunks_exact_mut(taps).enumerate() {
                let part = &partials[(ci / LANES) * chunks + c][k * taps..][..taps];
                for (o, v) in o.iter_mut().zip(part) {
                    *o = v.0[ci % LANES];
                }
            }
        });
    // The bias gradient: each channel's hits, images in order.
    let mut db = vec![0.0f32; g.cout];
    for p in 0..g.batch * g.cout {
        for gv in hits.plane(p).1 {
            db[p % g.cout] += gv;
        }
    }
    (dw, db)
}

/// Output channels `[c0, c1)` of the weight gradient for input-channel
/// block `b`, over all images, added onto `dw` (`[c1 - c0][taps]` vectors).
#[inline(always)]
fn weight_block(s: &Shapes, xb: &[Lanes], hits: &Hits, b: usize, c: [usize; 2], dw: &mut [Lanes]) {
    weight_channels(s, xb, hits, b, c, dw, &mut vec![ZERO; s.taps()]);
}

/// [`weight_block`] with scratch `acc`, one per tap: per image
/// and output channel, the hits' `g · x` summed per tap onto the running
/// gradient. (The AVX-512 kernel keeps `acc` in registers.)
#[inline(always)]
fn weight_channels(
    s: &Shapes,
    xb: &[Lanes],
    hits: &Hits,
    b: usize,
    [c0, c1]: [usize; 2],
    dw: &mut [Lanes],
    acc: &mut [Lanes],
) {
    let (g, len) = (s.g, s.padded());
    let taps = acc.len();
    for n in 0..g.batch {
        let x = &xb[(n * s.blocks() + b) * len..][..len];
        for co in c0..c1 {
            let w = &mut dw[(co - c0) * taps..][..taps];
            acc.copy_from_slice(w);
            let (corners, grads) = hits.plane(n * g.cout + co);
            for (corner, gv) in corners.iter().zip(grads) {
                for (a, o) in acc.iter_mut().zip(&s.offsets) {
                    axpy(a, *gv, &x[*corner as usize + o]);
                }
            }
            w.copy_from_slice(acc);
        }
    }
}

/// The kernels compiled for the widest vectors this CPU has.
mod kernels {
    use super::*;

    pub type InputBlock = fn(&Shapes, &[Lanes], &Buckets, &mut [Lanes]);
    pub type WeightBlock = fn(&Shapes, &[Lanes], &Hits, usize, [usize; 2], &mut [Lanes]);

    pub fn input_block() -> InputBlock {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx512f") {
            return |s, wb, hits, img| {
                // SAFETY: the CPU supports AVX-512F (checked above).
                unsafe { x86::input_block_avx512(s, wb, hits, img) }
            };
        }
        |s, wb, hits, img| super::input_block(s, wb, hits, img)
    }

    pub fn weight_block() -> WeightBlock {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx512f") {
            return |s, xb, hits, b, c, dw| {
                // SAFETY: the CPU supports AVX-512F (checked above).
                unsafe { x86::weight_block_avx512(s, xb, hits, b, c, dw) }
            };
        }
        |s, xb, hits, b, c, dw| super::weight_block(s, xb, hits, b, c, dw)
    }

    #[cfg(target_arch = "x86_64")]
    mod x86 {
        use std::arch::x86_64::*;

        use super::super::*;

        /// # Safety
        /// The CPU must support AVX-512F.
        #[target_feature(enable = "avx512f")]
        pub unsafe fn input_block_avx512(
            s: &Shapes,
            wb: &[Lanes],
            hits: &Buckets,
            img: &mut [Lanes],
        ) {
            match s.taps() {
                9 => input_positions_9(s, wb, hits, img),
                25 => input_positions_25(s, wb, hits, img),
                _ => input_block(s, wb, hits, img),
            }
        }

        /// # Safety
        /// The CPU must support AVX-512F.
        #[target_feature(enable = "avx512f")]
        pub unsafe fn weight_block_avx512(
            s: &Shapes,
            xb: &[Lanes],
            hits: &Hits,
            b: usize,
            c: [usize; 2],
            dw: &mut [Lanes],
        ) {
            match s.taps() {
                9 => weight_channels_9(s, xb, hits, b, c, dw),
                25 => weight_channels_25(s, xb, hits, b, c, dw),
                _ => weight_block(s, xb, hits, b, c, dw),
            }
        }

        /// The tap offsets as an array of the kernel's tap count.
        #[inline(always)]
        fn tap_array<const T: usize>(s: &Shapes) -> [usize; T] {
            let Ok(a) = s.offsets[..].try_into() else {
                unreachable!("the kernel for {T} taps runs only on {T} offsets")
            };
            a
        }

        #[inline(always)]
        unsafe fn load(v: &Lanes) -> __m512 {
            _mm512_load_ps(v.0.as_ptr())
        }

        #[inline(always)]
        unsafe fn store(v: &mut Lanes, x: __m512) {
            _mm512_store_ps(v.0.as_mut_ptr(), x)
        }

        /// The AVX-512 kernels for one tap count `$taps`, each sum in a
        /// register of its own (`$a`, one per tap `$t`): the portable
        /// kernels' operations in the same order.
        macro_rules! kernels_for_taps {
            ($input:ident, $weight:ident, $taps:literal, [$($a:ident $t:literal),*]) => {
                /// [`super::super::input_positions`] for this tap count.
                #[target_feature(enable = "avx512f")]
                unsafe fn $input(s: &Shapes, wb: &[Lanes], hits: &Buckets, img: &mut [Lanes]) {
                    let ow = s.g.out_w();
                    let last = img.len() - 1;
                    let offsets = tap_array::<$taps>(s);
                    for (q, span) in hits.start.windows(2).enumerate() {
                        let (lo, hi) = (span[0] as usize, span[1] as usize);
                        if lo == hi {
                            continue;
                        }
                        $(let mut $a = _mm512_setzero_ps();)*
                        for (co, gv) in hits.channel[lo..hi].iter().zip(&hits.grad[lo..hi]) {
                            let at = *co as usize * $taps;
                            let Some(w) = wb.get(at..at + $taps) else {
                                unreachable!("one weight vector per channel and tap")
                            };
                            let gv = _mm512_set1_ps(*gv);
                            $($a = _mm512_add_ps($a, _mm512_mul_ps(gv, load(&w[$t])));)*
                        }
                        let corner = s.corner(q / ow, q % ow);
                        // (`min`: pixels are at most `last`; no bounds check.)
                        $({
                            let v = &mut img[(corner + offsets[$t]).min(last)];
                            store(v, _mm512_add_ps(load(v), $a));
                        })*
                    }
                }

                /// [`super::super::weight_channels`] for this tap count.
                #[target_feature(enable = "avx512f")]
                unsafe fn $weight(
                    s: &Shapes,
                    xb: &[Lanes],
                    hits: &Hits,
                    b: usize,
                    [c0, c1]: [usize; 2],
                    dw: &mut [Lanes],
                ) {
                    let (g, len) = (s.g, s.padded());
                    let offsets = tap_array::<$taps>(s);
                    for n in 0..g.batch {
                        let x = &xb[(n * s.blocks() + b) * len..][..len];
                        for co in c0..c1 {
                            let w = &mut dw[(co - c0) * $taps..][..$taps];
                            let (corners, grads) = hits.plane(n * g.cout + co);
                            $(let mut $a = load(&w[$t]);)*
                            for (corner, gv) in corners.iter().zip(grads) {
                                let corner = *corner as usize;
                                let gv = _mm512_set1_ps(*gv);
                                // (`min`: pixels are below `len`; no bounds check.)
                                $($a = _mm512_add_ps(
                                    $a,
                                    _mm512_mul_ps(gv, load(&x[(corner + offsets[$t]).min(len - 1)])),
                                );)*
                            }
                            $(store(&mut w[$t], $a);)*
                        }
                    }
                }
            };
        }

        kernels_for_taps!(input_positions_9, weight_channels_9, 9, [a0 0, a1 1, a2 2, a3 3, a4 4, a5 5, a6 6, a7 7, a8 8]);
        kernels_for_taps!(input_positions_25, weight_channels_25, 25, [a0 0, a1 1, a2 2, a3 3, a4 4, a5 5, a6 6, a7 7, a8 8, a9 9, a10 10, a11 11, a12 12, a13 13, a14 14, a15 15, a16 16, a17 17, a18 18, a19 19, a20 20, a21 21, a22 22, a23 23, a24 24]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::values;
    use crate::{conv, pool};

    fn close(a: &[f32], b: &[f32], what: &str) {
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
                "{what}[{i}]: {x} against {y}"
            );
        }
    }

    /// The sparse gradients against the separate path: the pooling's dense
    /// input gradient through the im2col GEMM gradients.
    fn check(g: Geometry, kernel: usize, stride: usize, padding: usize) {
        // Whichever kernels this CPU runs, and the portable loops on any CPU.
        check_with(
            g,
            kernel,
            stride,
            padding,
            kernels::input_block(),
            kernels::weight_block(),
        );
        check_with(g, kernel, stride, padding, input_block, weight_block);
    }

    fn check_with(
        g: Geometry,
        kernel: usize,
        stride: usize,
        padding: usize,
        input_kernel: kernels::InputBlock,
        weight_kernel: kernels::WeightBlock,
    ) {
        let x = values(g.batch * g.cin * g.h * g.w, 1);
        let w = values(g.cout * g.cin * g.kh * g.kw, 2);
        // Large biases of both signs, so that the ReLU cuts off whole planes too.
        let b: Vec<f32> = values(g.cout, 3).iter().map(|v| 12.0 * v).collect();
        let out = conv::forward(&x, &w, Some(&b), false, &g);
        let pool = pool_after(&g, kernel, stride, padding);
        let (pooled, arg) = pool::max_forward(&out, &pool, true);
        assert!(
            arg.contains(&NO_GRADIENT),
            "some outputs are cut off by the ReLU"
        );
        let grad = values(pooled.len(), 4);
        let dense = pool::max_backward(&grad, &arg, &pool);
        let hits = Hits::new(&grad, &arg, &g, &pool);
        let dx = backward_input_with(&w, &hits, &g, &pool, [g.h, g.w], input_kernel);
        close(&dx, &conv::backward_input(&w, &dense, &g), "dx");
        let (dw, db) = backward_weight_with(&x, [g.h, g.w], &hits, &g, &pool, weight_kernel);
        let (dw_ref, db_ref) = conv::backward_weight(&x, &dense, &g);
        close(&dw, &dw_ref, "dw");
        close(&db, &db_ref, "db");
    }

    /// A square max pooling (`kernel`, `stride`, `padding`) of convolution
    /// `g`'s output.
    fn pool_after(g: &Geometry, kernel: usize, stride: usize, padding: usize) -> PoolGeometry {
        PoolGeometry {
            planes: g.batch * g.cout,
            h: g.out_h(),
            w: g.out_w(),
            kh: kernel,
            kw: kernel,
            stride: [stride, stride],
            padding: [padding, padding],
        }
    }

    fn geometry(batch: usize, cin: usize, hw: usize, cout: usize, k: usize) -> Geometry {
        Geometry {
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
        }
    }

    #[test]
    fn gradients_equal_the_dense_path() {
        // The Fashion CNN's second layer: 2x2 pooling of 11x11, the last row unread.
        check(geometry(3, 32, 13, 64, 3), 2, 2, 0);
        // `same` padding, channels that are no multiple of a vector, odd sizes.
        check(
            Geometry {
                padding: [1, 1],
                ..geometry(2, 5, 9, 7, 3)
            },
            2,
            2,
            0,
        );
        // The tutorial's last block: 5x5 kernel, 4x4 pooling, 8+ images per group.
        check(geometry(10, 16, 14, 24, 5), 4, 4, 0);
        // A kernel size without its own vector kernel (6 taps), 17 channels.
        check(
            Geometry {
                kh: 2,
                ..geometry(2, 17, 8, 5, 3)
            },
            3,
            3,
            0,
        );
        // Strided, dilated convolution; overlapping, padded pooling windows.
        check(
            Geometry {
                stride: [2, 1],
                dilation: [1, 2],
                padding: [1, 2],
                ..geometry(2, 3, 11, 4, 3)
            },
            3,
            2,
            1,
        );
    }

    #[test]
    fn the_read_region_gives_the_same_pooling_and_gradients() {
        // The tutorial's last block: 14x14 input, 5x5 valid convolution,
        // 10x10 output, of which a 4x4 pooling reads 8x8 from 12x12 inputs.
        let g = geometry(3, 16, 14, 8, 5);
        let Some(r) = read_region(&g, [4, 4], [4, 4]) else {
            panic!("a 4x4 pooling of 10x10 leaves outputs unread")
        };
        assert_eq!([r.h, r.w, r.out_h(), r.out_w()], [12, 12, 8, 8]);
        assert_eq!(
            read_region(&g, [2, 2], [2, 2]),
            None,
            "a 2x2 pooling reads all 10"
        );
        assert_eq!(
            read_region(
                &Geometry {
                    padding: [2, 2],
                    ..g
                },
                [4, 4],
                [4, 4]
            ),
            None,
            "padded convolutions are left whole"
        );
        let x = values(g.batch * g.cin * g.h * g.w, 8);
        let w = values(g.cout * g.cin * g.kh * g.kw, 9);
        let pool = |c: &Geometry| pool_after(c, 4, 4, 0);
        let (pg, pr) = (pool(&g), pool(&r));
        let full = pool::max_forward(&conv::forward(&x, &w, None, false, &g), &pg, true);
        let corner = conv::forward_corner(&x, [g.h, g.w], &w, None, false, &r);
        let cut = pool::max_forward(&corner, &pr, true);
        assert_eq!(full, cut, "same pooled values and argmax bytes");
        let grad = values(full.0.len(), 10);
        let (hits_full, hits_cut) = (
            Hits::new(&grad, &full.1, &g, &pg),
            Hits::new(&grad, &cut.1, &r, &pr),
        );
        let dx_full = backward_input(&w, &hits_full, &g, &pg, [g.h, g.w]);
        let dx_cut = backward_input(&w, &hits_cut, &r, &pr, [g.h, g.w]);
        assert_eq!(dx_full, dx_cut);
        assert_eq!(
            backward_weight(&x, [g.h, g.w], &hits_full, &g, &pg),
            backward_weight(&x, [g.h, g.w], &hits_cut, &r, &pr)
        );
    }

    #[test]
    fn vector_and_portable_kernels_give_the_same_bits() {
        #[cfg(target_arch = "x86_64")]
        let vector = is_x86_feature_detected!("avx512f");
        #[cfg(not(target_arch = "x86_64"))]
        let vector = false;
        if !vector {
            // Both sides would be the portable loops: nothing to compare.
            println!("skipped: no AVX-512 on this CPU, so no vector kernels to compare");
            return;
        }
        // 3x3 (9 taps) unpadded and `same`, 5x5 (25 taps) `same`: the
        // kernels with a register per tap, patches inside and on the border.
        for (k, padding) in [(3, 0), (3, 1), (5, 2)] {
            let g = Geometry {
                padding: [padding; 2],
                ..geometry(2, 20, 10, 6, k)
            };
            vector_and_portable_bits(&g);
        }
    }

    fn vector_and_portable_bits(g: &Geometry) {
        let g = *g;
        let x = values(g.batch * g.cin * g.h * g.w, 5);
        let w = values(g.cout * g.cin * g.kh * g.kw, 6);
        let pool = pool_after(&g, 2, 2, 0);
        let out = conv::forward(&x, &w, None, false, &g);
        let (pooled, arg) = pool::max_forward(&out, &pool, true);
        let grad = values(pooled.len(), 7);
        let s = Shapes::new(&g, &pool);
        let (taps, hw, blocks, len) = (s.taps(), g.h * g.w, s.blocks(), s.padded());
        let wb = weight_blocks(&w, &g);
        let all = Hits::new(&grad, &arg, &g, &pool);
        // The second image.
        let hits = Buckets::new(&all, 1, &g);
        let image = |f: kernels::InputBlock| {
            let mut img = vec![ZERO; len];
            // The second block (4 channels of 16 lanes).
            f(&s, &wb[g.cout * taps..], &hits, &mut img);
            img
        };
        assert_eq!(image(kernels::input_block()), image(input_block));
        let mut xb = vec![ZERO; g.batch * blocks * len];
        for (o, i) in xb.chunks_mut(blocks * len).zip(x.chunks(g.cin * hw)) {
            to_blocks(&s, i, [g.h, g.w], o);
        }
        let task = |f: kernels::WeightBlock| {
            let mut dw = vec![ZERO; g.cout * taps];
            f(&s, &xb, &all, 1, [0, g.cout], &mut dw);
            dw
        };
        assert_eq!(task(kernels::weight_block()), task(weight_block));
    }
}
