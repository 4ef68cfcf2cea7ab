//! A built-in image set that needs no files: one bright shape per image on a
//! darker, graded, noisy background, with random colours, position, scale
//! and rotation (up to 30 degrees). Each sample is a pure function of (seed, split, index),
//! drawn at the model's size when asked for, so nothing is stored and the
//! result cannot depend on threads or order.

use rand::Rng;
use rand_distr::StandardNormal;

use super::split::{rng, TAG_SYNTHETIC};
use crate::plan::SYNTHETIC_MAX_CLASSES;

/// Class names, in label order.
pub const CLASS_NAMES: [&str; SYNTHETIC_MAX_CLASSES] = [
    "disk",
    "ring",
    "square",
    "frame",
    "triangle",
    "plus",
    "star",
    "bar",
    "crescent",
    "half_disk",
    "two_dots",
    "ell",
];

/// Shapes are turned by up to this many degrees either way: enough to vary
/// them, little enough that a small CNN learns the set in a few epochs.
const MAX_ROTATION: f64 = 30.0;

/// Background channels are drawn from [0, BACKGROUND_MAX), shape channels
/// from [FOREGROUND_MIN, 255), with at least MIN_CONTRAST luma between them.
const BACKGROUND_MAX: f64 = 100.0;
const FOREGROUND_MIN: f64 = 140.0;
const MIN_CONTRAST: f64 = 70.0;

/// Which split a sample belongs to; part of its seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitId {
    Train = 0,
    Validation = 1,
    Test = 2,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Generator {
    pub seed: u64,
    pub classes: usize,
    pub height: usize,
    pub width: usize,
    pub channels: usize,
    /// Standard deviation of the pixel noise, in [0, 1] units.
    pub noise: f64,
}

impl Generator {
    /// Labels cycle through the classes, so every split is balanced.
    pub fn label(&self, index: usize) -> usize {
        index % self.classes
    }

    /// The sample's pixels (HWC, 8-bit) at the generator's size.
    pub fn render(&self, split: SplitId, index: usize) -> Vec<u8> {
        let mut rng = rng(&[TAG_SYNTHETIC, self.seed, split as u64, index as u64]);
        let class = self.label(index);
        let (h, w) = (self.height as f64, self.width as f64);
        let side = h.min(w);

        // Bright shapes on darker backgrounds, both in random colours. (Random
        // polarity and full-range backgrounds made the set far slower to learn.)
        let bg: [f64; 3] = std::array::from_fn(|_| rng.random_range(0.0..BACKGROUND_MAX));
        let mut fg: [f64; 3] = std::array::from_fn(|_| rng.random_range(FOREGROUND_MIN..255.0));
        // Keep the shape visible, also in gray: at least this much luma contrast.
        for _ in 0..32 {
            if luma(&fg) - luma(&bg) >= MIN_CONTRAST {
                break;
            }
            fg = std::array::from_fn(|_| rng.random_range(FOREGROUND_MIN..255.0));
        }
        if luma(&fg) - luma(&bg) < MIN_CONTRAST {
            fg = [255.0; 3];
        }
        let grad_angle: f64 = rng.random_range(0.0..std::f64::consts::TAU);
        let grad_amp: f64 = rng.random_range(0.0..40.0);
        let radius = side * rng.random_range(0.22..0.42);
        let margin = radius * 0.8;
        let cx = if w > 2.0 * margin {
            rng.random_range(margin..w - margin)
        } else {
            w / 2.0
        };
        let cy = if h > 2.0 * margin {
            rng.random_range(margin..h - margin)
        } else {
            h / 2.0
        };
        let (sin, cos) = rng
            .random_range(-MAX_ROTATION..MAX_ROTATION)
            .to_radians()
            .sin_cos();
        let (gs, gc) = grad_angle.sin_cos();

        let c = self.channels;
        let sigma = self.noise * 255.0;
        let mut out = Vec::with_capacity(self.height * self.width * c);
        // 2x2 supersampling for smooth edges.
        const SUB: [f64; 2] = [0.25, 0.75];
        for row in 0..self.height {
            for col in 0..self.width {
                let mut cover = 0.0;
                for sy in SUB {
                    for sx in SUB {
                        let dx = (col as f64 + sx - cx) / radius;
                        let dy = (row as f64 + sy - cy) / radius;
                        let u = cos * dx + sin * dy;
                        let v = -sin * dx + cos * dy;
                        if inside(class, u, v) {
                            cover += 0.25;
                        }
                    }
                }
                let t =
                    ((col as f64 / w - 0.5) * gc + (row as f64 / h - 0.5) * gs) * 2.0 * grad_amp;
                let px: [f64; 3] =
                    std::array::from_fn(|k| (bg[k] + t) * (1.0 - cover) + fg[k] * cover);
                if c == 1 {
                    out.push(quantize(luma(&px) + sigma * normal(&mut rng)));
                } else {
                    for v in px {
                        out.push(quantize(v + sigma * normal(&mut rng)));
                    }
                }
            }
        }
        out
    }
}

fn luma(p: &[f64; 3]) -> f64 {
    0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]
}

fn quantize(v: f64) -> u8 {
    // Saturating cast: rounds half up, clamps to 0-255 (no libm call).
    (v + 0.5) as u8
}

/// A standard normal draw (rand_distr's ziggurat: no logarithm or cosine
/// per pixel, which made Box-Muller most of the generator's time).
fn normal(rng: &mut impl Rng) -> f64 {
    rng.sample(StandardNormal)
}

