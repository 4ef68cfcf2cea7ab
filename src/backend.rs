//! Which burn backend computes on the CPU, and how many threads it uses.
//!
//! The training code is generic over `B: AutodiffBackend`; this module turns
//! a runtime choice into a concrete backend type by calling back into that
//! generic code ([`WithBackend`]), so the loop is written once and
//! monomorphised per compiled-in backend.
//!
//! `flex` (burn's pure-Rust CPU backend, SIMD + rayon) is always built and is
//! the default; [`with_device`] picks it or a GPU backend (features `cuda`,
//! `wgpu`). Other CPU backends are opt-in cargo features:
//!
//! | feature        | backend                  | needs at build time                                  |
//! |----------------|--------------------------|------------------------------------------------------|
//! | (none)         | `flex`                   | nothing                                              |
//! | `tch`          | LibTorch via `tch` 0.22  | a libtorch 2.9 (see bench/FINDINGS.md)               |
//! | `ndarray-blas` | `ndarray` + OpenBLAS     | `apt install libopenblas-dev`                        |
//! | `candle`       | `candle` (CPU)           | nothing                                              |

use std::fmt;
use std::str::FromStr;

use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::AutodiffBackend;
use thiserror::Error;

use crate::device::{Device, DeviceError};
use crate::gpu::{self, GpuError, GpuSettings};
use crate::model::ConvOps;

/// A CPU backend that `runner` may be built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CpuBackend {
    /// burn-flex: pure Rust, SIMD kernels, rayon threads. Always available.
    #[default]
    Flex,
    /// burn-tch: LibTorch (the C++ core of PyTorch). Feature `tch`.
    Tch,
    /// burn-ndarray with OpenBLAS matrix products. Feature `ndarray-blas`.
    NdArray,
    /// burn-candle on the CPU. Feature `candle`.
    Candle,
}

impl CpuBackend {
    pub const ALL: [CpuBackend; 4] = [
        CpuBackend::Flex,
        CpuBackend::Tch,
        CpuBackend::NdArray,
        CpuBackend::Candle,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CpuBackend::Flex => "flex",
            CpuBackend::Tch => "tch",
            CpuBackend::NdArray => "ndarray",
            CpuBackend::Candle => "candle",
        }
    }

    /// The cargo feature that compiles this backend in.
    pub fn feature(self) -> Option<&'static str> {
        match self {
            CpuBackend::Flex => None,
            CpuBackend::Tch => Some("tch"),
            CpuBackend::NdArray => Some("ndarray-blas"),
            CpuBackend::Candle => Some("candle"),
        }
    }

    /// Whether this binary was built with the backend.
    pub fn compiled(self) -> bool {
        match self {
            CpuBackend::Flex => true,
            CpuBackend::Tch => cfg!(feature = "tch"),
            CpuBackend::NdArray => cfg!(feature = "ndarray-blas"),
            CpuBackend::Candle => cfg!(feature = "candle"),
        }
    }

    /// The fastest CPU backend compiled into this binary: tch, then flex
    /// (bench/FINDINGS.md; it has no tch training figures yet).
    pub fn fastest_compiled() -> CpuBackend {
        if CpuBackend::Tch.compiled() {
            CpuBackend::Tch
        } else {
            CpuBackend::Flex
        }
    }

    /// Names of the backends compiled in, for help and error texts.
    pub fn compiled_names() -> Vec<&'static str> {
        CpuBackend::ALL
            .iter()
            .filter(|b| b.compiled())
            .map(|b| b.name())
            .collect()
    }
}

