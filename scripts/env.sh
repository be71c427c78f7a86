# Environment for every eloss_perception command: `source scripts/env.sh`.
# Works in two modes:
#  - wheels: no ROS 2 sourced; ROS 2 Jazzy comes from PyPI wheels in the venv
#    ($ELOSS_CACHE/venv), which is then a ROS prefix of its own;
#  - system: a ROS 2 Jazzy installation is already sourced (ROS_DISTRO set and
#    AMENT_PREFIX_PATH pointing at it, e.g. /opt/ros/jazzy on a vehicle);
#    only our interface package and the Python extras are added.
# Heavy state (venv, cargo target dir, built interfaces) lives outside the
# clone in $ELOSS_CACHE so fresh clones (CI) reuse it.

ELOSS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ELOSS_ROOT
export ELOSS_CACHE="${ELOSS_CACHE:-$HOME/.cache/eloss_perception}"
export ELOSS_VENV="$ELOSS_CACHE/venv"

if [ -z "${ELOSS_ROS_MODE:-}" ]; then
  if [ -n "${ROS_DISTRO:-}" ] && [ -n "${AMENT_PREFIX_PATH:-}" ] && [ "${AMENT_PREFIX_PATH#*"$ELOSS_VENV"}" = "$AMENT_PREFIX_PATH" ]; then
    ELOSS_ROS_MODE=system
    ELOSS_BASE_PREFIX="$AMENT_PREFIX_PATH"
  else
    ELOSS_ROS_MODE=wheels
    ELOSS_BASE_PREFIX="$ELOSS_VENV"
  fi
  export ELOSS_ROS_MODE ELOSS_BASE_PREFIX
  export ELOSS_BASE_LD_LIBRARY_PATH="${LD_LIBRARY_PATH:-}"
  export ELOSS_BASE_PYTHONPATH="${PYTHONPATH:-}"
fi

# The interface package is installed into a prefix named by the hash of its
# sources: r2r caches generated bindings by environment only, so a changed
# .msg must change AMENT_PREFIX_PATH to force regeneration.
ELOSS_MSGS_HASH="$(cat "$ELOSS_ROOT"/msg/package.xml "$ELOSS_ROOT"/msg/CMakeLists.txt "$ELOSS_ROOT"/msg/msg/*.msg "$ELOSS_ROOT"/msg/srv/*.srv | sha256sum | cut -c1-12)"
export ELOSS_MSGS_PREFIX="$ELOSS_CACHE/msgs/$ELOSS_ROS_MODE-$ELOSS_MSGS_HASH/install"
# ELOSS_MSGS_FROM_WORKSPACE=1: the environment for a colcon workspace, which
# builds msg/ itself (docs/ros_integration.md): everything but our interface
# package, so the workspace's install/ is the only eloss_perception_msgs.
if [ "${ELOSS_MSGS_FROM_WORKSPACE:-0}" = 1 ]; then _msgs_prefix=""; else _msgs_prefix="$ELOSS_MSGS_PREFIX"; fi

