//! Datasets on disk and the synthetic world that makes them.
//!
//! [`kitti`] reads and writes the KITTI object-detection layout (real KITTI
//! data and simulator output alike).

pub mod kitti;
