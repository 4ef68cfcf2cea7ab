//! GPU settings for the cubecl backends (`cuda`, `wgpu`): which kernel paths
//! run, where compiled kernels and autotune results are kept between runs,
//! and how a failure inside the GPU stack (a panic in burn or cubecl, most
//! often out of memory) becomes an error instead of a panic dump.
//!
//! Settings come from the environment, like `CUBECL_AUTOTUNE_LEVEL` or
//! `RAYON_NUM_THREADS`: they tune how a run executes on this machine, never
//! what it computes, so they live outside the experiment file.
//!
//! | variable              | default                      | values                                   |
//! |-----------------------|------------------------------|------------------------------------------|
//! | `RUNNER_KERNEL_CACHE` | `<user cache dir>/runner/kernels` | a folder, or `off`                  |
//! | `RUNNER_GPU_FUSION`   | `on`                         | `on`, `off`                              |
//! | `RUNNER_GPU_CONV`     | `autotune`                   | `autotune`, `implicit_gemm`, `direct`    |
//!
//! cubecl's own `CUBECL_AUTOTUNE_LEVEL` (minimal, balanced, extensive, full)
//! and a `cubecl.toml` in the working directory still apply; runner only
//! replaces the two cache locations.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Mutex, OnceLock};

use thiserror::Error;

/// The folder for compiled kernels and autotune results.
pub const CACHE_VAR: &str = "RUNNER_KERNEL_CACHE";
/// Fusion of element-wise operations into larger kernels.
pub const FUSION_VAR: &str = "RUNNER_GPU_FUSION";
/// The convolution kernels.
pub const CONV_VAR: &str = "RUNNER_GPU_CONV";

/// Which of burn-cubecl's convolution kernels run (forward pass and both
/// gradients).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvKernels {
    /// Benchmark the candidates on first use of each shape, keep the fastest
    /// (cached on disk).
    Autotune,
    /// Implicit GEMM on the tensor cores; falls back to the direct kernel
    /// where a shape is not supported.
    ImplicitGemm,
    /// The simple direct convolution (burn-cuda's default without autotune).
    Direct,
}

impl ConvKernels {
    pub fn name(self) -> &'static str {
        match self {
            ConvKernels::Autotune => "autotune",
            ConvKernels::ImplicitGemm => "implicit_gemm",
            ConvKernels::Direct => "direct",
        }
    }
}

impl fmt::Display for ConvKernels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ConvKernels {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "autotune" | "auto" => Ok(ConvKernels::Autotune),
            "implicit_gemm" | "gemm" => Ok(ConvKernels::ImplicitGemm),
            "direct" => Ok(ConvKernels::Direct),
            _ => Err(()),
        }
    }
}

/// How a GPU run executes: resolved once per process from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuSettings {
    /// burn's fusion backend around cubecl (`Fusion<CubeBackend>`).
    pub fusion: bool,
    pub conv: ConvKernels,
    /// Where compiled kernels and autotune results are kept; `None` keeps
    /// them in memory only.
    pub cache_dir: Option<PathBuf>,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum GpuError {
    #[error("{var}={value} is not a valid setting; use {expected}")]
    BadSetting {
        var: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("RUNNER_GPU_CONV={conv} needs RUNNER_GPU_FUSION=off: with fusion on, burn autotunes every convolution")]
    ConvNeedsNoFusion { conv: ConvKernels },
}

impl GpuSettings {
    /// The settings from this process's environment.
    pub fn from_env() -> Result<GpuSettings, GpuError> {
        Self::from_vars(|k| std::env::var(k).ok(), default_cache_dir())
    }

    /// The settings from variables read by `var`, with `default_cache` when
    /// `RUNNER_KERNEL_CACHE` is unset.
    pub fn from_vars(
        var: impl Fn(&str) -> Option<String>,
        default_cache: Option<PathBuf>,
    ) -> Result<GpuSettings, GpuError> {
        let set = |k: &str| var(k).filter(|v| !v.trim().is_empty());
        let fusion = match set(FUSION_VAR) {
            None => true,
            Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                "on" | "1" | "true" | "yes" => true,
                "off" | "0" | "false" | "no" => false,
                _ => {
                    return Err(GpuError::BadSetting {
                        var: FUSION_VAR,
                        value: v,
                        expected: "on or off",
                    })
                }
            },
        };
        let conv = match set(CONV_VAR) {
            None => ConvKernels::Autotune,
            Some(v) => v.parse().map_err(|()| GpuError::BadSetting {
                var: CONV_VAR,
                value: v.clone(),
                expected: "autotune, implicit_gemm or direct",
            })?,
        };
        if fusion && conv != ConvKernels::Autotune {
            return Err(GpuError::ConvNeedsNoFusion { conv });
        }
        let cache_dir = match set(CACHE_VAR) {
            None => default_cache,
            Some(v) if v.trim().eq_ignore_ascii_case("off") => None,
            Some(v) => Some(PathBuf::from(v)),
        };
        Ok(GpuSettings {
            fusion,
            conv,
            cache_dir,
        })
    }

    /// One line for the run's output and meta.json.
    pub fn describe(&self) -> String {
        format!(
            "fusion {}, convolutions {}, kernel cache {}",
            if self.fusion { "on" } else { "off" },
            self.conv,
            self.cache_dir
                .as_deref()
                .map_or("off".to_string(), |p| p.display().to_string())
        )
    }
}

