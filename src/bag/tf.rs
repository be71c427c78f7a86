//! `tf2_msgs/msg/TFMessage` and the geometry types it is made of, with the
//! same hand-written CDR codec as [`super::messages`], so bags can carry
//! `/tf_static` without r2r.
//!
//! A `TransformStamped` with `header.frame_id = parent` and
//! `child_frame_id = child` is the pose of the child frame in the parent
//! frame: it maps a point given in child coordinates to parent coordinates,
//! `p_parent = R p_child + t`.

use super::cdr::{CdrReader, CdrWriter};
use super::messages::{Header, RosMessage};
use super::BagError;

/// `geometry_msgs/msg/Vector3`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Vector3 {
    pub x: f64,
    pub y: f64,
    pub z: f64,
}

impl RosMessage for Vector3 {
    const TYPE_NAME: &'static str = "geometry_msgs/msg/Vector3";
    fn write_fields(&self, w: &mut CdrWriter) {
        [self.x, self.y, self.z].into_iter().for_each(|v| w.f64(v));
    }
    fn read_fields(r: &mut CdrReader<'_>) -> Result<Self, BagError> {
        Ok(Self { x: r.f64()?, y: r.f64()?, z: r.f64()? })
    }
}

/// `geometry_msgs/msg/Quaternion` (x, y, z, w; the default is the identity).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quaternion {
    pub x: f64,
    pub y: f64,
    pub z: f64,
    pub w: f64,
}

impl Default for Quaternion {
    fn default() -> Self {
        Self { x: 0.0, y: 0.0, z: 0.0, w: 1.0 }
    }
}

impl Quaternion {
    /// The unit quaternion of the rotation closest to the 3x3 row-major
    /// `m`, which must be a rotation up to small numerical error (e.g. a
    /// product of calibration matrices). `None` when `m` is not finite or
    /// too far from a rotation (|det - 1| > 1e-2).
    pub fn from_rotation(m: &[f64; 9]) -> Option<Self> {
        if !m.iter().all(|v| v.is_finite()) || (crate::geometry::mat3_det(m) - 1.0).abs() > 1e-2 {
            return None;
        }
        // the largest of w, x, y, z is computed from the diagonal first, so
        // the division below never uses a small number (Shepperd's method)
        let (m00, m01, m02, m10, m11, m12, m20, m21, m22) = (m[0], m[1], m[2], m[3], m[4], m[5], m[6], m[7], m[8]);
        let trace = m00 + m11 + m22;
        let q = if trace >= m00.max(m11).max(m22) {
            let s = 2.0 * (1.0 + trace).sqrt();
            Self { w: s / 4.0, x: (m21 - m12) / s, y: (m02 - m20) / s, z: (m10 - m01) / s }
        } else if m00 >= m11 && m00 >= m22 {
            let s = 2.0 * (1.0 + m00 - m11 - m22).sqrt();
            Self { w: (m21 - m12) / s, x: s / 4.0, y: (m01 + m10) / s, z: (m02 + m20) / s }
        } else if m11 >= m22 {
            let s = 2.0 * (1.0 + m11 - m00 - m22).sqrt();
            Self { w: (m02 - m20) / s, x: (m01 + m10) / s, y: s / 4.0, z: (m12 + m21) / s }
        } else {
            let s = 2.0 * (1.0 + m22 - m00 - m11).sqrt();
            Self { w: (m10 - m01) / s, x: (m02 + m20) / s, y: (m12 + m21) / s, z: s / 4.0 }
        };
        let n = (q.x * q.x + q.y * q.y + q.z * q.z + q.w * q.w).sqrt();
        // canonical sign: w >= 0
        let n = if q.w < 0.0 { -n } else { n };
        (n.is_finite() && n != 0.0).then(|| Self { x: q.x / n, y: q.y / n, z: q.z / n, w: q.w / n })
    }

    /// The 3x3 row-major rotation matrix of this (normalised) quaternion.
    pub fn to_rotation(&self) -> [f64; 9] {
        let n = (self.x * self.x + self.y * self.y + self.z * self.z + self.w * self.w).sqrt();
        let (x, y, z, w) = (self.x / n, self.y / n, self.z / n, self.w / n);
        [
            1.0 - 2.0 * (y * y + z * z),
            2.0 * (x * y - z * w),
            2.0 * (x * z + y * w),
            2.0 * (x * y + z * w),
            1.0 - 2.0 * (x * x + z * z),
            2.0 * (y * z - x * w),
            2.0 * (x * z - y * w),
            2.0 * (y * z + x * w),
            1.0 - 2.0 * (x * x + y * y),
        ]
    }
}

impl RosMessage for Quaternion {
    const TYPE_NAME: &'static str = "geometry_msgs/msg/Quaternion";
    fn write_fields(&self, w: &mut CdrWriter) {
        [self.x, self.y, self.z, self.w].into_iter().for_each(|v| w.f64(v));
    }
    fn read_fields(r: &mut CdrReader<'_>) -> Result<Self, BagError> {
        Ok(Self { x: r.f64()?, y: r.f64()?, z: r.f64()?, w: r.f64()? })
    }
}

