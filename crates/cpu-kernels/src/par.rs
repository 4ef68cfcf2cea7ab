//! Output buffers made on rayon's pool, and how a batch is split over it.

use std::mem::MaybeUninit;

use rayon::prelude::*;

/// Images per task when a pass that sums over the batch (a weight
/// gradient) gives each pool thread one run of images and a partial sum.
pub(crate) fn images_per_task(batch: usize) -> usize {
    batch.div_ceil(rayon::current_num_threads().max(1))
}

/// `n` zeros, written by the thread pool when there are many. An output
/// buffer is allocated on the thread that calls the kernel (burn's, which
/// then waits); with freed memory kept for reuse
/// (runner's `backend::retain_freed_memory`) zeroing it is a real pass over
/// memory, which would otherwise run there alone.
pub(crate) fn zeroed<T: Copy + Default + Send + Sync>(n: usize) -> Vec<T> {
    if n < 1 << 16 {
        return vec![T::default(); n];
    }
    let mut v = Vec::with_capacity(n);
    v.par_extend(rayon::iter::repeat_n(T::default(), n).with_min_len(1 << 14));
    v
}

/// A vector of `n` values made on the thread pool in chunks of `chunk`
/// values (the last may be shorter), one chunk per item of `inputs`. Each
/// task zeroes its chunk right before `fill` writes it, so the zeros go to
/// cache instead of being a separate pass over the whole output ([`zeroed`]);
/// `fill` also gets a scratch value that `scratch` makes once per rayon job.
pub(crate) fn par_fill<T, S, I>(
    n: usize,
    chunk: usize,
    inputs: I,
    scratch: impl Fn() -> S + Sync + Send,
    fill: impl Fn(&mut S, &mut [T], I::Item) + Sync + Send,
) -> Vec<T>
where
    T: Copy + Default + Send,
    I: IndexedParallelIterator,
{
    let mut v: Vec<T> = Vec::with_capacity(n);
    let chunks = v.spare_capacity_mut()[..n].par_chunks_mut(chunk.max(1));
    // Every chunk must get an input, or part of the vector stays uninitialised.
    assert_eq!(chunks.len(), inputs.len(), "one input per output chunk");
    chunks
        .zip(inputs)
        .for_each_init(scratch, |s, (part, input)| {
            for e in part.iter_mut() {
                e.write(T::default());
            }
            // SAFETY: every element of `part` was initialised just above, and
            // `MaybeUninit<T>` has the layout of `T`.
            let part = unsafe { &mut *(part as *mut [MaybeUninit<T>] as *mut [T]) };
            fill(s, part, input);
        });
    // SAFETY: the chunks cover the first `n` elements (checked above) and
    // each task initialised its whole chunk; a panicking task propagates out
    // of `for_each_init` before this line.
    unsafe { v.set_len(n) };
    v
}