/// `<user cache dir>/runner/kernels` (`~/.cache/runner/kernels` on Linux).
pub fn default_cache_dir() -> Option<PathBuf> {
    dirs::cache_dir().map(|d| d.join("runner").join("kernels"))
}

static SETTINGS: OnceLock<GpuSettings> = OnceLock::new();

/// The settings in effect: those given to [`init`], else the environment's
/// (or the defaults where the environment is invalid; [`init`] reports that).
pub fn settings() -> &'static GpuSettings {
    SETTINGS.get_or_init(|| {
        GpuSettings::from_env().unwrap_or(GpuSettings {
            fusion: true,
            conv: ConvKernels::Autotune,
            cache_dir: default_cache_dir(),
        })
    })
}

/// Fix this process's GPU settings and hand the cache locations to cubecl.
/// Call before the first GPU tensor is made; later calls keep the first
/// settings.
pub fn init(settings: GpuSettings) -> &'static GpuSettings {
    let chosen = SETTINGS.get_or_init(|| settings);
    configure_cubecl(chosen.cache_dir.as_deref());
    chosen
}

#[cfg(feature = "gpu")]
fn configure_cubecl(cache: Option<&Path>) {
    use burn_cubecl::cubecl::config::cache::CacheConfig;
    use burn_cubecl::cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        // What cubecl would read itself (a cubecl.toml, CUBECL_* variables),
        // with runner's cache folder for both caches.
        let mut config = CubeClRuntimeConfig::from_current_dir().override_from_env();
        if let Some(dir) = cache {
            config.autotune.cache = CacheConfig::File(dir.to_path_buf());
            config.compilation.cache = Some(CacheConfig::File(dir.to_path_buf()));
        }
        // `set` panics when cubecl already read its configuration (only
        // possible if a GPU tensor existed before this call): keep that one.
        let _ = std::panic::catch_unwind(|| CubeClRuntimeConfig::set(config));
    });
}

#[cfg(not(feature = "gpu"))]
fn configure_cubecl(_cache: Option<&Path>) {}

/// Messages of panics caught by [`catch_panics`], from any thread.
static CAUGHT: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The panic messages of a failed GPU run, first one first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuPanic {
    pub messages: Vec<String>,
}

impl GpuPanic {
    /// One paragraph for the user; see [`failure_paragraph`].
    pub fn paragraph(&self, device: &str, batch_size: usize) -> String {
        failure_paragraph(device, batch_size, &self.messages)
    }
}

/// Run `work`, turning a panic (in it, or in a GPU server thread it waits
/// on) into a [`GpuPanic`]. While it runs, panic messages are collected
/// instead of printed with a backtrace; a panic on another thread that
/// `work` survives is printed as one warning line.
pub fn catch_panics<R>(work: impl FnOnce() -> R) -> Result<R, GpuPanic> {
    if let Ok(mut c) = CAUGHT.lock() {
        c.clear();
    }
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|info| {
        let message = panic_text(info.payload());
        let place = info
            .location()
            .map(|l| format!(" (at {}:{})", l.file(), l.line()))
            .unwrap_or_default();
        if let Ok(mut c) = CAUGHT.lock() {
            c.push(format!("{message}{place}"));
        }
    }));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
    std::panic::set_hook(previous);
    let caught = CAUGHT
        .lock()
        .map(|mut c| std::mem::take(&mut *c))
        .unwrap_or_default();
    match result {
        Ok(r) => {
            for m in &caught {
                crate::errln!("warning: a thread panicked: {}", headline(m));
            }
            Ok(r)
        }
        Err(payload) => {
            let mut messages = caught;
            if messages.is_empty() {
                messages.push(panic_text(payload.as_ref()));
            }
            Err(GpuPanic { messages })
        }
    }
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}

/// Whether a GPU stack's message says it ran out of memory.
pub fn is_out_of_memory(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "out of memory",
        "out-of-memory",
        "outofmemory",
        "out_of_memory",
        "unable to allocate",
        "failed to allocate",
        "allocation failed",
    ]
    .iter()
    .any(|p| m.contains(p))
}

