#!/usr/bin/env bash
# The long soak over DDS (issue 13, docs/reliability.md): the node with GDC and
# auto relabelling on, CLOUDS clouds (default 10,000) at 20 Hz with camera
# frames, relabel and add_classes calls arriving meanwhile. Writes soak.csv
# (RSS and counters every second) and soak_rss.png to OUT (default
# $ELOSS_CACHE/soak) and prints the summary; fails on the checks of
# tests/soak_dds.rs.
#   scripts/soak.sh [CLOUDS] [OUT]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ELOSS_SOAK_CLOUDS="${1:-10000}"
export ELOSS_SOAK_OUT="${2:-$ELOSS_CACHE/soak}"
mkdir -p "$ELOSS_SOAK_OUT"
cargo test --test soak_dds -- --nocapture 2>&1 | tee "$ELOSS_SOAK_OUT/soak.log"
echo "[soak] $ELOSS_SOAK_OUT/soak.csv, $ELOSS_SOAK_OUT/soak_rss.png"
