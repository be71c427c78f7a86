#!/usr/bin/env bash
# Coverage-guided fuzzing of the decoders that read bytes from outside the node
# (fuzz/, docs/reliability.md "Fuzzing"), with libFuzzer through cargo-fuzz on
# the nightly toolchain (installed here when missing: rustup + crates.io).
#   scripts/fuzz.sh [SECONDS_PER_TARGET (default 600)] [TARGET ...]
# Each target runs from its committed corpus (fuzz/corpus/TARGET) plus a work
# corpus in $ELOSS_CACHE/fuzz/corpus/TARGET, with AddressSanitizer, a 2 GB RSS
# limit and a 256 MB limit on any single allocation (inputs are at most
# 64 KiB, so a larger allocation is an unbounded one). Inputs that add
# coverage are merged back into fuzz/corpus, kept small for the repository:
# inputs of at most 4 KiB (32 KiB for whole bags), at most 300 per target,
# smallest first (the work corpus keeps everything for the next run); crashes
# are left in fuzz/artifacts/TARGET. One line per target goes to
# $ELOSS_CACHE/fuzz/summary.tsv: target, seconds, executions, corpus size, result.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/env.sh
SECONDS_PER_TARGET="${1:-600}"
shift || true
ALL_TARGETS=(pointcloud2 image_raw image_compressed camera_info cdr_messages mcap_bag gdc_bank kitti_calib)
[ $# -gt 0 ] && TARGETS=("$@") || TARGETS=("${ALL_TARGETS[@]}")

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo +nightly install cargo-fuzz --version 0.13.2 --locked
export CARGO_TARGET_DIR="$ELOSS_CACHE/fuzz_target"
WORK="$ELOSS_CACHE/fuzz"
mkdir -p "$WORK"
cd fuzz
cargo +nightly fuzz build -O --target-dir "$CARGO_TARGET_DIR"
for t in "${TARGETS[@]}"; do
  mkdir -p "$WORK/corpus/$t" "artifacts/$t"
  log="$WORK/$t.log"
  echo "[fuzz] $t for ${SECONDS_PER_TARGET} s"
  set +e
  cargo +nightly fuzz run -O --target-dir "$CARGO_TARGET_DIR" "$t" "$WORK/corpus/$t" "corpus/$t" -- \
    -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -malloc_limit_mb=256 -max_len=65536 \
    -timeout=10 -print_final_stats=1 >"$log" 2>&1
  rc=$?
  set -e
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || echo 0)
  result=$([ $rc -eq 0 ] && echo ok || echo "FAILED (rc $rc, see $log and fuzz/artifacts/$t)")
  # keep what adds coverage, minimised, in the committed corpus
  if [ $rc -eq 0 ]; then
    rm -rf "$WORK/merge/$t"; mkdir -p "$WORK/merge/$t"
    commit_len=$([ "$t" = mcap_bag ] && echo 32768 || echo 4096)
    cargo +nightly fuzz run -O --target-dir "$CARGO_TARGET_DIR" "$t" "$WORK/merge/$t" "corpus/$t" "$WORK/corpus/$t" -- \
      -merge=1 -max_len="$commit_len" >/dev/null 2>&1 || true
    # the merge keeps inputs as found; drop the longer ones beyond the caps
    find "$WORK/merge/$t" -type f -size +"$commit_len"c -delete
    ls -S -r "$WORK/merge/$t" | tail -n +301 | while read -r f; do rm -f "$WORK/merge/$t/$f"; done
    rm -rf "corpus/$t"; mv "$WORK/merge/$t" "corpus/$t"
  fi
  size=$(ls "corpus/$t" | wc -l)
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$t" "$SECONDS_PER_TARGET" "$runs" "$size" "$result" | tee -a "$WORK/summary.tsv"
  [ $rc -eq 0 ] || exit $rc
done
