#!/usr/bin/env bash
# The package in a ROS 2 colcon workspace, as a user gets it by cloning this
# repository under src/ (docs/ros_integration.md, "colcon workspace"):
#  1. $ELOSS_CACHE/colcon_ws/src/eloss_perception = this checkout's files
#     (tracked and untracked-not-ignored), copied by content so unchanged
#     files keep their times and build/ install/ log/ stay incremental;
#  2. plain `colcon build` there: it finds msg/ (eloss_perception_msgs) through
#     Cargo.toml's [workspace.metadata.colcon], r2r's IDL_PACKAGE_FILTER comes
#     from .cargo/config.toml; our interface package comes only from the
#     workspace (ELOSS_MSGS_FROM_WORKSPACE=1 keeps set-up's copy out);
#  3. starts the installed node with the command line `ros2 launch
#     eloss_perception eloss_perception.launch.py` builds (computed from the
#     launch file by tests/python/launch_check.py --command; the .xml twin must
#     give the same), params file from install/.../share/eloss_perception/config;
#  4. an rclpy peer sees the node's /diagnostics (with the hardware id given as
#     a launch argument) and reads its parameters; the node must run on the
#     workspace's interface libraries and exit cleanly on SIGINT.
# Called by scripts/test.sh (CI) after the cargo tests. Works from an empty cache.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo="$PWD"
[ "${ELOSS_SKIP_SETUP:-0}" = 1 ] || ./scripts/setup.sh
export ELOSS_MSGS_FROM_WORKSPACE=1
source scripts/env.sh
# DDS stays on this machine: never multicast on the external interface
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
log() { printf '[colcon] %s\n' "$*" >&2; }
t0=$(date +%s)

ws="$ELOSS_CACHE/colcon_ws"
mkdir -p "$ws/src/eloss_perception"
# one check at a time per workspace
exec 9>"$ws.lock"
flock 9

