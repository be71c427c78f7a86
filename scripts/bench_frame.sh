#!/usr/bin/env bash
# The whole frame, ours against the Python pipeline a user would write
# (issue 15 item 3, docs/benchmarks.md "The whole frame"): for each thread
# count and repetition, `eloss bench-frame` (the node's frame from the
# PointCloud2 bytes to the built messages, Eloss monitor on and off) on the
# libtorch backend and on the onnxruntime backend (the graph exported by
# scripts/export_onnx.py), then scripts/bench_frame_python.py on the same
# cloud, its detections checked against ours. Writes
# OUT/frame_T_R_{ours,ours_onnx,python}.json and OUT/bench_frame.md.
#   scripts/bench_frame.sh [THREADS] [REPS] [ITERS] [OUT] [CLOUD]
# ELOSS_BIN picks the eloss binary (default: the dev build, as the demo and tests use).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh >/dev/null
THREADS="${1:-1,2}"; REPS="${2:-2}"; ITERS="${3:-30}"
OUT="${4:-$ELOSS_CACHE/bench_frame}"; CLOUD="${5:-../shared/data/kitti_000008/000008.bin}"
E="${ELOSS_BIN:-}"
if [ -z "$E" ]; then
  cargo build --bin eloss >&2
  E="$CARGO_TARGET_DIR/debug/eloss"
fi
mkdir -p "$OUT"
M=config/detector/compact_eloss.safetensors
(cd scripts && "$ELOSS_PYTHON" export_onnx.py --model "../$M" --out "$OUT/compact_eloss.onnx" >&2)
export OMP_WAIT_POLICY=PASSIVE
for r in $(seq 1 "$REPS"); do
  for t in ${THREADS//,/ }; do
    "$E" bench-frame --cloud "$CLOUD" --iters "$ITERS" --threads "$t" --json "$OUT/frame_${t}_${r}_ours.json" >&2
    "$E" bench-frame --cloud "$CLOUD" --iters "$ITERS" --threads "$t" --onnx "$OUT/compact_eloss.onnx" --json "$OUT/frame_${t}_${r}_ours_onnx.json" >&2
    "$ELOSS_PYTHON" scripts/bench_frame_python.py --cloud "$CLOUD" --model "$M" --iters "$ITERS" --threads "$t" \
      --json "$OUT/frame_${t}_${r}_python.json" --compare "$OUT/frame_${t}_${r}_ours.json" >&2
  done
done
"$ELOSS_PYTHON" - "$OUT" "$THREADS" "$REPS" > "$OUT/bench_frame.md" <<'PY'
import json, sys
out, threads, reps = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3])
rows = ["| threads | run | Python pipeline | ours, torch, monitor on | off | ours, onnxruntime, monitor on | off | network: Python / torch / onnxruntime |",
        "|---:|---:|---:|---:|---:|---:|---:|---|"]
for t in threads:
    for r in range(1, reps + 1):
        o = json.load(open(f"{out}/frame_{t}_{r}_ours.json"))
        x = json.load(open(f"{out}/frame_{t}_{r}_ours_onnx.json"))
        p = json.load(open(f"{out}/frame_{t}_{r}_python.json"))
        py = p["total_ms"]
        cell = lambda v: f"{v:.1f} ms ({v / py:.2f}x)"
        nets = f'{p["stages_ms"]["network"]:.1f} / {o["stages_ms"]["network"]:.1f} / {x["stages_ms"]["network"]:.1f} ms'
        rows.append(f'| {t} | {r} | {py:.1f} ms | {cell(o["stages_ms"]["total"])} | {cell(o["stages_ms_monitor_off"]["total"])} '
                    f'| {cell(x["stages_ms"]["total"])} | {cell(x["stages_ms_monitor_off"]["total"])} | {nets} |')
print("\n".join(rows))
PY
cat "$OUT/bench_frame.md"
