//! Backend and device choice, and the CUDA driver probe.
//!
//! burn-cuda panics on first use when the driver library is missing, so we
//! look for the driver ourselves and turn its absence into a one-line error.
//! A wgpu adapter is probed by the backend itself ([`crate::backend`]).

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// What the user asked for with `--device` or `runtime.device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceRequest {
    /// CUDA when compiled in and a GPU is present, otherwise CPU.
    Auto,
    Cpu,
    Cuda(usize),
    /// burn's wgpu backend on the default adapter (Vulkan, Metal, DX12).
    Wgpu,
}

impl FromStr for DeviceRequest {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase();
        match s.as_str() {
            "auto" => Ok(DeviceRequest::Auto),
            "cpu" => Ok(DeviceRequest::Cpu),
            "cuda" | "gpu" => Ok(DeviceRequest::Cuda(0)),
            "wgpu" => Ok(DeviceRequest::Wgpu),
            _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(n)) => Ok(DeviceRequest::Cuda(n)),
                _ => Err(format!(
                    "`{s}` is not a device; use auto, cpu, cuda, cuda:N or wgpu"
                )),
            },
        }
    }
}

impl fmt::Display for DeviceRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceRequest::Auto => f.write_str("auto"),
            DeviceRequest::Cpu => f.write_str("cpu"),
            DeviceRequest::Cuda(n) => write!(f, "cuda:{n}"),
            DeviceRequest::Wgpu => f.write_str("wgpu"),
        }
    }
}

/// The device a run actually uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Cpu,
    Cuda(usize),
    Wgpu,
}

impl Device {
    pub fn backend_name(&self) -> &'static str {
        match self {
            Device::Cpu => "flex",
            Device::Cuda(_) => "cuda",
            Device::Wgpu => "wgpu",
        }
    }

    /// A GPU through cubecl: kernels are compiled (and tuned) at run time,
    /// so batches keep one shape and results are read back rarely.
    pub fn is_gpu(&self) -> bool {
        !matches!(self, Device::Cpu)
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
            Device::Wgpu => f.write_str("wgpu"),
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DeviceError {
    #[error("--device {0} asked for the {feature} backend, but this runner was built without it; rebuild with `cargo build --release --features {feature}`", feature = .0.feature())]
    NotCompiled(DeviceRequest),
    #[error("--device {0} asked for CUDA, but no NVIDIA driver was found (libcuda.so.1 cannot be loaded); use --device cpu")]
    NoDriver(DeviceRequest),
    #[error("--device {req} asked for GPU {index}, but only {count} GPU(s) are visible")]
    NoSuchGpu {
        req: DeviceRequest,
        index: usize,
        count: usize,
    },
    #[error("--device wgpu found no GPU adapter (Vulkan, Metal or DX12): {0}; install the GPU's Vulkan driver (on Linux without a GPU, Mesa's lavapipe: `apt install mesa-vulkan-drivers`) or use --device cpu")]
    NoAdapter(String),
}

impl DeviceRequest {
    /// The cargo feature that compiles this device's backend in.
    pub fn feature(&self) -> &'static str {
        match self {
            DeviceRequest::Wgpu => "wgpu",
            _ => "cuda",
        }
    }
}

/// Whether this binary was built with the `cuda` feature.
pub const CUDA_COMPILED: bool = cfg!(feature = "cuda");
/// Whether this binary was built with the `wgpu` feature.
pub const WGPU_COMPILED: bool = cfg!(feature = "wgpu");

/// Number of CUDA devices the driver reports, or `None` when no driver loads.
pub fn cuda_device_count() -> Option<usize> {
    probe::device_count()
}

/// Turn a request into a device this process can use, without touching burn.
pub fn resolve(req: DeviceRequest) -> Result<Device, DeviceError> {
    match req {
        DeviceRequest::Cpu => Ok(Device::Cpu),
        DeviceRequest::Auto => {
            if CUDA_COMPILED && cuda_device_count().unwrap_or(0) > 0 {
                Ok(Device::Cuda(0))
            } else {
                Ok(Device::Cpu)
            }
        }
        DeviceRequest::Cuda(index) => {
            if !CUDA_COMPILED {
                return Err(DeviceError::NotCompiled(req));
            }
            match cuda_device_count() {
                None => Err(DeviceError::NoDriver(req)),
                Some(count) if index >= count => Err(DeviceError::NoSuchGpu { req, index, count }),
                Some(_) => Ok(Device::Cuda(index)),
            }
        }
        DeviceRequest::Wgpu if WGPU_COMPILED => Ok(Device::Wgpu),
        DeviceRequest::Wgpu => Err(DeviceError::NotCompiled(req)),
    }
}

/// Number of CPU threads to use: the configured count; otherwise, inside a
/// Slurm job, the CPUs Slurm gave it (`SLURM_CPUS_PER_TASK`, else
/// `SLURM_CPUS_ON_NODE`); otherwise all cores.
pub fn cpu_threads(configured: usize) -> usize {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    threads_from(configured, |var| std::env::var(var).ok(), cores)
}

