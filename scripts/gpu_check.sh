#!/usr/bin/env bash
# The prepared device check (issue 14 item 7, issue 15 item 6; docs/gpu_check.md).
# On the device machine, from the repository root, with the check binary carried
# along (built here against the torch of the device image, see the doc):
#   scripts/gpu_check.sh [BINARY] [OUT]
# BINARY defaults to ./gpu_check_bin/eloss, OUT to $OUT (the device tool's
# output folder) or ./gpu_check_out. Writes OUT/gpu_check.json,
# OUT/pytorch_peers.json and prints both as one table (gpu_check_table.md).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN="${1:-./gpu_check_bin/eloss}"
DEST="${2:-${OUT:-$PWD/gpu_check_out}}"
# libtorch from the image's PyPI torch (nothing is downloaded on the device)
TORCH_LIB="$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
mkdir -p "$DEST"
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.version.cuda)' || true
"$BIN" gpu-check --require-cuda --out "$DEST" --iters 30 --train-steps 30 --batch-size 4 --frames 32 | tee "$DEST/gpu_check.stdout"
# the PyTorch peers on the same GPU, same weights, same pillar input (the
# check's result above stands even if this fails)
python3 scripts/bench_detector_torch.py --model "$DEST/full_random.safetensors" --dump "$DEST/pillars_dump.safetensors" \
  --cuda --iters 30 | tee "$DEST/pytorch_peers.json" || echo "PyTorch peers: failed (exit $?)"
# one table of both reports
python3 scripts/gpu_check_table.py "$DEST" | tee "$DEST/gpu_check_table.md" || echo "table: failed (exit $?)"
# the big files stay behind: the report is what comes back
rm -rf "$DEST/sim" "$DEST/run" "$DEST"/*_random.safetensors "$DEST/pillars_dump.safetensors"
