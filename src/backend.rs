//! Which burn backend computes on the CPU, and how many threads it uses.
//!
//! The training code is generic over `B: AutodiffBackend`; this module turns
//! a runtime choice into a concrete backend type by calling back into that
//! generic code ([`WithBackend`]), so the loop is written once and
//! monomorphised per compiled-in backend.
//!
//! On the CPU it is `flex` (burn's pure-Rust backend, SIMD + rayon) with
//! runner's own kernels ([`crate::ops`]); [`with_device`] picks it or a GPU
//! backend (features `cuda`, `wgpu`).

use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::AutodiffBackend;
use thiserror::Error;

use crate::device::{Device, DeviceError};
use crate::gpu::{self, GpuError, GpuSettings};
use crate::model::ConvOps;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum BackendError {
    /// A `RUNNER_GPU_*` or `RUNNER_KERNEL_CACHE` setting is invalid.
    #[error(transparent)]
    Settings(#[from] GpuError),
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// The GPU stack failed while a run used it (one paragraph).
    #[error("{0}")]
    GpuFailed(String),
}

impl BackendError {
    /// Whether the user can fix it in the command or environment (exit
    /// code 2) rather than a run having failed (1).
    pub fn is_usage(&self) -> bool {
        !matches!(self, BackendError::GpuFailed(_))
    }
}

/// What the training loop needs from a backend: autodiff, and runner's
/// convolution ([`ConvOps`]) on it and on its inner (validation) backend.
pub trait TrainBackend: AutodiffBackend<InnerBackend: ConvOps> + ConvOps {}

impl<T> TrainBackend for T where T: AutodiffBackend<InnerBackend: ConvOps> + ConvOps {}

/// Generic code to run on whichever backend is chosen at run time, e.g. the
/// training loop: `fn run<B: TrainBackend>(self, device: B::Device)`.
pub trait WithBackend {
    type Output;
    fn run<B: TrainBackend>(self, device: B::Device) -> Self::Output;
}

/// Run `job` on `device`: flex on the CPU (on the rayon pool of `threads`,
/// see [`on_cpu_pool`]); on a GPU, burn's cubecl backend for it, wrapped in
/// burn's fusion backend when [`gpu::settings`](crate::gpu::settings) says
/// so. Call [`prepare_gpu`] first for a GPU.
pub fn with_device<W>(device: Device, threads: usize, job: W) -> W::Output
where
    W: WithBackend + Send,
    W::Output: Send,
{
    match device {
        Device::Cpu => on_cpu_pool(threads, || job.run::<Autodiff<Flex>>(Default::default())),
        #[cfg(feature = "cuda")]
        Device::Cuda(i) => {
            use burn_cubecl::cubecl::cuda::{CudaDevice, CudaRuntime};
            type Cube = burn_cubecl::CubeBackend<CudaRuntime, f32, i32, u8>;
            let device = CudaDevice::new(i);
            if crate::gpu::settings().fusion {
                job.run::<Autodiff<burn_fusion::Fusion<Cube>>>(device)
            } else {
                job.run::<Autodiff<Cube>>(device)
            }
        }
        #[cfg(feature = "wgpu")]
        Device::Wgpu => {
            use burn_cubecl::cubecl::wgpu::{WgpuDevice, WgpuRuntime};
            type Cube = burn_cubecl::CubeBackend<WgpuRuntime, f32, i32, u32>;
            let device = WgpuDevice::DefaultDevice;
            if crate::gpu::settings().fusion {
                job.run::<Autodiff<burn_fusion::Fusion<Cube>>>(device)
            } else {
                job.run::<Autodiff<Cube>>(device)
            }
        }
        #[allow(unreachable_patterns)]
        other => unreachable!("device::resolve refuses {other} without its feature"),
    }
}

/// [`with_device`], with a panic on a GPU (in burn or cubecl) turned into
/// [`BackendError::GpuFailed`]: one paragraph, which for running out of
/// memory names `train.batch_size` (`batch_size`).
pub fn run_on<W>(
    device: Device,
    threads: usize,
    batch_size: usize,
    job: W,
) -> Result<W::Output, BackendError>
where
    W: WithBackend + Send,
    W::Output: Send,
{
    if !device.is_gpu() {
        return Ok(with_device(device, threads, job));
    }
    gpu::catch_panics(|| with_device(device, threads, job))
        .map_err(|p| BackendError::GpuFailed(p.paragraph(&device.to_string(), batch_size)))
}

/// Fix the GPU settings for this process (from the environment) and check
/// that `device` answers: a wgpu adapter exists and a first tensor can be
/// made. Returns the settings in effect. A no-op on the CPU.
pub fn prepare_gpu(device: Device) -> Result<Option<&'static GpuSettings>, BackendError> {
    if !device.is_gpu() {
        return Ok(None);
    }
    let settings = gpu::init(GpuSettings::from_env()?);
    struct Probe;
    impl WithBackend for Probe {
        type Output = ();
        fn run<B: TrainBackend>(self, device: B::Device) {
            let t = burn::tensor::Tensor::<B::InnerBackend, 1>::ones([1], &device);
            let _ = t.into_data();
        }
    }
    if let Err(p) = gpu::catch_panics(|| with_device(device, 1, Probe)) {
        let message = p.messages.first().cloned().unwrap_or_default();
        return Err(match device {
            Device::Wgpu => DeviceError::NoAdapter(first_line(&message)).into(),
            _ => BackendError::GpuFailed(p.paragraph(&device.to_string(), 0)),
        });
    }
    Ok(Some(settings))
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}