# --- 1. the sources -------------------------------------------------------------
changed=$("$ELOSS_PYTHON" - "$repo" "$ws/src/eloss_perception" <<'EOF'
import filecmp, os, shutil, subprocess, sys
src, dst = sys.argv[1:3]
out = subprocess.run(["git", "-C", src, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                     check=True, capture_output=True).stdout.decode()
files = sorted(f for f in set(out.split("\0")) if f and os.path.isfile(os.path.join(src, f)))
changed = 0
for f in files:
    s, d = os.path.join(src, f), os.path.join(dst, f)
    if not os.path.isfile(d) or not filecmp.cmp(s, d, shallow=False):
        os.makedirs(os.path.dirname(d), exist_ok=True)
        shutil.copyfile(s, d)
        changed += 1
    if os.stat(s).st_mode & 0o777 != os.stat(d).st_mode & 0o777:
        shutil.copymode(s, d)
keep = set(files)
for root, dirs, names in os.walk(dst, topdown=False):
    for n in names:
        p = os.path.join(root, n)
        if os.path.relpath(p, dst) not in keep:
            os.remove(p)
            changed += 1
    if root != dst and not os.listdir(root):
        os.rmdir(root)
print(changed)
EOF
)
log "workspace $ws: $changed source files changed"

# --- 2. colcon build ------------------------------------------------------------
command -v colcon >/dev/null || { log "colcon not found: scripts/setup.sh installs it (scripts/requirements.txt)"; exit 1; }
# r2r caches its generated bindings by environment variables only, and the
# workspace's install path of eloss_perception_msgs never changes: after an
# edit in msg/ its crates must be rebuilt (env.sh hashes msg/ for this)
stamp="$ws/build/eloss_perception/.eloss-msgs-hash"
if [ -d "$ws/build/eloss_perception" ] && [ "$(cat "$stamp" 2>/dev/null)" != "$ELOSS_MSGS_HASH" ]; then
  log "msg/ changed since the last build: cleaning r2r's crates so they regenerate"
  (cd "$ws/src/eloss_perception" && cargo clean -q -p r2r -p r2r_msg_gen -p r2r_actions --target-dir "$ws/build/eloss_perception")
fi
t_build=$(date +%s)
if ! (cd "$ws" && colcon build > "$ws/colcon_build.log" 2>&1); then
  tail -30 "$ws/colcon_build.log" >&2
  for f in "$ws"/log/latest_build/*/stderr.log; do [ -s "$f" ] && { log "$f:"; tail -30 "$f" >&2; }; done
  log "colcon build failed (log: $ws/colcon_build.log, $ws/log/latest_build)"
  exit 1
fi
t_build=$(( $(date +%s) - t_build ))
echo "$ELOSS_MSGS_HASH" > "$stamp"
grep -E '^Summary' "$ws/colcon_build.log" | sed 's/^/[colcon] /' >&2
# colcon adds a log folder per run: keep the last 5
ls -d "$ws"/log/build_* 2>/dev/null | sort | head -n -5 | xargs -r rm -rf

# --- 3. the installed node, started as `ros2 launch` would ----------------------
prefix="$ws/install/eloss_perception"
for f in lib/eloss_perception/eloss_perception_node share/eloss_perception/config/eloss_perception.yaml \
         share/eloss_perception/launch/eloss_perception.launch.py share/eloss_perception/launch/eloss_perception.launch.xml \
         share/eloss_perception/package.xml share/ament_index/resource_index/packages/eloss_perception; do
  [ -e "$prefix/$f" ] || { log "install/eloss_perception/$f is missing"; exit 1; }
done
cmp -s "$prefix/share/eloss_perception/config/eloss_perception.yaml" config/eloss_perception.yaml \
  || { log "installed params file differs from config/eloss_perception.yaml"; exit 1; }
# the workspace's environment on top of this one (colcon's scripts use unset variables)
set +u
# shellcheck disable=SC1091
source "$ws/install/setup.bash"
set -u
case ":$AMENT_PREFIX_PATH:" in *":$ws/install/eloss_perception_msgs:"*) ;; *) log "install/setup.bash did not add eloss_perception_msgs"; exit 1 ;; esac

tag="colcon_check_$$"
run_dir="$(mktemp -d "$ELOSS_CACHE/colcon_run.XXXXXX")"
node_pid=""
cleanup() {
  [ -n "$node_pid" ] && kill -KILL "$node_pid" 2>/dev/null || true
  rm -rf "$run_dir"
}
trap cleanup EXIT
# the launch files read from the install's share/ (what `ros2 launch eloss_perception ...` finds)
launch_share="$prefix/share/eloss_perception/launch"
"$ELOSS_PYTHON" tests/python/launch_check.py --command "$prefix" "$run_dir" \
  "$launch_share/eloss_perception.launch.py" "$launch_share/eloss_perception.launch.xml" \
  namespace:="$tag" hardware_id:="$tag" > "$run_dir/commands.json"
# the XML twin must build the same command (its launch_params_* file has the same content)
mapfile -d '' -t cmd < <("$ELOSS_PYTHON" - "$run_dir/commands.json" <<'EOF'
import json, os, sys
d = json.load(open(sys.argv[1]))
def key(cmd):
    return [open(a).read() if os.path.basename(a).startswith("launch_params_") else a for a in cmd]
if key(d["py"]) != key(d["xml"]):
    sys.exit(f"launch.py and launch.xml build different commands:\n{d['py']}\n{d['xml']}")
sys.stdout.write("\0".join(d["py"]) + "\0")
EOF
)
[ "${#cmd[@]}" -gt 3 ] || { log "no command line from the launch files"; exit 1; }
log "starting: ${cmd[*]}"
t_node=$(date +%s%N)
"${cmd[@]}" > "$run_dir/node.log" 2>&1 &
node_pid=$!

# --- 4. a peer sees it; SIGINT stops it -----------------------------------------
if ! "$ELOSS_PYTHON" tests/python/node_peer.py alive "/$tag" "$tag" > "$run_dir/peer.json"; then
  tail -30 "$run_dir/node.log" >&2
  log "the installed node did not come up"
  exit 1
fi
t_up=$(( ($(date +%s%N) - t_node) / 1000000 ))
"$ELOSS_PYTHON" - "$run_dir/peer.json" "$tag" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["parameters"]["hardware_id"] == sys.argv[2], r  # the launch file's inline parameter
assert r["parameters"]["cloud.max_range_m"] > 0, r       # from the share/ params file
print(f"[colcon] node up: diagnostics {sorted(r['diagnostics'])} after {r['seconds_to_diagnostics']} s, parameters {r['parameters']}", file=sys.stderr)
EOF
# the node runs on the workspace's interface package, not on a copy from elsewhere
maps="$(cat "/proc/$node_pid/maps")"
grep -q "$ws/install/eloss_perception_msgs/lib/libeloss_perception_msgs__rosidl_typesupport_c.so" <<< "$maps" \
  || { log "the node did not load the workspace's libeloss_perception_msgs__rosidl_typesupport_c.so"; exit 1; }
if grep -q "$ELOSS_CACHE/msgs/" <<< "$maps"; then log "the node loaded interface libraries from $ELOSS_CACHE/msgs"; exit 1; fi

kill -INT "$node_pid"
t_stop=$(date +%s%N)
for _ in $(seq 100); do kill -0 "$node_pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$node_pid" 2>/dev/null; then
  tail -20 "$run_dir/node.log" >&2
  log "the node did not exit within 10 s of SIGINT"
  exit 1
fi
rc=0; wait "$node_pid" || rc=$?
node_pid=""
if [ "$rc" -ne 0 ]; then
  tail -20 "$run_dir/node.log" >&2
  log "the node exited with status $rc after SIGINT"
  exit 1
fi
log "clean exit $(( ($(date +%s%N) - t_stop) / 1000000 )) ms after SIGINT"
log "colcon workspace check passed in $(( $(date +%s) - t0 )) s (colcon build ${t_build} s, node up and checked in ${t_up} ms)"