/// The first meaningful lines of a GPU stack's message (cubecl appends
/// backtraces).
fn headline(message: &str) -> String {
    let mut lines = Vec::new();
    for line in message.lines() {
        let t = line.trim();
        if t.starts_with("Backtrace") || t.starts_with("stack backtrace") {
            break;
        }
        if !t.is_empty() {
            lines.push(t);
        }
        if lines.len() == 3 {
            break;
        }
    }
    lines.join(" ")
}

/// One paragraph for a failed GPU run: out-of-memory advice naming
/// `train.batch_size`, or the GPU stack's own message.
pub fn failure_paragraph(device: &str, batch_size: usize, messages: &[String]) -> String {
    let oom = messages.iter().find(|m| is_out_of_memory(m));
    match oom {
        Some(m) => format!(
            "{device} ran out of memory with train.batch_size = {batch_size}. Lower it (for example \
             `--set train.batch_size={}`), or shrink the model or model.input_shape. GPU message: {}",
            (batch_size / 2).max(1),
            headline(m)
        ),
        None => format!(
            "the GPU backend failed on {device}: {}",
            messages.first().map_or(String::new(), |m| headline(m))
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn defaults_are_fusion_autotune_and_the_user_cache() {
        let s = GpuSettings::from_vars(vars(&[]), Some("/c".into())).unwrap();
        assert_eq!(
            s,
            GpuSettings {
                fusion: true,
                conv: ConvKernels::Autotune,
                cache_dir: Some("/c".into())
            }
        );
    }

    #[test]
    fn variables_choose_the_kernels_and_the_cache() {
        let s = GpuSettings::from_vars(
            vars(&[
                (FUSION_VAR, "0"),
                (CONV_VAR, "implicit-gemm"),
                (CACHE_VAR, "/tmp/k"),
            ]),
            Some("/c".into()),
        )
        .unwrap();
        assert!(!s.fusion);
        assert_eq!(s.conv, ConvKernels::ImplicitGemm);
        assert_eq!(s.cache_dir, Some(PathBuf::from("/tmp/k")));
        let off = GpuSettings::from_vars(vars(&[(CACHE_VAR, "OFF")]), Some("/c".into())).unwrap();
        assert_eq!(off.cache_dir, None);
        assert!(
            off.describe().ends_with("kernel cache off"),
            "{}",
            off.describe()
        );
    }

    #[test]
    fn bad_settings_name_the_variable_and_the_choices() {
        let e = GpuSettings::from_vars(vars(&[(CONV_VAR, "direct")]), None).unwrap_err();
        assert!(e.to_string().contains("needs RUNNER_GPU_FUSION=off"), "{e}");
        let e = GpuSettings::from_vars(vars(&[(CONV_VAR, "winograd")]), None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "RUNNER_GPU_CONV=winograd is not a valid setting; use autotune, implicit_gemm or direct"
        );
        let e = GpuSettings::from_vars(vars(&[(FUSION_VAR, "maybe")]), None).unwrap_err();
        assert!(e.to_string().contains("RUNNER_GPU_FUSION=maybe"));
    }

    #[test]
    fn out_of_memory_names_the_batch_size_in_one_paragraph() {
        let cubecl = "An out-of-memory error happened during launch\nCaused by:\n  Unable to allocate 8589934592 bytes\nBacktrace\n   0: cubecl::x\n   1: y";
        assert!(is_out_of_memory(cubecl));
        let p = failure_paragraph("cuda:0", 4096, &["other".into(), cubecl.into()]);
        assert!(p.contains("train.batch_size = 4096"), "{p}");
        assert!(p.contains("--set train.batch_size=2048"), "{p}");
        assert!(p.contains("Unable to allocate 8589934592 bytes"), "{p}");
        assert!(!p.contains('\n') && !p.contains("Backtrace"), "{p}");
        let other = failure_paragraph("wgpu", 32, &["index out of bounds".into()]);
        assert!(
            other.starts_with("the GPU backend failed on wgpu: index out of bounds"),
            "{other}"
        );
        assert!(!is_out_of_memory("index out of bounds"));
    }

    #[test]
    fn a_panic_becomes_its_messages_and_a_paragraph() {
        let r = catch_panics(|| -> u32 { panic!("CUDA_ERROR_OUT_OF_MEMORY") });
        let p = r.unwrap_err();
        assert!(
            p.messages[0].starts_with("CUDA_ERROR_OUT_OF_MEMORY (at src/gpu.rs:"),
            "{p:?}"
        );
        assert!(p.paragraph("cuda:0", 64).contains("train.batch_size = 64"));
        assert_eq!(catch_panics(|| 7), Ok(7));
    }
}
