#!/usr/bin/env bash
# `make bench-gpu`: runner on a GPU against PyTorch on the same GPU
# (bench/gpu_bench.py says what is measured and how).
#
#   bench/gpu.sh                    build with --features cuda, then measure
#   RUNNER_BIN=path bench/gpu.sh    use a runner built elsewhere with --features cuda
#   DEVICE=wgpu bench/gpu.sh        the wgpu backend instead (peers need CUDA)
#
# More options go to bench/gpu_bench.py, e.g.
#   bench/gpu.sh --variants fusion:autotune --batches 32
# PEER_PY: python with torch (default bench/.venv/bin/python, then python3).
# Fails with one line and exit 1 when there is no GPU.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
cd "$root"
device="${DEVICE:-cuda}"

what=bench-gpu
# shellcheck source=bench/gpu_env.sh
source "$here/gpu_env.sh"
py="${PEER_PY:-$root/bench/.venv/bin/python}"
[ -x "$py" ] || py=python3
peers=()
if ! "$py" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "== PyTorch with CUDA is not installed for $py: no peer rows" >&2
  peers=(--no-peers)
fi
exec python3 bench/gpu_bench.py --runner "$bin" --device "$device" --peer-python "$py" "${peers[@]}" "$@"
