//! Coordinate frames without ROS: a tf2-style transform buffer and the
//! mounting of a LiDAR relative to the detector's model frame.
//!
//! - [`buffer`]: [`TransformBuffer`], a tree of frames (one parent per child)
//!   whose edges are rigid transforms (`nalgebra::Isometry3<f64>`), static
//!   (valid at every time) or dynamic (a time-ordered history, interpolated
//!   by stamp). It is what `/tf` and `/tf_static` fill; [`TransformBuffer::lookup`]
//!   answers "where are the points of frame `source` in frame `target` at
//!   time t" with tf2's semantics (stamp 0 = the latest time every edge on
//!   the path has, extrapolation is an error, ids lose a leading `/`).
//! - [`mounting`]: [`Mounting`], how a LiDAR sits on the vehicle relative to
//!   the frame the user wants detections in (`base_link`, say) and to the
//!   frame the detector was trained in (x forward, y left, z up, origin at
//!   the LiDAR 1.73 m above the ground, KITTI's and the simulator's
//!   mounting). It moves clouds into the model frame (one pass, f32) and
//!   boxes back.
//!
//! Conventions: an isometry named `a_from_b` maps point coordinates in frame
//! `b` to frame `a` (`p_a = a_from_b * p_b`); ROS's `TransformStamped` with
//! `header.frame_id = a`, `child_frame_id = b` carries exactly `a_from_b`.
//! Stamps are nanoseconds (`sec * 1e9 + nanosec`).
//!
//! Run the tests: `cargo test --no-default-features --lib frames` (the
//! detector-in-the-loop acceptance tests of `acceptance` need `--features torch`).

#[cfg(all(test, feature = "torch"))]
mod acceptance;
pub mod buffer;
pub mod mounting;
#[cfg(test)]
mod tests;

pub use buffer::{isometry_from_parts, BufferLimits, FrameError, TransformBuffer};
pub use mounting::{transform_box, Mounting, MountingError, TRAINED_SENSOR_HEIGHT_M};