/// [`cpu_threads`] with the environment and the core count given. An
/// array task without `--cpus-per-task` is given one CPU and only
/// `SLURM_CPUS_ON_NODE` says so; where Slurm binds no cores (no cgroup or
/// affinity plugin), using every core would oversubscribe the node.
fn threads_from(configured: usize, var: impl Fn(&str) -> Option<String>, cores: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    ["SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE"]
        .iter()
        .find_map(|name| var(name)?.trim().parse::<usize>().ok().filter(|n| *n > 0))
        .unwrap_or(cores)
}

mod probe {
    //! Loads `libcuda` with `dlopen` and asks `cuDeviceGetCount`, the same
    //! library burn-cuda would load; nothing is linked at build time.
    use std::ffi::{c_char, c_int, c_void, CString};

    type CuInit = unsafe extern "C" fn(flags: u32) -> c_int;
    type CuDeviceGetCount = unsafe extern "C" fn(count: *mut c_int) -> c_int;

    pub fn device_count() -> Option<usize> {
        for name in ["libcuda.so.1", "libcuda.so"] {
            let cname = CString::new(name).ok()?;
            // SAFETY: dlopen with a valid C string; the handle is checked for null.
            let handle = unsafe { libc::dlopen(cname.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
            if handle.is_null() {
                continue;
            }
            let init = symbol(handle, "cuInit")?;
            let count_fn = symbol(handle, "cuDeviceGetCount")?;
            // SAFETY: the symbols come from libcuda with these C signatures.
            let (init, count_fn): (CuInit, CuDeviceGetCount) = unsafe {
                (
                    std::mem::transmute::<*mut c_void, CuInit>(init),
                    std::mem::transmute::<*mut c_void, CuDeviceGetCount>(count_fn),
                )
            };
            // SAFETY: plain FFI calls into the driver API.
            let rc = unsafe { init(0) };
            if rc != 0 {
                return Some(0);
            }
            let mut n: c_int = 0;
            // SAFETY: `n` is a valid out-pointer.
            let rc = unsafe { count_fn(&mut n) };
            return Some(if rc == 0 { n.max(0) as usize } else { 0 });
        }
        None
    }

    fn symbol(handle: *mut c_void, name: &str) -> Option<*mut c_void> {
        let cname = CString::new(name).ok()?;
        // SAFETY: valid handle from dlopen and a valid C string.
        let sym = unsafe { libc::dlsym(handle, cname.as_ptr() as *const c_char) };
        (!sym.is_null()).then_some(sym)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_are_the_configured_count_else_slurms_else_every_core() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(threads_from(3, env(&[("SLURM_CPUS_PER_TASK", "8")]), 16), 3);
        assert_eq!(threads_from(0, env(&[]), 16), 16);
        let both = env(&[("SLURM_CPUS_PER_TASK", "8"), ("SLURM_CPUS_ON_NODE", "4")]);
        assert_eq!(threads_from(0, both, 16), 8);
        // An array task given one CPU, without --cpus-per-task.
        assert_eq!(threads_from(0, env(&[("SLURM_CPUS_ON_NODE", "1")]), 16), 1);
        assert_eq!(threads_from(0, env(&[("SLURM_CPUS_ON_NODE", "x")]), 16), 16);
        assert_eq!(
            threads_from(0, env(&[("SLURM_CPUS_PER_TASK", "0")]), 16),
            16
        );
    }

    #[test]
    fn parses_device_requests() {
        assert_eq!("cpu".parse(), Ok(DeviceRequest::Cpu));
        assert_eq!("CUDA".parse(), Ok(DeviceRequest::Cuda(0)));
        assert_eq!("cuda:3".parse(), Ok(DeviceRequest::Cuda(3)));
        assert_eq!("auto".parse(), Ok(DeviceRequest::Auto));
        assert_eq!("WGPU".parse(), Ok(DeviceRequest::Wgpu));
        assert!("tpu".parse::<DeviceRequest>().is_err());
        assert!("cuda:x".parse::<DeviceRequest>().is_err());
    }

    #[test]
    fn cpu_always_resolves() {
        assert_eq!(resolve(DeviceRequest::Cpu), Ok(Device::Cpu));
    }

    #[test]
    fn cuda_without_feature_or_driver_is_a_clean_error() {
        if CUDA_COMPILED && cuda_device_count().unwrap_or(0) > 0 {
            return; // a real GPU: nothing to check here
        }
        let err = resolve(DeviceRequest::Cuda(0)).unwrap_err();
        assert!(matches!(
            err,
            DeviceError::NotCompiled(_) | DeviceError::NoDriver(_) | DeviceError::NoSuchGpu { .. }
        ));
        assert!(!err.to_string().contains('\n'));
    }

    #[test]
    fn wgpu_resolves_only_when_compiled_and_says_which_feature() {
        let resolved = resolve(DeviceRequest::Wgpu);
        assert_eq!(resolved.is_ok(), cfg!(feature = "wgpu"));
        match resolved {
            Ok(d) => {
                assert_eq!(d, Device::Wgpu);
                assert!(d.is_gpu());
            }
            Err(e) => assert!(e.to_string().contains("--features wgpu"), "{e}"),
        }
        assert!(!Device::Cpu.is_gpu());
    }
}
