//! Where the LiDAR sits: clouds from any mounting into the detector's model
//! frame, and boxes back into the frame the user asked for.
//!
//! Three frames:
//! - **sensor**: the cloud's own frame (`header.frame_id` of the
//!   PointCloud2), any orientation and height;
//! - **base** (the detector frame, e.g. `base_link`): chosen by the user,
//!   assumed level with x forward, y left, z up; `ground_z_m` is the height
//!   of the ground plane in it (0 for `base_link` on the ground, -1.73 for a
//!   KITTI velodyne frame used as the base);
//! - **model**: what the network was trained on: base's axes, origin at the
//!   LiDAR's (x, y) and [`TRAINED_SENSOR_HEIGHT_M`] above the ground.
//!
//! `model_from_sensor = base_from_model⁻¹ · base_from_sensor`, with
//! `base_from_model` a pure translation to (sensor x, sensor y, ground_z +
//! trained height). A sensor mounted 1.84 m high, y-forward or upside down
//! thus gives the model the cloud it would have seen from KITTI's mounting
//! (a tilted sensor is levelled; its scan pattern is of course its own).
//! Intensities are multiplied by `intensity_scale` on the way (KITTI and the
//! simulator use reflectance in 0..1; most drivers publish 0..255, e.g.
//! Velodyne and Ouster, so their scale is 1/255).
//!
//! The point transform is one pass over the structure-of-arrays cloud with a
//! precomputed f32 3x4 matrix (0.4 ms for a 120k-point cloud on the
//! 2-core development VM, dev profile; `transform_cost` in `frames::tests`).
//! With [`Mounting::identity`] and [`Mounting::kitti`] the sensor frame is
//! the model frame (boxes in the sensor frame, or in `base_link` below it).

use crate::cloud::Points;
use crate::geometry::{wrap_angle, Box3D};
use nalgebra::{Isometry3, Point3, Translation3, UnitQuaternion, Vector3};

/// Height above the ground of the LiDAR the embedded detector was trained
/// with: the simulator's `LidarConfig::hdl64e()` and `vlp32()` presets
/// (`mount_height_m`), KITTI's velodyne (1.73 m).
pub const TRAINED_SENSOR_HEIGHT_M: f64 = 1.73;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MountingError {
    #[error("base_from_sensor is not a finite rigid transform")]
    NonFinite,
    #[error("intensity scale {0} must be finite and > 0")]
    IntensityScale(f32),
    #[error("ground z {0} m must be finite")]
    GroundZ(f64),
    #[error("model sensor height {0} m must be in (0, 10)")]
    ModelHeight(f64),
}

/// A validated mounting; see the module docs.
#[derive(Debug, Clone, PartialEq)]
pub struct Mounting {
    base_from_sensor: Isometry3<f64>,
    ground_z_m: f64,
    model_height_m: f64,
    intensity_scale: f32,
    model_from_sensor: Isometry3<f64>,
    base_from_model: Isometry3<f64>,
    /// `model_from_sensor` as a row-major 3x4 f32 matrix.
    matrix: [f32; 12],
}

/// A box moved by a rigid transform: the centre is mapped, the heading turns
/// by the transform's yaw (the box stays upright: for the level frames used
/// here the rotation is about z).
pub fn transform_box(iso: &Isometry3<f64>, b: &Box3D) -> Box3D {
    let c = iso * Point3::from(b.center);
    let x_axis = iso.rotation * Vector3::x();
    let turn = x_axis.y.atan2(x_axis.x);
    Box3D { center: [c.x, c.y, c.z], size: b.size, yaw: wrap_angle(b.yaw + turn) }
}

/// The half turn about z that maps the rear half of the model frame onto the front.
pub fn half_turn() -> Isometry3<f64> {
    Isometry3::from_parts(Translation3::identity(), UnitQuaternion::from_axis_angle(&Vector3::z_axis(), std::f64::consts::PI))
}

impl Mounting {
    /// `base_from_sensor` maps sensor points into the base frame (tf's
    /// `lookup(base, sensor)`), `ground_z_m` is the ground's z in base,
    /// `model_height_m` the sensor height the detector was trained at
    /// ([`TRAINED_SENSOR_HEIGHT_M`] for the embedded one). Intensities are
    /// kept as they are; see [`Mounting::with_intensity_scale`].
    pub fn new(base_from_sensor: Isometry3<f64>, ground_z_m: f64, model_height_m: f64) -> Result<Self, MountingError> {
        let q = base_from_sensor.rotation.quaternion();
        let finite = base_from_sensor.translation.vector.iter().chain(q.coords.iter()).all(|v| v.is_finite());
        if !finite || (q.norm() - 1.0).abs() > 1e-6 {
            return Err(MountingError::NonFinite);
        }
        if !ground_z_m.is_finite() {
            return Err(MountingError::GroundZ(ground_z_m));
        }
        if !(model_height_m > 0.0 && model_height_m < 10.0) {
            return Err(MountingError::ModelHeight(model_height_m));
        }
        let s = base_from_sensor.translation.vector;
        let base_from_model = Isometry3::translation(s.x, s.y, ground_z_m + model_height_m);
        let model_from_sensor = base_from_model.inverse() * base_from_sensor;
        let h = model_from_sensor.to_homogeneous();
        let mut matrix = [0f32; 12];
        for r in 0..3 {
            for c in 0..4 {
                matrix[r * 4 + c] = h[(r, c)] as f32;
            }
        }
        Ok(Self { base_from_sensor, ground_z_m, model_height_m, intensity_scale: 1.0, model_from_sensor, base_from_model, matrix })
    }

