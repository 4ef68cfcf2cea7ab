#!/usr/bin/env bash
# Screenshot of TensorBoard's scalars dashboard for a run or sweep folder.
#
#   scripts/tb_screenshot.sh RUN_DIR OUT.png [DASHBOARD]
#
# DASHBOARD is the URL fragment: scalars (default), hparams, images, text,
# timeseries. Starts TensorBoard from .venv (or $TENSORBOARD) on a free
# loopback port, waits until it lists the folder's scalars, takes one headless
# Chromium shot (apt install chromium) and stops the server.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 RUN_DIR OUT.png [DASHBOARD]" >&2; exit 2; }
logdir=$1 out=$2 dashboard=${3:-scalars}
root=$(cd "$(dirname "$0")/.." && pwd)
tb=${TENSORBOARD:-$root/.venv/bin/tensorboard}
py=$(dirname "$tb")/python
chromium=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}
[ -x "$tb" ] || { echo "no TensorBoard at $tb: run 'make tensorboard' once or set TENSORBOARD" >&2; exit 2; }
[ -n "$chromium" ] || { echo "no chromium: apt-get install chromium" >&2; exit 2; }

port=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
profile=$(mktemp -d)
tb_log=$(mktemp)
"$tb" --logdir "$logdir" --host 127.0.0.1 --port "$port" --load_fast=false >"$tb_log" 2>&1 &
tb_pid=$!
trap 'kill $tb_pid 2>/dev/null; wait $tb_pid 2>/dev/null; rm -rf "$profile" "$tb_log"' EXIT

url="http://127.0.0.1:$port"
for _ in $(seq 100); do
    tags=$(curl -fsS "$url/data/plugin/scalars/tags" 2>/dev/null || true)
    [ -n "$tags" ] && [ "$tags" != "{}" ] && break
    sleep 0.2
done
[ -n "$tags" ] && [ "$tags" != "{}" ] || { echo "TensorBoard listed no scalars:" >&2; cat "$tb_log" >&2; exit 1; }

"$chromium" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$profile" --window-size=1400,900 --virtual-time-budget=15000 \
    --screenshot="$(realpath -m "$out")" "$url/#$dashboard" 2>/dev/null
[ -s "$out" ] || { echo "chromium wrote no screenshot" >&2; exit 1; }
echo "$out"
