//! The synthetic driving world: seeded road scenes, a ray-cast rotating
//! LiDAR and LiDAR-side anomaly injection.
//!
//! No LiDAR data set can be downloaded where this project is built, so
//! training and test data for the detector and the Eloss monitor come from
//! here. Everything is a pure function of a seed: the same seed gives the same
//! scene and the same cloud bit for bit, whatever the number of threads.
//!
//! Pipeline:
//! ```text
//! SceneConfig::generate(seed) ─► Scene ─► Scene::snapshot(t) ─► Snapshot
//!                                   │                                │
//!                  Lidar::new(LidarConfig::hdl64e())?.scan(&scene, &snapshot, seed) ─► Scan
//!                                                  (Points + per-point source)
//! Anomaly::apply(&mut scan.points, severity, seed) ─► AnomalyEffect { tag, .. }
//! ```
//! Multi-frame drives: [`scene::Drive`] wraps a scene with ego motion; frame
//! `i` is the snapshot at `t = i / hz`, with stable object ids.
//!
//! Frames: the scene lives in a world frame (x along the road, y left, z up,
//! the ego vehicle starts at x = 0 in a right-hand lane and drives +x). LiDAR
//! output is in the sensor frame (origin at the sensor, KITTI velodyne axes).
//! Labels are [`crate::geometry::Box3D`] in either frame; see
//! [`scene::Pose::box_to_local`].
//!
//! Modules: [`scene`] (layout and placement), [`objects`] (KITTI class size
//! statistics and object shapes), [`lidar`] (sensor presets and scanning),
//! [`raycast`] (primitives: ground height field, boxes, cylinders, planes),
//! [`anomalies`] (injected faults with severities).

pub mod anomalies;
pub mod camera;
pub mod camera_anomalies;
pub mod camera_look;
pub mod dataset_writer;
pub mod labels;
pub mod lidar;
pub mod objects;
pub mod raycast;
pub mod scene;
pub mod sensor_variation;
#[cfg(test)]
mod tests;

pub use anomalies::{Anomaly, AnomalyEffect, AnomalyKind, AnomalyTag, Severity, WeatherKind};
pub use lidar::{crop_to_camera_fov, FovWindow, IntensityModel, Lidar, LidarConfig, PointSource, Scan, KITTI_CAMERA_HALF_FOV_DEG, KITTI_IMAGE_WINDOW_DEG};
pub use objects::SimClass;
pub use sensor_variation::{SensorDraw, SensorVariation};
pub use scene::{Drive, DriveConfig, Pose, Scene, SceneConfig, SceneObject, Snapshot};

/// Why a simulator configuration or request was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimError {
    /// A configuration value is out of its valid range (the message says which
    /// and why), e.g. a LiDAR with 0 beams or a negative maximum range.
    #[error("invalid {what}: {why}")]
    InvalidConfig { what: &'static str, why: String },
    #[error("severity {0} is outside [0, 1]")]
    SeverityOutOfRange(f64),
    #[error("unknown severity `{0}` (expected low, medium, high or a number in [0, 1])")]
    UnknownSeverity(String),
    #[error("anomaly `{0}` acts on a sequence of frames; use Anomaly::apply_sequence")]
    NeedsSequence(&'static str),
    #[error("frame {index} is out of range: the drive has {frames} frames")]
    FrameOutOfRange { index: usize, frames: usize },
}

/// Shorthand for configuration checks: `ensure(cond, "what", || why)`.
pub(crate) fn ensure(ok: bool, what: &'static str, why: impl FnOnce() -> String) -> Result<(), SimError> {
    if ok {
        Ok(())
    } else {
        Err(SimError::InvalidConfig { what, why: why() })
    }
}

/// A small seeded random number generator (SplitMix64).
///
/// Written here rather than taken from `rand` because the simulator's promise
/// is bit-for-bit reproducibility across versions: a dependency upgrade must
/// not change every generated data set. SplitMix64 passes BigCrush and is
/// cheap to seed, which matters because every LiDAR column and every anomaly
/// gets its own stream (see [`Rng::stream`]) so that results do not depend on
/// the order in which threads run.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        // Mix once so that seeds 0, 1, 2 … start far apart.
        Self { state: mix64(seed ^ 0x9E37_79B9_7F4A_7C15) }
    }

    /// An independent stream derived from `seed` and a stream number (e.g. a
    /// column index or a purpose tag).
    pub fn stream(seed: u64, stream: u64) -> Self {
        Self::new(mix64(seed.wrapping_add(mix64(stream.wrapping_add(0xD1B5_4A32_D192_ED03)))))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.state)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    /// Uniform integer in [0, n); 0 when n is 0.
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        (self.uniform() * n as f64) as usize % n
    }

    /// Uniform integer in [lo, hi] (inclusive; `lo` when hi < lo).
    pub fn int_in(&mut self, lo: usize, hi: usize) -> usize {
        if hi <= lo {
            return lo;
        }
        lo + self.below(hi - lo + 1)
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.uniform() < p
    }

    /// Standard normal (Box–Muller; one value per call keeps streams simple).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// Normal with mean `m` and standard deviation `s`, clamped to m ± k·s.
    pub fn normal_clamped(&mut self, m: f64, s: f64, k: f64) -> f64 {
        m + s * self.normal().clamp(-k, k)
    }
}

/// The SplitMix64 finaliser: a bijective 64-bit hash.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod rng_tests {
    use super::*;

    #[test]
    fn rng_is_reproducible_and_streams_differ() {
        let a: Vec<u64> = (0..4).map({
            let mut r = Rng::new(7);
            move |_| r.next_u64()
        }).collect();
        let b: Vec<u64> = (0..4).map({
            let mut r = Rng::new(7);
            move |_| r.next_u64()
        }).collect();
        assert_eq!(a, b);
        assert_ne!(Rng::stream(7, 1).next_u64(), Rng::stream(7, 2).next_u64());
        let mut r = Rng::new(1);
        let mean: f64 = (0..20_000).map(|_| r.normal()).sum::<f64>() / 20_000.0;
        assert!(mean.abs() < 0.03, "normal mean {mean}");
        assert!((0..1000).all(|_| (0.0..1.0).contains(&r.uniform())));
    }
}
