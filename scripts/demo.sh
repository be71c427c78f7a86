#!/usr/bin/env bash
# The demo on embedded defaults (README's first command): set-up, build, then
# replay a drive made from the real KITTI frame in ../shared/data through the
# node over loopback DDS, and print what the node reports.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
./scripts/setup.sh
source scripts/env.sh
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
cargo build --bins
bin="$CARGO_TARGET_DIR/debug"
kitti="${ELOSS_KITTI_DIR:-$ELOSS_ROOT/../shared/data/kitti_000008}"
demo="$ELOSS_CACHE/demo"; mkdir -p "$demo"
rm -f "$demo/kitti_000008_drive.mcap"
"$bin/eloss" bag from-kitti --bin "$kitti/000008.bin" --image "$kitti/000008.png" \
  --calib "$kitti/000008.txt" --frames 30 --hz 10 --out "$demo/kitti_000008_drive.mcap"
"$bin/eloss" bag info "$demo/kitti_000008_drive.mcap"

# as on a vehicle: boxes in base_link (the bag's /tf_static places the LiDAR),
# time from the bag's /clock
"$bin/eloss_perception_node" --ros-args --params-file config/eloss_perception.yaml \
  -p use_sim_time:=true -p detector.frame:=base_link \
  -r points:=/kitti/points -r image:=/kitti/image -r camera_info:=/kitti/camera_info &
node_pid=$!
trap 'kill -INT $node_pid 2>/dev/null || true' EXIT
"$bin/eloss" replay "$demo/kitti_000008_drive.mcap" --wait-subscribers 20 --rate 1.0 --clock
sleep 1.5  # let the node finish the last frame and report once more
kill -INT $node_pid
wait $node_pid
trap - EXIT