/// Set up the process for CPU training: keep freed memory for reuse
/// ([`retain_freed_memory`]) and fix the number of compute threads: rayon's
/// global pool. `0` means all cores. Call once, before any tensor is made.
/// Returns the thread count in effect.
pub fn configure_cpu(requested: usize) -> usize {
    retain_freed_memory();
    let n = if requested > 0 {
        requested
    } else {
        std::env::var("RAYON_NUM_THREADS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
            })
    };
    // Fails only if the global pool was already built; the existing pool then stays.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global();
    n
}

/// Run `work` (a CPU training loop) on one of the pool's own threads when
/// the pool has more than one. burn calls each kernel from the thread it
/// runs on: from an outside thread every parallel kernel is a cold
/// injection into the pool (two futex wake-ups, and the caller sleeps),
/// from a pool thread it is a local split that the caller helps with.
/// With one thread the loop stays where it is: a pool thread waiting for
/// the next batch would leave no thread to make it.
pub fn on_cpu_pool<R: Send>(threads: usize, work: impl FnOnce() -> R + Send) -> R {
    if threads < 2 || rayon::current_num_threads() < 2 {
        return work();
    }
    rayon::scope(|_| work())
}

/// Keep memory that a training step frees inside the process for the next
/// step. A step allocates and frees the same large buffers (activations,
/// gradients, im2col columns) every time; with glibc's defaults each one
/// over a dynamic threshold is a fresh `mmap` whose pages the kernel must
/// fault in and zero again, and freed heap tops are trimmed back to the
/// kernel. Measured on the Fashion-MNIST CNN (2 threads): system time
/// 2.8 s -> 0.3 s of a 13 s run (bench/FINDINGS.md). Sets glibc's mmap
/// threshold to its maximum (32 MiB), the trim threshold to 1 GiB and the
/// heap's growth step to 64 MiB; peak memory is unchanged (what is kept was
/// in use at the peak). Leaves `GLIBC_TUNABLES` settings alone when the
/// user gave any. No-op on other C libraries.
pub fn retain_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("GLIBC_TUNABLES").is_none() {
        // SAFETY: mallopt only changes allocator parameters; it is safe to
        // call at any time and returns 0 for a value it refuses.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
            libc::mallopt(libc::M_TOP_PAD, 64 << 20);
        }
    }
}

/// This process's peak resident memory so far, in MiB (Linux, macOS).
pub fn max_rss_mib() -> Option<f64> {
    // SAFETY: getrusage fills the zeroed struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    if rc != 0 {
        return None;
    }
    let raw = usage.ru_maxrss as f64;
    // Linux reports KiB, macOS bytes.
    Some(if cfg!(target_os = "macos") {
        raw / (1024.0 * 1024.0)
    } else {
        raw / 1024.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_training_loop_runs_on_a_pool_thread_unless_there_is_one_thread() {
        use rayon::prelude::*;
        // From this (outside) thread: one thread keeps the work here; more
        // move it onto the pool, where kernels split locally.
        assert_eq!(rayon::current_thread_index(), None);
        assert_eq!(on_cpu_pool(1, rayon::current_thread_index), None);
        let moved = on_cpu_pool(2, rayon::current_thread_index);
        assert_eq!(moved.is_some(), rayon::current_num_threads() >= 2);
        // A loop on the pool still gets every parallel kernel's result.
        let sum: u64 = on_cpu_pool(2, || (1..=1000u64).into_par_iter().sum());
        assert_eq!(sum, 500_500);
    }

    #[test]
    fn peak_rss_is_positive() {
        assert!(max_rss_mib().unwrap() > 0.0);
    }
}