impl fmt::Display for CpuBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for CpuBackend {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "flex" => Ok(CpuBackend::Flex),
            "tch" | "libtorch" | "torch" => Ok(CpuBackend::Tch),
            "ndarray" | "ndarray-blas" | "openblas" => Ok(CpuBackend::NdArray),
            "candle" => Ok(CpuBackend::Candle),
            other => Err(format!(
                "`{other}` is not a CPU backend; use flex, tch, ndarray or candle"
            )),
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum BackendError {
    #[error("the `{backend}` backend is not compiled into this runner; rebuild with `cargo build --release --features {feature}` (compiled in: {available})")]
    NotCompiled {
        backend: CpuBackend,
        feature: &'static str,
        available: String,
    },
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

/// Run `job` on the chosen CPU backend.
pub fn with_cpu_backend<W: WithBackend>(
    backend: CpuBackend,
    job: W,
) -> Result<W::Output, BackendError> {
    match backend {
        CpuBackend::Flex => Ok(job.run::<Autodiff<Flex>>(Default::default())),
        #[cfg(feature = "tch")]
        CpuBackend::Tch => Ok(job.run::<Autodiff<burn::backend::LibTorch>>(
            burn::backend::libtorch::LibTorchDevice::Cpu,
        )),
        #[cfg(feature = "ndarray-blas")]
        CpuBackend::NdArray => Ok(
            job.run::<Autodiff<burn::backend::NdArray>>(burn::backend::ndarray::NdArrayDevice::Cpu)
        ),
        #[cfg(feature = "candle")]
        CpuBackend::Candle => Ok(
            job.run::<Autodiff<burn::backend::Candle>>(burn::backend::candle::CandleDevice::Cpu)
        ),
        #[allow(unreachable_patterns)]
        other => Err(BackendError::NotCompiled {
            backend: other,
            // Every backend but flex has a feature; flex is matched above.
            feature: other.feature().unwrap_or("flex"),
            available: CpuBackend::compiled_names().join(", "),
        }),
    }
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
/// ([`retain_freed_memory`]) and fix the number of compute threads for every
/// CPU backend compiled in: rayon's global pool (flex, ndarray, candle),
/// LibTorch's intra-op pool and OpenBLAS. `0` means all cores. Call once,
/// before any tensor is made. Returns the thread count in effect.
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
    #[cfg(feature = "tch")]
    {
        let n = i32::try_from(n).unwrap_or(i32::MAX);
        tch::set_num_threads(n);
        // One inter-op thread: a sequential model has no parallel branches.
        tch::set_num_interop_threads(1);
    }
    #[cfg(feature = "ndarray-blas")]
    openblas::set_threads(n);
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

#[cfg(feature = "ndarray-blas")]
mod openblas {
    extern "C" {
        fn openblas_set_num_threads(n: std::ffi::c_int);
    }

    pub fn set_threads(n: usize) {
        let n = std::ffi::c_int::try_from(n).unwrap_or(std::ffi::c_int::MAX);
        // SAFETY: a plain setter exported by the OpenBLAS library that the
        // `ndarray-blas` feature links.
        unsafe { openblas_set_num_threads(n) }
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
    fn parses_backend_names() {
        assert_eq!("flex".parse(), Ok(CpuBackend::Flex));
        assert_eq!("LibTorch".parse(), Ok(CpuBackend::Tch));
        assert_eq!("ndarray".parse(), Ok(CpuBackend::NdArray));
        assert_eq!("candle".parse(), Ok(CpuBackend::Candle));
        assert!("cuda".parse::<CpuBackend>().is_err());
        for b in CpuBackend::ALL {
            assert_eq!(b.name().parse(), Ok(b));
        }
    }

    #[test]
    fn flex_is_always_compiled_and_fastest_is_compiled() {
        assert!(CpuBackend::Flex.compiled());
        assert!(CpuBackend::fastest_compiled().compiled());
        assert!(CpuBackend::compiled_names().contains(&"flex"));
    }

    struct Name;
    impl WithBackend for Name {
        type Output = String;
        fn run<B: TrainBackend>(self, _device: B::Device) -> String {
            B::name(&Default::default())
        }
    }

    #[test]
    fn dispatch_runs_on_compiled_backends_and_refuses_others() {
        for b in CpuBackend::ALL {
            let out = with_cpu_backend(b, Name);
            if b.compiled() {
                assert!(out.is_ok(), "{b} is compiled but did not run");
            } else {
                let err = out.unwrap_err();
                assert!(err
                    .to_string()
                    .contains(&format!("--features {}", b.feature().unwrap())));
            }
        }
    }

    #[test]
    fn peak_rss_is_positive() {
        assert!(max_rss_mib().unwrap() > 0.0);
    }
}
