#!/usr/bin/env bash
# Builds the binary scripts/gpu_check.sh runs on the device machine
# (docs/gpu_check.md): `eloss` without ROS, against the device image's torch
# (PyPI torch 2.11.0 = libtorch 2.11, which tch 0.24 binds) instead of ours
# (2.13 / tch 0.26), stripped, into gpu_check_bin/eloss (ignored by git).
#   scripts/build_gpu_check.sh [TORCH_VERSION] [TCH_VERSION]
# Then, here: gpu_check_bin/check_here.sh (the binary on this machine's CPU);
# on the device: run(command="scripts/gpu_check.sh", carry=["gpu_check_bin"]).
# Work (torch wheel, scratch sources, cargo target) lives in
# $ELOSS_CACHE/gpu_check_build; a rebuild after a source change takes minutes.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
log() { printf '[build_gpu_check] %s\n' "$*" >&2; }
TORCH_VERSION="${1:-2.11.0}"
TCH_VERSION="${2:-0.24.0}"
WORK="$ELOSS_CACHE/gpu_check_build/torch-$TORCH_VERSION"
mkdir -p "$WORK"

# 1. libtorch: the PyPI wheel's torch/ (lib/ and include/), nothing else of it.
if [ ! -f "$WORK/torch/lib/libtorch_cpu.so" ]; then
  log "downloading torch==$TORCH_VERSION (the wheel alone, ~530 MB)"
  "$ELOSS_PYTHON" -m pip download -q --no-deps --only-binary=:all: "torch==$TORCH_VERSION" -d "$WORK/wheel"
  unzip -q -o "$WORK"/wheel/torch-"$TORCH_VERSION"-*.whl 'torch/lib/*' 'torch/include/*' 'torch/share/*' 'torch/version.py' -d "$WORK"
  rm -rf "$WORK/wheel"
fi
# libtorch's RPATH looks for the CUDA libraries in ../../nvidia: lend it this
# machine's (our torch's, same CUDA major) so the binary also starts here.
OUR_NVIDIA="$(dirname "$LIBTORCH")/nvidia"
[ -e "$WORK/nvidia" ] || { [ -d "$OUR_NVIDIA" ] && ln -s "$OUR_NVIDIA" "$WORK/nvidia"; } || true

# 2. the tracked sources (as they are in the working tree), tch pinned; mtimes
#    set to now (tar -m), so cargo never takes an edit older than its last
#    build of the copy for up to date.
SRC="$WORK/src"
rm -rf "$SRC" && mkdir -p "$SRC"
git -C "$ELOSS_ROOT" ls-files -z --cached --others --exclude-standard | (cd "$ELOSS_ROOT" && tar --null -T - -cf - 2>/dev/null) | tar -m -xf - -C "$SRC"
sed -i -E "s/^tch = \{ version = \"[^\"]+\"/tch = { version = \"=$TCH_VERSION\"/" "$SRC/Cargo.toml"
grep -q "^tch = { version = \"=$TCH_VERSION\"" "$SRC/Cargo.toml" || { log "could not pin tch in Cargo.toml"; exit 1; }
(cd "$SRC" && cargo update -q -p tch --precise "$TCH_VERSION")

# 3. the build: no ROS (the device image has none), libtorch_cuda opened at
#    run time (src/torch_cuda.rs), so nothing CUDA is needed to link.
log "building eloss (release, no ROS) against torch $TORCH_VERSION / tch $TCH_VERSION"
(cd "$SRC" && env -u LIBTORCH_USE_PYTORCH LIBTORCH="$WORK/torch" CARGO_TARGET_DIR="$WORK/target" \
  cargo build -q --release --no-default-features --features torch --bin eloss)

# 4. the carried folder: the stripped binary and a launcher for this machine.
OUTDIR="$ELOSS_ROOT/gpu_check_bin"
mkdir -p "$OUTDIR"
cp "$WORK/target/release/eloss" "$OUTDIR/eloss"
strip "$OUTDIR/eloss"
cat > "$OUTDIR/check_here.sh" <<EOF
#!/usr/bin/env bash
# the device binary on this machine, on its torch $TORCH_VERSION: gpu_check_bin/check_here.sh gpu-check --out DIR ...
export LD_LIBRARY_PATH="$WORK/torch/lib"
exec "\$(dirname "\${BASH_SOURCE[0]}")/eloss" "\$@"
EOF
chmod +x "$OUTDIR/check_here.sh"
echo "torch $TORCH_VERSION, tch $TCH_VERSION, built $(date -u +%FT%TZ) from $(git -C "$ELOSS_ROOT" rev-parse --short HEAD)$(git -C "$ELOSS_ROOT" diff --quiet || echo '+changes')" > "$OUTDIR/BUILD"
log "$OUTDIR/eloss: $(du -h "$OUTDIR/eloss" | cut -f1) ($(cat "$OUTDIR/BUILD"))"
