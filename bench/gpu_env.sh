# Sourced by bench/gpu.sh and bench/gpu_check.sh: on `cuda`, make sure an
# NVIDIA GPU answers and that NVRTC (libnvrtc.so.*, which burn-cuda loads by
# name to compile kernels at run time) can be found; then pick the runner
# binary. Sets `bin`. Needs `device` and `what` (the make target's name).
if [ "$device" = cuda ]; then
  if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "$what: no NVIDIA GPU or driver here (nvidia-smi finds none); run this on a machine with one, or DEVICE=wgpu" >&2
    exit 1
  fi
  nvidia-smi -L
  if ! ldconfig -p 2>/dev/null | grep -q 'libnvrtc\.so'; then
    for f in $(find /usr/local/cuda*/lib64 /usr/local/cuda*/targets/*/lib /usr/local/lib/python3*/dist-packages/nvidia \
        /usr/lib/python3/dist-packages/nvidia /opt -name 'libnvrtc.so*' 2>/dev/null | head -3); do
      export LD_LIBRARY_PATH="$(dirname "$f")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    done
  fi
fi
bin="${RUNNER_BIN:-}"
if [ -z "$bin" ]; then
  cargo build --release --features "$device" --bin runner || exit 1
  bin="${CARGO_TARGET_DIR:-target}/release/runner"
fi
