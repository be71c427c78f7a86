#!/usr/bin/env bash
# A/B of two check binaries on the device machine (docs/gpu_check.md, "The
# pillar tensor without a copy"): `gpu-check` of each, alternated ROUNDS times
# in one run, one table per run (scripts/gpu_check_table.py).
#   scripts/gpu_ab.sh [BEFORE] [AFTER] [ROUNDS]
# BEFORE defaults to gpu_check_bin/eloss_before (or its .xz: two binaries and
# the working tree must fit the device tool's 64 MiB, so carry one compressed),
# AFTER to gpu_check_bin/eloss, ROUNDS to 3; reports go to $OUT.
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BEFORE="${1:-gpu_check_bin/eloss_before}"
AFTER="${2:-gpu_check_bin/eloss}"
ROUNDS="${3:-3}"
OUT="${OUT:-$PWD/gpu_ab_out}"
TORCH_LIB="$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
export LD_LIBRARY_PATH="$TORCH_LIB"
if [ ! -f "$BEFORE" ] && [ -f "$BEFORE.xz" ]; then
  python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$BEFORE.xz" "$BEFORE"
  chmod +x "$BEFORE"
fi
for round in $(seq 1 "$ROUNDS"); do
  for v in before after; do
    bin="$AFTER"; [ "$v" = before ] && bin="$BEFORE"
    o="$OUT/$v$round"
    mkdir -p "$o"
    "$bin" gpu-check --require-cuda --out "$o" --iters 40 --train-steps 3 --batch-size 4 --frames 8 > /dev/null 2> "$o.err" || tail -3 "$o.err"
    echo "== $v, round $round"
    python3 scripts/gpu_check_table.py "$o" | grep '^| [cf]'
    rm -rf "$o/sim" "$o/run" "$o"/*.safetensors
  done
done
