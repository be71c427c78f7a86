#!/usr/bin/env bash
# The whole frame, ours against the Python pipeline a user would write
# (issue 15 item 3, docs/benchmarks.md "The whole frame"): for each thread
# count and repetition, `eloss bench-frame` (the node's frame from the
# PointCloud2 bytes to the built messages, Eloss monitor on and off) then
# scripts/bench_frame_python.py on the same cloud, its detections checked
# against ours. Writes OUT/frame_T_R_{ours,python}.json and OUT/bench_frame.md.
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
export OMP_WAIT_POLICY=PASSIVE
for r in $(seq 1 "$REPS"); do
  for t in ${THREADS//,/ }; do
    "$E" bench-frame --cloud "$CLOUD" --iters "$ITERS" --threads "$t" --json "$OUT/frame_${t}_${r}_ours.json" >&2
    "$ELOSS_PYTHON" scripts/bench_frame_python.py --cloud "$CLOUD" --model "$M" --iters "$ITERS" --threads "$t" \
      --json "$OUT/frame_${t}_${r}_python.json" --compare "$OUT/frame_${t}_${r}_ours.json" >&2
  done
done
"$ELOSS_PYTHON" - "$OUT" "$THREADS" "$REPS" > "$OUT/bench_frame.md" <<'PY'
import json, sys
out, threads, reps = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3])
rows = ["| threads | run | ours, monitor on | ours, monitor off | Python pipeline | ours on / Python | ours off / Python |",
        "|---:|---:|---:|---:|---:|---:|---:|"]
for t in threads:
    for r in range(1, reps + 1):
        o = json.load(open(f"{out}/frame_{t}_{r}_ours.json"))
        p = json.load(open(f"{out}/frame_{t}_{r}_python.json"))
        on, off, py = o["stages_ms"]["total"], o["stages_ms_monitor_off"]["total"], p["total_ms"]
        rows.append(f"| {t} | {r} | {on:.1f} ms | {off:.1f} ms | {py:.1f} ms | {on / py:.2f} | {off / py:.2f} |")
print("\n".join(rows))
PY
cat "$OUT/bench_frame.md"
