#!/usr/bin/env bash
# The node's sustained rate over DDS (issue 15 item 3, docs/benchmarks.md): a
# full simulated 64-beam sweep at each rate of RATES (default 10,20,30 Hz) for
# SECONDS (default 60) each, with the Eloss monitor on and/or off (MONITOR,
# default on,off: eloss.enabled), on the libtorch backend and, with ONNX (a
# graph from scripts/export_onnx.py), on the onnxruntime backend too; writes
# OUT/rate_sweep.md (default $ELOSS_CACHE/rate_sweep).
#   scripts/rate_sweep.sh [RATES] [SECONDS] [OUT] [MONITOR] [ONNX]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ELOSS_RATE_SWEEP_HZ="${1:-10,20,30}"
export ELOSS_RATE_SWEEP_SECONDS="${2:-60}"
export ELOSS_RATE_SWEEP_OUT="${3:-$ELOSS_CACHE/rate_sweep}"
export ELOSS_RATE_SWEEP_MONITOR="${4:-on,off}"
export ELOSS_RATE_SWEEP_ONNX="${5:-}"
cargo test --features failpoints --test rate_sweep_dds -- --nocapture
echo "[rate sweep] $ELOSS_RATE_SWEEP_OUT/rate_sweep.md"