/// Whether shape-local point (u, v) (the shape's radius is 1) is inside `class`.
fn inside(class: usize, u: f64, v: f64) -> bool {
    let r2 = u * u + v * v;
    match class {
        0 => r2 <= 1.0,
        1 => (0.3..=1.0).contains(&r2),
        2 => u.abs() <= 0.8 && v.abs() <= 0.8,
        3 => {
            let m = u.abs().max(v.abs());
            (0.5..=0.85).contains(&m)
        }
        4 => triangle(u, v),
        5 => (u.abs() <= 0.28 && v.abs() <= 1.0) || (v.abs() <= 0.28 && u.abs() <= 1.0),
        6 => star(u, v),
        7 => u.abs() <= 1.0 && v.abs() <= 0.3,
        8 => r2 <= 1.0 && (u - 0.5) * (u - 0.5) + v * v > 0.5625,
        9 => r2 <= 1.0 && v >= -0.2,
        10 => (u - 0.55).powi(2) + v * v <= 0.16 || (u + 0.55).powi(2) + v * v <= 0.16,
        _ => {
            ((-0.8..=-0.3).contains(&u) && v.abs() <= 0.9)
                || ((-0.8..=0.8).contains(&u) && (0.4..=0.9).contains(&v))
        }
    }
}

/// Equilateral triangle with circumradius 1: inradius 0.5 to each side.
fn triangle(u: f64, v: f64) -> bool {
    (0..3).all(|k| {
        let a = std::f64::consts::FRAC_PI_2
            + (k as f64) * std::f64::consts::TAU / 3.0
            + std::f64::consts::PI;
        u * a.cos() + v * a.sin() <= 0.5
    })
}

/// Five-pointed star, outer radius 1, inner radius 0.45.
fn star(u: f64, v: f64) -> bool {
    use std::f64::consts::PI;
    let rho = (u * u + v * v).sqrt();
    if rho > 1.0 {
        return false;
    }
    let sector = 2.0 * PI / 5.0;
    let a = (v.atan2(u) + sector / 2.0).rem_euclid(sector) - sector / 2.0;
    // Point in the sector's frame, folded onto one side of the spike's axis.
    let (px, py) = (rho * a.cos(), rho * a.sin().abs());
    // Edge from the spike tip (1, 0) to the inner corner.
    let (ix, iy) = (0.45 * (sector / 2.0).cos(), 0.45 * (sector / 2.0).sin());
    let cross = (ix - 1.0) * py - iy * (px - 1.0);
    cross >= 0.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generator(c: usize) -> Generator {
        Generator {
            seed: 3,
            classes: 12,
            height: 24,
            width: 32,
            channels: c,
            noise: 0.1,
        }
    }

    #[test]
    fn samples_are_pure_functions_of_seed_split_and_index() {
        let g = generator(3);
        let a = g.render(SplitId::Train, 5);
        assert_eq!(a.len(), 24 * 32 * 3);
        assert_eq!(a, g.render(SplitId::Train, 5));
        assert_ne!(a, g.render(SplitId::Test, 5), "splits differ");
        assert_ne!(a, g.render(SplitId::Train, 17), "indices differ");
        let other = Generator {
            seed: 4,
            ..g.clone()
        };
        assert_ne!(a, other.render(SplitId::Train, 5), "seeds differ");
        assert_eq!(generator(1).render(SplitId::Train, 5).len(), 24 * 32);
    }

    #[test]
    fn every_class_draws_a_distinct_silhouette() {
        // The same pose for every class: the masks must all differ and cover
        // a reasonable part of the shape's box.
        let n = 40;
        let masks: Vec<Vec<bool>> = (0..SYNTHETIC_MAX_CLASSES)
            .map(|class| {
                (0..n * n)
                    .map(|i| {
                        let u = (i % n) as f64 / n as f64 * 2.2 - 1.1;
                        let v = (i / n) as f64 / n as f64 * 2.2 - 1.1;
                        inside(class, u, v)
                    })
                    .collect()
            })
            .collect();
        for (a, ma) in masks.iter().enumerate() {
            let area = ma.iter().filter(|&&x| x).count() as f64 / (n * n) as f64;
            assert!(
                (0.08..0.7).contains(&area),
                "{} covers {area}",
                CLASS_NAMES[a]
            );
            for (b, mb) in masks.iter().enumerate().skip(a + 1) {
                let differ = ma.iter().zip(mb).filter(|(x, y)| x != y).count();
                assert!(
                    differ > n * n / 20,
                    "{} and {} look alike",
                    CLASS_NAMES[a],
                    CLASS_NAMES[b]
                );
            }
        }
    }

    #[test]
    fn the_star_has_its_spikes_and_a_solid_centre() {
        use std::f64::consts::TAU;
        assert!(star(0.0, 0.0));
        for k in 0..5 {
            let tip = k as f64 * TAU / 5.0;
            assert!(star(0.9 * tip.cos(), 0.9 * tip.sin()), "spike {k}");
            let gap = tip + TAU / 10.0;
            assert!(
                !star(0.9 * gap.cos(), 0.9 * gap.sin()),
                "between spikes {k}"
            );
        }
    }

    #[test]
    fn the_shape_stands_out_from_the_background() {
        // Without noise, an image has both background and shape pixels.
        let g = Generator {
            noise: 0.0,
            ..generator(1)
        };
        for i in 0..24 {
            let px = g.render(SplitId::Validation, i);
            let (lo, hi) = (
                px.iter().min().copied().unwrap_or(0),
                px.iter().max().copied().unwrap_or(0),
            );
            assert!(hi - lo >= 50, "sample {i}: range {lo}..{hi}");
        }
    }
}
