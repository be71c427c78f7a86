//! # eloss_perception
//!
//! A ROS 2 3D perception stack for vehicles, split into a ROS-free core
//! (this library) and a thin r2r adapter (`ros`, behind the default `ros`
//! feature). Data flows one way: sensor message bytes → plain structs
//! ([`cloud::Points`], [`image::RgbImage`], [`camera::PinholeCamera`]) →
//! perception → results, with bags ([`bag`]) for recording and replay.
//!
//! ```no_run
//! // Decode the real KITTI frame shipped in ../shared/data (x, y, z, reflectance f32).
//! let pts = eloss_perception::cloud::kitti_bin::read("../shared/data/kitti_000008/000008.bin").unwrap();
//! println!("{} points", pts.len());
//! ```

pub mod atomic_file;
pub mod bag;
pub mod camera;
pub mod cloud;
pub mod dataset;
pub mod demo;
pub mod eval;
pub mod detect;
#[cfg(feature = "torch")]
pub mod eloss;
pub mod frame_slot;
pub mod frames;
pub mod gdc;
pub mod geometry;
pub mod image;
pub mod log_limit;
pub mod numeric;
pub mod panic_message;
#[cfg(feature = "torch")]
pub mod perception;
pub mod plot;
pub mod snapshot_cell;
pub mod stats;
#[cfg(feature = "torch")]
pub mod train;
#[cfg(feature = "torch")]
pub mod torch_cuda;
pub mod untrusted_file;
#[cfg(feature = "torch")]
pub mod weights;
pub mod workers;

#[cfg(feature = "ros")]
pub mod ros;
