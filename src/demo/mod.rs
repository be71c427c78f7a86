//! The demo (issue 17, `./scripts/demo.sh`): a drive with a story
//! ([`story`]: the real KITTI frame, then a simulated drive with a LiDAR
//! fault that comes and goes), the default GDC class bank it labels
//! detections with ([`bank`]), and what a user reads and looks at
//! afterwards ([`summary`], [`figure`]). ROS-free: the bag is replayed by
//! `eloss replay` and watched by an rclpy peer (`scripts/demo_watch.py`).

#[cfg(feature = "torch")]
pub mod bank;
pub mod figure;
pub mod story;
pub mod summary;
