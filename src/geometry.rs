//! Oriented 3D boxes, the one box type shared by datasets, the simulator,
//! the detector and evaluation.
//!
//! Convention (LiDAR / vehicle frame, as KITTI's velodyne and OpenPCDet):
//! x forward, y left, z up; `center` is the geometric centre of the box (not
//! the bottom face); `size` = [length along the heading, width, height];
//! `yaw` is the heading about +z in radians, 0 = facing +x, wrapped to
//! (-pi, pi]. KITTI camera-frame labels (bottom centre, rotation_y about the
//! camera's y-down axis) are converted to this in `dataset::kitti`.

use std::f64::consts::PI;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Box3D {
    pub center: [f64; 3],
    /// [length, width, height] in metres.
    pub size: [f64; 3],
    pub yaw: f64,
}

/// Wraps an angle to (-pi, pi].
pub fn wrap_angle(a: f64) -> f64 {
    let w = (a + PI).rem_euclid(2.0 * PI) - PI;
    if w <= -PI { w + 2.0 * PI } else { w }
}

impl Box3D {
    /// The 8 corners: bottom face counter-clockwise seen from above starting
    /// at front-left, then the top face in the same order.
    pub fn corners(&self) -> [[f64; 3]; 8] {
        let [l, w, h] = self.size;
        let (s, c) = self.yaw.sin_cos();
        let mut out = [[0.0; 3]; 8];
        let local = [(l / 2.0, w / 2.0), (-l / 2.0, w / 2.0), (-l / 2.0, -w / 2.0), (l / 2.0, -w / 2.0)];
        for (i, (dx, dy)) in local.iter().enumerate() {
            let x = self.center[0] + c * dx - s * dy;
            let y = self.center[1] + s * dx + c * dy;
            out[i] = [x, y, self.center[2] - h / 2.0];
            out[i + 4] = [x, y, self.center[2] + h / 2.0];
        }
        out
    }

    /// True when `p` lies inside the box (faces included).
    pub fn contains(&self, p: [f64; 3]) -> bool {
        let (s, c) = self.yaw.sin_cos();
        let (dx, dy, dz) = (p[0] - self.center[0], p[1] - self.center[1], p[2] - self.center[2]);
        let lx = c * dx + s * dy;
        let ly = -s * dx + c * dy;
        lx.abs() <= self.size[0] / 2.0 && ly.abs() <= self.size[1] / 2.0 && dz.abs() <= self.size[2] / 2.0
    }
}

/// Determinant of a row-major 3x3 matrix.
pub fn mat3_det(m: &[f64; 9]) -> f64 {
    m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6]) + m[2] * (m[3] * m[7] - m[4] * m[6])
}

/// Inverse of a row-major 3x3 matrix by the adjugate; `None` when singular
/// (|det| ≤ 1e-12) or not finite. Calibration rotations are inverted in full
/// rather than transposed: published ones, rounded, are not orthonormal.
pub fn mat3_inverse(m: &[f64; 9]) -> Option<[f64; 9]> {
    let det = mat3_det(m);
    if !(det.is_finite() && det.abs() > 1e-12) {
        return None;
    }
    let adj = [
        m[4] * m[8] - m[5] * m[7],
        m[2] * m[7] - m[1] * m[8],
        m[1] * m[5] - m[2] * m[4],
        m[5] * m[6] - m[3] * m[8],
        m[0] * m[8] - m[2] * m[6],
        m[2] * m[3] - m[0] * m[5],
        m[3] * m[7] - m[4] * m[6],
        m[1] * m[6] - m[0] * m[7],
        m[0] * m[4] - m[1] * m[3],
    ];
    Some(adj.map(|a| a / det))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mat3_inverse_inverts_and_refuses_singular() {
        let m = [2.0, 1.0, 0.0, 0.0, 1.0, 3.0, 1.0, 0.0, 1.0];
        let inv = mat3_inverse(&m).unwrap();
        for r in 0..3 {
            for c in 0..3 {
                let v: f64 = (0..3).map(|k| m[r * 3 + k] * inv[k * 3 + c]).sum();
                assert!((v - if r == c { 1.0 } else { 0.0 }).abs() < 1e-12);
            }
        }
        assert_eq!(mat3_inverse(&[1.0, 2.0, 3.0, 2.0, 4.0, 6.0, 0.0, 0.0, 1.0]), None);
        assert_eq!(mat3_inverse(&[f64::NAN; 9]), None);
    }

    #[test]
    fn wrap_is_half_open() {
        assert!((wrap_angle(PI) - PI).abs() < 1e-12);
        assert!((wrap_angle(-PI) - PI).abs() < 1e-12);
        assert!((wrap_angle(3.0 * PI / 2.0) + PI / 2.0).abs() < 1e-12);
        assert!((wrap_angle(0.25) - 0.25).abs() < 1e-12);
    }

    #[test]
    fn corners_and_containment_of_a_rotated_box() {
        let b = Box3D { center: [10.0, 2.0, -1.0], size: [4.0, 2.0, 1.5], yaw: PI / 2.0 };
        let c = b.corners();
        // facing +y: the front-left corner is at +y (length) and -x (left of heading)
        assert!((c[0][0] - 9.0).abs() < 1e-9 && (c[0][1] - 4.0).abs() < 1e-9 && (c[0][2] + 1.75).abs() < 1e-9);
        assert!(b.contains([10.0, 3.9, -1.0]));
        assert!(!b.contains([11.1, 2.0, -1.0]));
        assert!(!b.contains([10.0, 2.0, 0.0]));
    }
}
