#!/usr/bin/env bash
# `make bench-gpu`: runner on CUDA against PyTorch on the same GPU, tutorial
# model (10,588,458 parameters), generated 128x128x3 images, batch 32.
#
#   bench/gpu.sh                    build with --features cuda, then measure
#   RUNNER_BIN=path bench/gpu.sh    use a runner built elsewhere with --features cuda
#
# Environment: STEPS (training steps per epoch, default 200 = 6,400 images,
# about the tutorial's 6,380), PEER_PY (python with torch; default
# bench/.venv/bin/python, then python3). Fits in about 8 minutes on a fresh
# machine with an NVIDIA GPU once the binary is built. Fails with one line
# and exit 1 when there is no GPU.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
cd "$root"
steps="${STEPS:-200}"
work="$(mktemp -d "${TMPDIR:-/tmp}/runner-bench-gpu.XXXXXX")"

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "bench-gpu: no NVIDIA GPU or driver here (nvidia-smi finds none); run this on a machine with one" >&2
  exit 1
fi
nvidia-smi -L

# burn-cuda compiles its kernels at run time with NVRTC (libnvrtc.so.*),
# which cudarc loads by name: add the CUDA toolkit's and pip's NVIDIA
# library folders when the loader cannot already find it.
if ! ldconfig -p 2>/dev/null | grep -q 'libnvrtc\.so'; then
  for f in $(find /usr/local/cuda*/lib64 /usr/local/cuda*/targets/*/lib /usr/local/lib/python3*/dist-packages/nvidia \
      /usr/lib/python3/dist-packages/nvidia /opt -name 'libnvrtc.so*' 2>/dev/null | head -3); do
    export LD_LIBRARY_PATH="$(dirname "$f")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  done
fi

bin="${RUNNER_BIN:-}"
if [ -z "$bin" ]; then
  cargo build --release --features cuda --bin runner
  bin="${CARGO_TARGET_DIR:-target}/release/runner"
fi

# Peak GPU memory in use while a command runs (sampled every 0.2 s).
gpu_peak() {
  local log="$1"; shift
  ( while :; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1; sleep 0.2; done ) >"$log" &
  local sampler=$!
  local rc=0
  "$@" || rc=$?
  kill "$sampler" 2>/dev/null || true
  wait "$sampler" 2>/dev/null || true
  return $rc
}
peak_of() { sort -n "$1" | tail -1; }
base_mib="$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1)"

echo "== runner --device cuda: $steps steps of 32 per epoch, 2 epochs (epoch 1 is the warm-up)"
train_size=$((steps * 32))
gpu_peak "$work/runner-mem.log" "$bin" run bench/models/tutorial.toml --device cuda --no-env \
  --runs-dir "$work/runs" --set "data.train_size=$train_size" --set train.epochs=2 \
  --set data.validation_size=320 --set data.test_size=320
metrics="$(ls "$work"/runs/*/v*/metrics.csv | head -1)"
runner_line="$(python3 - "$metrics" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
last = rows[-1]
print(f"{float(last['images_per_second']):.1f} {float(last['epoch_seconds']):.2f}")
EOF
)"
read -r runner_ips runner_epoch_s <<<"$runner_line"
runner_mem=$(( $(peak_of "$work/runner-mem.log") - base_mib ))

py="${PEER_PY:-$root/bench/.venv/bin/python}"
[ -x "$py" ] || py=python3
torch_ips="n/a"; torch_mem="n/a"
if "$py" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "== PyTorch on cuda: 200 timed steps after 20 warm-up steps"
  gpu_peak "$work/torch-mem.log" "$py" bench/train_torch.py --workload tutorial --device cuda \
    --steps 200 --warmup 20 --threads "$(nproc)" | tee "$work/torch.out"
  torch_ips="$(grep -o 'img_per_s=[0-9.]*' "$work/torch.out" | cut -d= -f2)"
  torch_mem=$(( $(peak_of "$work/torch-mem.log") - base_mib ))
else
  echo "== PyTorch with CUDA is not installed for $py: no peer figure" >&2
fi

echo
echo "tutorial model, batch 32, 128x128x3, $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
printf '%-22s %10s %16s %18s\n' "" "img/s" "GPU MiB (peak)" "epoch of $train_size"
printf '%-22s %10s %16s %17ss\n' "runner (cuda)" "$runner_ips" "$runner_mem" "$runner_epoch_s"
printf '%-22s %10s %16s %18s\n' "PyTorch (cuda)" "$torch_ips" "$torch_mem" ""
if [ "$torch_ips" != "n/a" ]; then
  python3 -c "print(f'runner / PyTorch: {$runner_ips / $torch_ips:.2f}x  (target >= 1.0x)')"
fi
echo "(runner's epoch time includes its loader and the validation pass; raw outputs in $work)"
