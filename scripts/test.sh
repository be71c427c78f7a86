#!/usr/bin/env bash
# The whole test suite, set-up included (README's second command; .ci/run calls it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
./scripts/setup.sh
source scripts/env.sh
# DDS tests stay on this machine: never multicast on the external interface
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
t0=$(date +%s)
# the core library must build and pass without any ROS installation
cargo test --no-default-features --features torch --lib
# everything: core + ROS adapter, node and bag tests over loopback DDS
cargo test
# the package in a colcon workspace: plain `colcon build`, then the installed
# node started as `ros2 launch` would (docs/ros_integration.md)
ELOSS_SKIP_SETUP=1 ./scripts/colcon_check.sh
echo "[test] all tests passed in $(( $(date +%s) - t0 )) s"