# Standard interface packages the node speaks (vision_msgs, tf2_msgs,
# autoware_perception_msgs): those the ROS 2 underneath lacks (all three in
# wheels mode) are built by setup.sh from the verbatim upstream definitions
# in msg/upstream/ into a prefix named by their hash (msg/upstream/README.md).
ELOSS_UPSTREAM_PKGS=""
for _p in vision_msgs tf2_msgs autoware_perception_msgs; do
  _found=""
  for _pre in ${ELOSS_BASE_PREFIX//:/ }; do [ -f "$_pre/share/$_p/package.xml" ] && _found=1; done
  [ -n "$_found" ] || ELOSS_UPSTREAM_PKGS="$ELOSS_UPSTREAM_PKGS $_p"
done
ELOSS_UPSTREAM_PKGS="${ELOSS_UPSTREAM_PKGS# }"
export ELOSS_UPSTREAM_PKGS
if [ -n "$ELOSS_UPSTREAM_PKGS" ]; then
  ELOSS_UPSTREAM_HASH="$(for _p in $ELOSS_UPSTREAM_PKGS; do echo "$_p"; cat "$ELOSS_ROOT/msg/upstream/$_p"/package.xml "$ELOSS_ROOT/msg/upstream/$_p"/CMakeLists.txt "$ELOSS_ROOT/msg/upstream/$_p"/msg/*.msg; done | sha256sum | cut -c1-12)"
  export ELOSS_UPSTREAM_PREFIX="$ELOSS_CACHE/upstream_msgs/$ELOSS_ROS_MODE-$ELOSS_UPSTREAM_HASH/install"
  _upstream_prefix="$ELOSS_UPSTREAM_PREFIX:"
else
  export ELOSS_UPSTREAM_PREFIX=""
  _upstream_prefix=""
fi

export ROS_DISTRO=jazzy
export AMENT_PREFIX_PATH="${_msgs_prefix:+$_msgs_prefix:}$_upstream_prefix$ELOSS_BASE_PREFIX"
export CMAKE_PREFIX_PATH="$AMENT_PREFIX_PATH"
# The message packages r2r generates bindings for (IDL_PACKAGE_FILTER) are
# set in .cargo/config.toml, where cargo sees them both here and in a colcon
# workspace.
export RMW_IMPLEMENTATION=rmw_fastrtps_cpp
# large clouds and images over best-effort DDS on one machine need bigger
# shared-memory segments and socket buffers (docs/ENVIRONMENT.md); a vehicle's
# own Fast DDS profile wins when it is set
export FASTRTPS_DEFAULT_PROFILES_FILE="${FASTRTPS_DEFAULT_PROFILES_FILE:-$ELOSS_ROOT/config/fastdds_large_data.xml}"

_py_site="$ELOSS_VENV/lib/python3.11/site-packages"
_ld="${_msgs_prefix:+$_msgs_prefix/lib:}${ELOSS_UPSTREAM_PREFIX:+$ELOSS_UPSTREAM_PREFIX/lib:}"
if [ "$ELOSS_ROS_MODE" = wheels ]; then
  _ld="$_ld$ELOSS_VENV/lib:"
  for _d in "$_py_site"/ros_*.libs; do [ -d "$_d" ] && _ld="$_ld$_d:"; done
fi
# libtorch from the venv's torch package (tch links it; see docs/ENVIRONMENT.md)
_ld="$_ld$_py_site/torch/lib"
export LD_LIBRARY_PATH="$_ld${ELOSS_BASE_LD_LIBRARY_PATH:+:$ELOSS_BASE_LD_LIBRARY_PATH}"
_pp="${_msgs_prefix:+$_msgs_prefix/lib/python3.11/site-packages:}${ELOSS_UPSTREAM_PREFIX:+$ELOSS_UPSTREAM_PREFIX/lib/python3.11/site-packages:}$ELOSS_BASE_PYTHONPATH"
export PYTHONPATH="${_pp%:}"
export ELOSS_PYTHON="$ELOSS_VENV/bin/python"
# tch builds against the venv's torch package (its lib/ and include/): no Python needed at build time
export LIBTORCH="$ELOSS_VENV/lib/python3.11/site-packages/torch"
# ONNX Runtime's C library from the venv's onnxruntime wheel, loaded at run time
# by the detector's optional onnxruntime backend (src/detect/onnx_graph.rs)
for _p in "$_py_site"/onnxruntime/capi/libonnxruntime.so.*; do
  [ -f "$_p" ] && export ORT_DYLIB_PATH="${ORT_DYLIB_PATH:-$_p}"
done
export ROS_HOME="${ROS_HOME:-$ELOSS_CACHE/ros_home}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ELOSS_CACHE/target}"
# libgomp spin-waits under contention; the node shares the CPU with DDS threads
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
case ":$PATH:" in *":$ELOSS_VENV/bin:"*) ;; *) export PATH="$PATH:$ELOSS_VENV/bin" ;; esac
unset _py_site _ld _d _p _pre _found _upstream_prefix _msgs_prefix _pp
