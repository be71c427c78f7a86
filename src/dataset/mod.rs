//! Datasets on disk and the synthetic world that makes them.
//!
//! [`kitti`] reads and writes the KITTI object-detection layout (real KITTI
//! data and simulator output alike); [`sim`] is the synthetic driving world
//! (scenes, LiDAR ray casting, anomaly injection); [`realism`] measures how
//! close simulated frames are to real ones.

pub mod kitti;
pub mod realism;
pub mod render;
pub mod sim;