/// `geometry_msgs/msg/Transform`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Transform {
    pub translation: Vector3,
    pub rotation: Quaternion,
}

impl RosMessage for Transform {
    const TYPE_NAME: &'static str = "geometry_msgs/msg/Transform";
    fn write_fields(&self, w: &mut CdrWriter) {
        self.translation.write_fields(w);
        self.rotation.write_fields(w);
    }
    fn read_fields(r: &mut CdrReader<'_>) -> Result<Self, BagError> {
        Ok(Self { translation: Vector3::read_fields(r)?, rotation: Quaternion::read_fields(r)? })
    }
}

/// `geometry_msgs/msg/TransformStamped`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TransformStamped {
    pub header: Header,
    pub child_frame_id: String,
    pub transform: Transform,
}

impl RosMessage for TransformStamped {
    const TYPE_NAME: &'static str = "geometry_msgs/msg/TransformStamped";
    fn write_fields(&self, w: &mut CdrWriter) {
        self.header.write_fields(w);
        w.string(&self.child_frame_id);
        self.transform.write_fields(w);
    }
    fn read_fields(r: &mut CdrReader<'_>) -> Result<Self, BagError> {
        Ok(Self { header: Header::read_fields(r)?, child_frame_id: r.string()?, transform: Transform::read_fields(r)? })
    }
}

/// `tf2_msgs/msg/TFMessage`: what `/tf` and `/tf_static` carry.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TFMessage {
    pub transforms: Vec<TransformStamped>,
}

impl RosMessage for TFMessage {
    const TYPE_NAME: &'static str = "tf2_msgs/msg/TFMessage";
    fn size_hint(&self) -> usize {
        16 + self.transforms.iter().map(|t| 120 + t.header.frame_id.len() + t.child_frame_id.len()).sum::<usize>()
    }
    fn write_fields(&self, w: &mut CdrWriter) {
        w.seq_len(self.transforms.len());
        self.transforms.iter().for_each(|t| t.write_fields(w));
    }
    fn read_fields(r: &mut CdrReader<'_>) -> Result<Self, BagError> {
        // 72 bytes (stamp, two string lengths, 7 f64) is a lower bound on one element
        let n = r.seq_len(72)?;
        Ok(Self { transforms: (0..n).map(|_| TransformStamped::read_fields(r)).collect::<Result<_, _>>()? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bag::Time;

    fn rot_z(a: f64) -> [f64; 9] {
        let (s, c) = a.sin_cos();
        [c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0]
    }

    #[test]
    fn quaternion_round_trips_rotations() {
        // 90° about z is (0, 0, sin 45°, cos 45°)
        let q = Quaternion::from_rotation(&rot_z(std::f64::consts::FRAC_PI_2)).unwrap();
        let h = std::f64::consts::FRAC_1_SQRT_2;
        assert!((q.z - h).abs() < 1e-12 && (q.w - h).abs() < 1e-12 && q.x.abs() < 1e-12, "{q:?}");
        // every branch of the method: near-identity, and 180° about x, y and z
        let flips = [
            [1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, -1.0],
            [-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0],
            [-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0],
            // camera optical from LiDAR axes: x right = -y, y down = -z, z forward = x
            [0.0, -1.0, 0.0, 0.0, 0.0, -1.0, 1.0, 0.0, 0.0],
            rot_z(0.3),
        ];
        for m in flips {
            let back = Quaternion::from_rotation(&m).unwrap().to_rotation();
            assert!(m.iter().zip(back).all(|(a, b)| (a - b).abs() < 1e-12), "{m:?} -> {back:?}");
        }
        assert!(Quaternion::from_rotation(&[2.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]).is_none());
        assert!(Quaternion::from_rotation(&[f64::NAN; 9]).is_none());
    }

    #[test]
    fn tf_message_cdr_round_trip_and_truncation() {
        let t = TransformStamped {
            header: Header { stamp: Time { sec: 3, nanosec: 4 }, frame_id: "base_link".into() },
            child_frame_id: "velodyne".into(),
            transform: Transform {
                translation: Vector3 { x: 0.0, y: 0.0, z: 1.73 },
                rotation: Quaternion::from_rotation(&rot_z(0.1)).unwrap(),
            },
        };
        let msg = TFMessage { transforms: vec![t.clone(), TransformStamped { child_frame_id: "cam".into(), ..t }] };
        let bytes = msg.encode();
        assert_eq!(TFMessage::decode(&bytes).unwrap(), msg);
        // the first element starts after the count: stamp, frame id "base_link\0" (len 10)
        assert_eq!(&bytes[4..8], &2u32.to_le_bytes());
        for cut in 0..bytes.len() {
            assert!(TFMessage::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut huge = bytes.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(TFMessage::decode(&huge), Err(BagError::LengthTooLarge { .. })));
    }
}
