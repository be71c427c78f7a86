//! Data augmentation of one training frame (OpenPCDet's KITTI PointPillars
//! recipe, in its order): ground-truth sampling when enabled
//! ([`super::gt_sampling`]), then the global random flip across the x axis,
//! rotation about z and uniform scaling, applied identically to the points
//! and the ground-truth boxes so the labels stay exact.

use crate::cloud::Points;
use super::gt_sampling::GtSamplingConfig;
use crate::dataset::sim::Rng;
use crate::geometry::{wrap_angle, Box3D};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct AugmentConfig {
    /// Pasting objects from the ground-truth database (before the global transform).
    pub gt_sampling: GtSamplingConfig,
    /// Probability of mirroring y → −y.
    pub flip_probability: f64,
    /// Rotation drawn uniformly in ±this (radians; OpenPCDet: π/4).
    pub max_rotation: f64,
    /// Scale drawn uniformly in [min, max] (OpenPCDet: 0.95–1.05).
    pub scale: [f64; 2],
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self { gt_sampling: GtSamplingConfig::default(), flip_probability: 0.5, max_rotation: std::f64::consts::FRAC_PI_4, scale: [0.95, 1.05] }
    }
}

impl AugmentConfig {
    pub fn none() -> Self {
        Self { gt_sampling: GtSamplingConfig::default(), flip_probability: 0.0, max_rotation: 0.0, scale: [1.0, 1.0] }
    }
}

/// The transform drawn for one frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GlobalTransform {
    pub flip: bool,
    pub rotation: f64,
    pub scale: f64,
}

impl GlobalTransform {
    pub fn draw(cfg: &AugmentConfig, rng: &mut Rng) -> Self {
        let flip = rng.chance(cfg.flip_probability);
        let rotation = if cfg.max_rotation > 0.0 { rng.range(-cfg.max_rotation, cfg.max_rotation) } else { 0.0 };
        let scale = if cfg.scale[1] > cfg.scale[0] { rng.range(cfg.scale[0], cfg.scale[1]) } else { cfg.scale[0] };
        Self { flip, rotation, scale }
    }

    /// p ↦ s · R(θ) · F · p, with F the optional y mirror.
    fn map_xy(&self, x: f64, y: f64) -> (f64, f64) {
        let y = if self.flip { -y } else { y };
        let (s, c) = self.rotation.sin_cos();
        (self.scale * (c * x - s * y), self.scale * (s * x + c * y))
    }

    pub fn apply_points(&self, points: &mut Points) {
        for i in 0..points.len() {
            let (x, y) = self.map_xy(points.x[i] as f64, points.y[i] as f64);
            points.x[i] = x as f32;
            points.y[i] = y as f32;
            points.z[i] = (points.z[i] as f64 * self.scale) as f32;
        }
    }

    pub fn apply_box(&self, b: &Box3D) -> Box3D {
        let (x, y) = self.map_xy(b.center[0], b.center[1]);
        let yaw = if self.flip { -b.yaw } else { b.yaw };
        Box3D {
            center: [x, y, b.center[2] * self.scale],
            size: b.size.map(|v| v * self.scale),
            yaw: wrap_angle(yaw + self.rotation),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::Point;
    use crate::detect::iou::iou_3d;

    /// A point inside a box stays inside the transformed box at the same
    /// relative position, for any drawn transform.
    #[test]
    fn points_and_boxes_move_together() {
        let b = Box3D { center: [10.0, 3.0, -0.8], size: [4.0, 1.8, 1.5], yaw: 0.3 };
        let local = [[1.5, 0.6, 0.5], [-1.9, -0.85, -0.7], [0.0, 0.0, 0.0]];
        let (s, c) = b.yaw.sin_cos();
        let mut pts = Points::with_capacity(3, false, false);
        for l in local {
            let (x, y) = (b.center[0] + c * l[0] - s * l[1], b.center[1] + s * l[0] + c * l[1]);
            pts.push(Point { x: x as f32, y: y as f32, z: (b.center[2] + l[2]) as f32, intensity: 0.0, ring: 0, time: 0.0 });
        }
        let mut rng = Rng::new(5);
        for _ in 0..50 {
            let t = GlobalTransform::draw(&AugmentConfig { flip_probability: 0.5, ..Default::default() }, &mut rng);
            let mut p = pts.clone();
            t.apply_points(&mut p);
            let nb = t.apply_box(&b);
            let (s2, c2) = nb.yaw.sin_cos();
            for (i, l) in local.iter().enumerate() {
                let (dx, dy) = (p.x[i] as f64 - nb.center[0], p.y[i] as f64 - nb.center[1]);
                let (u, v) = (c2 * dx + s2 * dy, -s2 * dx + c2 * dy);
                // a mirrored box sees its local y mirrored too
                let ly = if t.flip { -l[1] } else { l[1] };
                assert!((u - l[0] * t.scale).abs() < 1e-4 && (v - ly * t.scale).abs() < 1e-4, "{t:?}");
                assert!((p.z[i] as f64 - nb.center[2] - l[2] * t.scale).abs() < 1e-4);
            }
        }
    }

    #[test]
    fn identity_and_flip_twice() {
        let b = Box3D { center: [5.0, -2.0, -1.0], size: [3.9, 1.6, 1.56], yaw: -2.0 };
        let id = GlobalTransform { flip: false, rotation: 0.0, scale: 1.0 };
        assert_eq!(id.apply_box(&b), b);
        let f = GlobalTransform { flip: true, rotation: 0.0, scale: 1.0 };
        let back = f.apply_box(&f.apply_box(&b));
        assert!(iou_3d(&back, &b) > 0.9999);
        assert_eq!(GlobalTransform::draw(&AugmentConfig::none(), &mut Rng::new(1)), id);
    }
}
