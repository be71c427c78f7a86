#!/usr/bin/env bash
# The prepared device check (issue 14 item 7, issue 15 item 6; docs/gpu_check.md).
# On the device machine, from the repository root, with the check binary carried
# along (built here against the torch of the device image, see the doc):
#   scripts/gpu_check.sh [BINARY] [OUT]
# BINARY defaults to ./gpu_check_bin/eloss, OUT to $OUT (the device tool's
# output folder) or ./gpu_check_out. Prints and writes OUT/gpu_check.json.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN="${1:-./gpu_check_bin/eloss}"
DEST="${2:-${OUT:-$PWD/gpu_check_out}}"
# libtorch from the image's PyPI torch (nothing is downloaded on the device)
TORCH_LIB="$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
mkdir -p "$DEST"
"$BIN" gpu-check --require-cuda --out "$DEST" --iters 30 --train-steps 30 --batch-size 4 --frames 32 | tee "$DEST/gpu_check.stdout"
