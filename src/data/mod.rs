//! TEMPORARY stand-in for the data module (replaced by the `data` branch):
//! class-dependent random images with the interface the trainer uses.
#![allow(missing_docs)]

use serde::Serialize;
use thiserror::Error;

use crate::config::spec::DataSpec;
use crate::plan::ExperimentPlan;

#[derive(Debug, Error)]
pub enum DataError {
    #[error("{0}")]
    Other(String),
}

#[derive(Debug, Clone, Serialize)]
pub struct DataFingerprint {
    pub classes: Vec<String>,
    pub counts: std::collections::BTreeMap<String, usize>,
}

#[derive(Clone)]
pub struct Split {
    n: usize,
    shape: [usize; 3],
    classes: usize,
    seed: u64,
}

pub struct Dataset {
    pub classes: Vec<String>,
    pub train: Split,
    pub validation: Option<Split>,
    pub test: Option<Split>,
}

pub struct BatchOptions {
    pub batch_size: usize,
    pub epoch: usize,
    pub seed: u64,
    pub shuffle: bool,
    pub augment: bool,
    pub max_batches: Option<usize>,
}

pub struct Batch {
    pub images: Vec<f32>,
    pub labels: Vec<i64>,
    pub indices: Vec<usize>,
    pub shape: [usize; 4],
}

impl Dataset {
    pub fn open(plan: &ExperimentPlan) -> Result<Dataset, DataError> {
        let DataSpec::Synthetic(s) = &plan.data else {
            return Err(DataError::Other("stand-in data supports synthetic only".into()));
        };
        let [h, w, c] = plan.model.input;
        let mk = |n, k| Split { n, shape: [h, w, c], classes: s.classes, seed: plan.seed ^ k };
        Ok(Dataset {
            classes: (0..s.classes).map(|i| format!("class_{i}")).collect(),
            train: mk(s.train_size, 1),
            validation: (s.validation_size > 0).then(|| mk(s.validation_size, 2)),
            test: Some(mk(s.test_size, 3)),
        })
    }

    pub fn fingerprint(&self) -> DataFingerprint {
        let mut counts = std::collections::BTreeMap::new();
        counts.insert("train".into(), self.train.len());
        if let Some(v) = &self.validation {
            counts.insert("validation".into(), v.len());
        }
        if let Some(t) = &self.test {
            counts.insert("test".into(), t.len());
        }
        DataFingerprint { classes: self.classes.clone(), counts }
    }
}

impl Split {
    pub fn len(&self) -> usize {
        self.n
    }
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }
    pub fn label(&self, index: usize) -> usize {
        index % self.classes
    }

    fn sample(&self, index: usize, out: &mut Vec<f32>) {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(self.seed.wrapping_mul(1_000_003) ^ index as u64);
        let label = self.label(index);
        let [h, w, c] = self.shape;
        for ch in 0..c {
            let base = ((label * 7 + ch * 3) % 11) as f32 / 10.0;
            for y in 0..h {
                for x in 0..w {
                    let stripe = if (x + y * (label % 3)) % (label % 4 + 2) == 0 { 0.3 } else { 0.0 };
                    out.push(base + stripe + rng.random::<f32>() * 0.2);
                }
            }
        }
    }

    pub fn batches(&self, opts: &BatchOptions) -> impl Iterator<Item = Result<Batch, DataError>> + '_ {
        use rand::seq::SliceRandom;
        use rand::SeedableRng;
        let mut order: Vec<usize> = (0..self.n).collect();
        if opts.shuffle {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(opts.seed ^ (opts.epoch as u64 * 7919));
            order.shuffle(&mut rng);
        }
        let bs = opts.batch_size;
        let max = opts.max_batches.unwrap_or(usize::MAX);
        let [h, w, c] = self.shape;
        order
            .chunks(bs)
            .take(max)
            .map(|chunk| {
                let mut images = Vec::with_capacity(chunk.len() * h * w * c);
                for &i in chunk {
                    self.sample(i, &mut images);
                }
                Ok(Batch {
                    images,
                    labels: chunk.iter().map(|&i| self.label(i) as i64).collect(),
                    indices: chunk.to_vec(),
                    shape: [chunk.len(), c, h, w],
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
    }

    pub fn image(&self, index: usize) -> Result<image::DynamicImage, DataError> {
        let mut v = Vec::new();
        self.sample(index, &mut v);
        let [h, w, c] = self.shape;
        let mut img = image::RgbImage::new(w as u32, h as u32);
        for y in 0..h {
            for x in 0..w {
                let px = |ch: usize| (v[(ch.min(c - 1) * h + y) * w + x].clamp(0.0, 1.0) * 255.0) as u8;
                img.put_pixel(x as u32, y as u32, image::Rgb([px(0), px(1), px(2)]));
            }
        }
        Ok(image::DynamicImage::ImageRgb8(img))
    }
}
