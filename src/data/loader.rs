//! Epochs of batches: order by (seed, epoch), items decoded and augmented in
//! parallel on rayon, on a background thread that keeps `prefetch` batches
//! ready while the consumer trains on the current one.
//!
//! A batch is a pure function of (split, seed, epoch, options): each item's
//! augmentation has its own seeded generator, so the thread count and the
//! timing never change the data.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use rayon::prelude::*;

use super::{split, DataError, Split};
use crate::vocab::BadImagePolicy;

/// What one epoch of batches looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchOptions {
    pub batch_size: usize,
    pub epoch: usize,
    pub seed: u64,
    /// Reorder the items by (seed, epoch).
    pub shuffle: bool,
    /// Apply the random augmentation (training only).
    pub augment: bool,
    /// Stop after this many batches (Keras's `steps_per_epoch`).
    pub max_batches: Option<usize>,
}

/// A batch of model inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// NCHW floats, `len = n * c * h * w`.
    pub images: Vec<f32>,
    pub labels: Vec<i64>,
    /// The items' positions in their split.
    pub indices: Vec<usize>,
    /// `[n, c, h, w]`.
    pub shape: [usize; 4],
}

/// An epoch of batches. The last one may be smaller. Dropping it stops the
/// background worker and waits for it to finish its current batch.
pub struct Batches {
    rx: Option<Receiver<Result<Batch, DataError>>>,
    worker: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    /// Used instead of a worker thread when none could be started.
    inline: Option<(Split, BatchOptions, VecDeque<Vec<usize>>)>,
    planned: usize,
    finished: bool,
}

impl Batches {
    /// How many batches the epoch has (fewer when every item of a batch
    /// was skipped as a bad image).
    pub fn num_batches(&self) -> usize {
        self.planned
    }
}

impl Iterator for Batches {
    type Item = Result<Batch, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        let item = if let Some((split, opts, pending)) = &mut self.inline {
            loop {
                let chunk = pending.pop_front()?;
                match make_batch(split, &chunk, opts) {
                    Ok(None) => continue,
                    Ok(Some(b)) => break Ok(b),
                    Err(e) => break Err(e),
                }
            }
        } else {
            self.rx.as_ref()?.recv().ok()?
        };
        if item.is_err() {
            self.finished = true;
        }
        Some(item)
    }
}

impl Drop for Batches {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Closing the channel unblocks a worker waiting to hand over a batch.
        drop(self.rx.take());
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

pub(super) fn start(split: Split, opts: BatchOptions) -> Batches {
    let order = split::epoch_order(split.len(), opts.seed, opts.epoch, opts.shuffle);
    let mut chunks: VecDeque<Vec<usize>> = order
        .chunks(opts.batch_size.max(1))
        .map(<[usize]>::to_vec)
        .collect();
    if let Some(max) = opts.max_batches {
        chunks.truncate(max);
    }
    let planned = chunks.len();
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = sync_channel(split.prefetch());
    let worker_stop = stop.clone();
    let worker_split = split.clone();
    let worker_opts = opts.clone();
    let worker_chunks = chunks.clone();
    let spawned = std::thread::Builder::new()
        .name("runner-data".into())
        .spawn(move || {
            for chunk in worker_chunks {
                if worker_stop.load(Ordering::Relaxed) {
                    return;
                }
                let result = catch_unwind(AssertUnwindSafe(|| {
                    make_batch(&worker_split, &chunk, &worker_opts)
                }))
                .unwrap_or_else(|_| {
                    Err(DataError::LoaderCrashed {
                        split: worker_split.kind().as_str(),
                    })
                });
                let batch = match result {
                    Ok(None) => continue,
                    Ok(Some(b)) => Ok(b),
                    Err(e) => Err(e),
                };
                let failed = batch.is_err();
                if tx.send(batch).is_err() || failed {
                    return;
                }
            }
        });
    match spawned {
        Ok(worker) => Batches {
            rx: Some(rx),
            worker: Some(worker),
            stop,
            inline: None,
            planned,
            finished: false,
        },
        Err(_) => Batches {
            rx: None,
            worker: None,
            stop,
            inline: Some((split, opts, chunks)),
            planned,
            finished: false,
        },
    }
}

/// Decode, augment and standardize the items at `positions` in parallel.
/// `Ok(None)` when every item was skipped as a bad image.
pub(super) fn make_batch(
    split: &Split,
    positions: &[usize],
    opts: &BatchOptions,
) -> Result<Option<Batch>, DataError> {
    let [h, w, c] = split.input_shape();
    let per = h * w * c;
    let mut images = vec![0.0f32; positions.len() * per];
    let results: Vec<Result<(), DataError>> = images
        .par_chunks_mut(per)
        .zip(positions.par_iter())
        .map(|(out, &i)| split.fill(i, opts.seed, opts.epoch, opts.augment, out))
        .collect();
    let mut kept = Vec::with_capacity(positions.len());
    for (slot, result) in results.into_iter().enumerate() {
        match result {
            Ok(()) => kept.push(slot),
            Err(DataError::BadImage { reason, .. })
                if split.skip_policy() == BadImagePolicy::Skip =>
            {
                split.record_skip(positions[slot], reason);
            }
            Err(e) => return Err(e),
        }
    }
    if kept.is_empty() {
        return Ok(None);
    }
    if kept.len() < positions.len() {
        for (dst, &src) in kept.iter().enumerate() {
            if dst != src {
                images.copy_within(src * per..(src + 1) * per, dst * per);
            }
        }
        images.truncate(kept.len() * per);
    }
    let indices: Vec<usize> = kept.iter().map(|&k| positions[k]).collect();
    Ok(Some(Batch {
        images,
        labels: indices.iter().map(|&i| split.label(i) as i64).collect(),
        shape: [indices.len(), c, h, w],
        indices,
    }))
}