    /// Intensities are multiplied by `scale` on the way into the model frame
    /// (1/255 for drivers that publish 0..255, the model wants 0..1).
    pub fn with_intensity_scale(mut self, scale: f32) -> Result<Self, MountingError> {
        if !(scale.is_finite() && scale > 0.0) {
            return Err(MountingError::IntensityScale(scale));
        }
        self.intensity_scale = scale;
        Ok(self)
    }

    /// The cloud's own frame is the model frame and the output frame (a
    /// KITTI-mounted, x-forward LiDAR at the trained height; boxes stay in
    /// the sensor frame): what [`crate::perception::FramePipeline::process`] assumes.
    pub fn identity() -> Self {
        Self::new(Isometry3::identity(), -TRAINED_SENSOR_HEIGHT_M, TRAINED_SENSOR_HEIGHT_M).unwrap_or_else(|_| unreachable!("valid constants"))
    }

    /// KITTI's mounting seen from `base_link`: base on the ground right below
    /// the sensor, the sensor level and x-forward at the trained height. The
    /// model frame is the sensor frame; boxes come out 1.73 m higher, in base.
    pub fn kitti() -> Self {
        Self::new(Isometry3::translation(0.0, 0.0, TRAINED_SENSOR_HEIGHT_M), 0.0, TRAINED_SENSOR_HEIGHT_M).unwrap_or_else(|_| unreachable!("valid constants"))
    }

    pub fn base_from_sensor(&self) -> &Isometry3<f64> {
        &self.base_from_sensor
    }
    pub fn model_from_sensor(&self) -> &Isometry3<f64> {
        &self.model_from_sensor
    }
    pub fn base_from_model(&self) -> &Isometry3<f64> {
        &self.base_from_model
    }
    pub fn ground_z_m(&self) -> f64 {
        self.ground_z_m
    }
    pub fn model_height_m(&self) -> f64 {
        self.model_height_m
    }
    pub fn intensity_scale(&self) -> f32 {
        self.intensity_scale
    }

    /// The cloud in the model frame, intensities scaled; `ring` and `time`
    /// are carried along. Arrays of unequal length are cut to the shortest.
    pub fn to_model(&self, points: &Points) -> Points {
        let n = points.x.len().min(points.y.len()).min(points.z.len()).min(points.intensity.len());
        let (sx, sy, sz, si) = (&points.x[..n], &points.y[..n], &points.z[..n], &points.intensity[..n]);
        let m = &self.matrix;
        let k = self.intensity_scale;
        let (mut x, mut y, mut z) = (vec![0f32; n], vec![0f32; n], vec![0f32; n]);
        for i in 0..n {
            let (px, py, pz) = (sx[i], sy[i], sz[i]);
            x[i] = m[0] * px + m[1] * py + m[2] * pz + m[3];
            y[i] = m[4] * px + m[5] * py + m[6] * pz + m[7];
            z[i] = m[8] * px + m[9] * py + m[10] * pz + m[11];
        }
        let intensity = if k == 1.0 { si.to_vec() } else { si.iter().map(|v| v * k).collect() };
        let ring = points.ring.as_ref().filter(|r| r.len() >= n).map(|r| r[..n].to_vec());
        let time = points.time.as_ref().filter(|t| t.len() >= n).map(|t| t[..n].to_vec());
        Points { x, y, z, intensity, ring, time }
    }

    /// The cloud split for 360° coverage: the front half in the model frame
    /// (points with model x ≥ `x_min`, the model range's lower x bound) and
    /// the rear half turned by 180° about z (points with model x ≤ -`x_min`,
    /// given as (-x, -y, z)), so the same model sees both. Points outside
    /// both are dropped (the model would ignore them). One transform pass,
    /// then one gather per channel and half (faster than pushing point by
    /// point into two growing clouds).
    pub fn to_model_halves(&self, points: &Points, x_min: f32) -> (Points, Points) {
        let model = self.to_model(points);
        let half = |sign: f32| {
            let pick: Vec<u32> = (0..model.x.len() as u32).filter(|&i| sign * model.x[i as usize] >= x_min).collect();
            let gather = |v: &[f32], k: f32| pick.iter().map(|&i| k * v[i as usize]).collect::<Vec<f32>>();
            Points {
                x: gather(&model.x, sign),
                y: gather(&model.y, sign),
                z: gather(&model.z, 1.0),
                intensity: gather(&model.intensity, 1.0),
                ring: model.ring.as_ref().map(|r| pick.iter().map(|&i| r[i as usize]).collect()),
                time: model.time.as_ref().map(|t| gather(t, 1.0)),
            }
        };
        (half(1.0), half(-1.0))
    }

    /// A box from the model frame into the base frame.
    pub fn box_to_base(&self, b: &Box3D) -> Box3D {
        transform_box(&self.base_from_model, b)
    }
}
