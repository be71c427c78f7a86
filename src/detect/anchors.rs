//! Anchor grid over the BEV feature map (OpenPCDet `AnchorGenerator`,
//! `pcdet/models/dense_heads/target_assigner/anchor_generator.py`).
//!
//! Input: the point-cloud range `[x_min, y_min, z_min, x_max, y_max, z_max]`
//! (m), the feature-map size `(H, W)` (H rows along y, W columns along x),
//! the rotations (default `[0, π/2]`) and per class a size `[l, w, h]` and the
//! anchor's bottom height `z_b`. Anchor centres:
//!
//! ```text
//! align_center = true (cell centres, the default here):
//!     x_j = x_min + (j + ½)·(x_max − x_min)/W      y_i = y_min + (i + ½)·(y_max − y_min)/H
//! align_center = false (OpenPCDet's KITTI configs: grid corners, needs W, H ≥ 2):
//!     x_j = x_min + j·(x_max − x_min)/(W − 1)      y_i = y_min + i·(y_max − y_min)/(H − 1)
//! z = z_b + h/2                                    (geometric centre, as Box3D)
//! ```
//!
//! `z_min`/`z_max` of the range are only validated: as in OpenPCDet the
//! anchor height comes from the class's bottom height.
//!
//! Layout of the flat output, as OpenPCDet's anchor head concatenates its
//! per-class anchors (`torch.cat(anchors, dim=-3)` then `view(-1, 7)`), which
//! is also the order of a conv head's `[B, H, W, A·C]` output flattened:
//!
//! ```text
//! index(y, x, class, rot) = ((y·W + x)·num_classes + class)·num_rotations + rot
//! ```
//!
//! i.e. `y` slowest, then `x`, then class, then rotation (fastest). Use
//! [`AnchorGrid::index`] rather than spelling it out.
//! KITTI defaults ([`AnchorClass::kitti`]): Car [3.9, 1.6, 1.56] bottom −1.78,
//! Pedestrian [0.8, 0.6, 1.73] bottom −0.6, Cyclist [1.76, 0.6, 1.73] bottom −0.6.
//! Run the tests: `cargo test --no-default-features --lib detect::anchors`.

use crate::geometry::{wrap_angle, Box3D};
use std::f64::consts::FRAC_PI_2;

/// One class's anchor: size `[l, w, h]` (m) and bottom height `z_b` (m).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AnchorClass {
    pub name: String,
    pub size: [f64; 3],
    pub bottom_height: f64,
}

impl AnchorClass {
    /// OpenPCDet's KITTI anchors: Car, Pedestrian, Cyclist (in that order).
    pub fn kitti() -> Vec<AnchorClass> {
        let c = |name: &str, size: [f64; 3], bottom_height: f64| AnchorClass { name: name.into(), size, bottom_height };
        vec![
            c("Car", [3.9, 1.6, 1.56], -1.78),
            c("Pedestrian", [0.8, 0.6, 1.73], -0.6),
            c("Cyclist", [1.76, 0.6, 1.73], -0.6),
        ]
    }

    /// The anchor's z centre, `bottom_height + h/2`.
    pub fn z_center(&self) -> f64 {
        self.bottom_height + self.size[2] / 2.0
    }
}

/// Everything that defines an anchor grid.
#[derive(Debug, Clone, PartialEq)]
pub struct AnchorConfig {
    /// `[x_min, y_min, z_min, x_max, y_max, z_max]` (m).
    pub point_cloud_range: [f64; 6],
    /// `(H, W)`: rows along y, columns along x.
    pub feature_map_size: (usize, usize),
    /// Anchor yaws (rad); wrapped to (−π, π] in the boxes.
    pub rotations: Vec<f64>,
    pub classes: Vec<AnchorClass>,
    /// true: cell centres; false: OpenPCDet's `align_center: False` grid.
    pub align_center: bool,
}

impl AnchorConfig {
    /// Cell-centred anchors for `classes` with rotations `[0, π/2]`.
    pub fn new(point_cloud_range: [f64; 6], feature_map_size: (usize, usize), classes: Vec<AnchorClass>) -> Self {
        AnchorConfig { point_cloud_range, feature_map_size, rotations: vec![0.0, FRAC_PI_2], classes, align_center: true }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AnchorError {
    #[error("point-cloud range {0:?} needs finite values with min < max on every axis")]
    Range([f64; 6]),
    #[error("feature map {h}×{w} is empty (or < 2 per side with align_center = false)")]
    FeatureMap { h: usize, w: usize },
    #[error("at least one class and one rotation are needed")]
    Empty,
    #[error("class {name:?}: size {size:?} must be finite and > 0, bottom height {bottom_height} finite")]
    Class { name: String, size: [f64; 3], bottom_height: f64 },
    #[error("rotation {0} is not finite")]
    Rotation(f64),
    #[error("{0} anchors do not fit in memory")]
    TooMany(u128),
}

/// The anchors of one feature map, flat in the layout of the module header.
#[derive(Debug, Clone, PartialEq)]
pub struct AnchorGrid {
    anchors: Vec<Box3D>,
    height: usize,
    width: usize,
    num_classes: usize,
    num_rotations: usize,
}

impl AnchorGrid {
    pub fn new(cfg: &AnchorConfig) -> Result<Self, AnchorError> {
        let r = cfg.point_cloud_range;
        if r.iter().any(|v| !v.is_finite()) || (0..3).any(|k| r[k] >= r[k + 3]) {
            return Err(AnchorError::Range(r));
        }
        let (h, w) = cfg.feature_map_size;
        let min_side = if cfg.align_center { 1 } else { 2 };
        if h < min_side || w < min_side {
            return Err(AnchorError::FeatureMap { h, w });
        }
        if cfg.classes.is_empty() || cfg.rotations.is_empty() {
            return Err(AnchorError::Empty);
        }
        for c in &cfg.classes {
            if !(c.size.iter().all(|s| s.is_finite() && *s > 0.0) && c.bottom_height.is_finite()) {
                return Err(AnchorError::Class { name: c.name.clone(), size: c.size, bottom_height: c.bottom_height });
            }
        }
        if let Some(&bad) = cfg.rotations.iter().find(|v| !v.is_finite()) {
            return Err(AnchorError::Rotation(bad));
        }
        let (nc, nr) = (cfg.classes.len(), cfg.rotations.len());
        let total = h as u128 * w as u128 * nc as u128 * nr as u128;
        // 1 << 31 anchors would already be 120 GB of boxes
        if total > (1u128 << 31) {
            return Err(AnchorError::TooMany(total));
        }
        let (x_step, x_off, y_step, y_off) = if cfg.align_center {
            let (xs, ys) = ((r[3] - r[0]) / w as f64, (r[4] - r[1]) / h as f64);
            (xs, xs / 2.0, ys, ys / 2.0)
        } else {
            ((r[3] - r[0]) / (w - 1) as f64, 0.0, (r[4] - r[1]) / (h - 1) as f64, 0.0)
        };
        let yaws: Vec<f64> = cfg.rotations.iter().map(|&a| wrap_angle(a)).collect();
        let mut anchors = Vec::with_capacity(total as usize);
        for i in 0..h {
            let y = r[1] + y_off + i as f64 * y_step;
            for j in 0..w {
                let x = r[0] + x_off + j as f64 * x_step;
                for c in &cfg.classes {
                    for &yaw in &yaws {
                        anchors.push(Box3D { center: [x, y, c.z_center()], size: c.size, yaw });
                    }
                }
            }
        }
        Ok(AnchorGrid { anchors, height: h, width: w, num_classes: nc, num_rotations: nr })
    }

    /// All anchors, `index(y, x, class, rot)` order.
    pub fn anchors(&self) -> &[Box3D] {
        &self.anchors
    }

    pub fn len(&self) -> usize {
        self.anchors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }

    /// `(H, W)` of the feature map.
    pub fn feature_map_size(&self) -> (usize, usize) {
        (self.height, self.width)
    }

    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    pub fn num_rotations(&self) -> usize {
        self.num_rotations
    }

    /// Anchors per feature-map cell, `num_classes · num_rotations` (the
    /// head's A·C channel grouping).
    pub fn anchors_per_location(&self) -> usize {
        self.num_classes * self.num_rotations
    }

    /// Flat index of an anchor; `None` when out of range.
    pub fn index(&self, y: usize, x: usize, class: usize, rot: usize) -> Option<usize> {
        if y >= self.height || x >= self.width || class >= self.num_classes || rot >= self.num_rotations {
            return None;
        }
        Some(((y * self.width + x) * self.num_classes + class) * self.num_rotations + rot)
    }

    /// Class id of the anchor at flat index `i` (`None` when out of range).
    pub fn class_of(&self, i: usize) -> Option<usize> {
        (i < self.anchors.len()).then(|| (i / self.num_rotations) % self.num_classes)
    }

    /// `[N·7]` f32 rows `[x, y, z, l, w, h, yaw]`, ready for a `[N, 7]` tensor.
    pub fn to_rows_f32(&self) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.anchors.len() * 7);
        for b in &self.anchors {
            out.extend([b.center[0], b.center[1], b.center[2], b.size[0], b.size[1], b.size[2], b.yaw].map(|v| v as f32));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// OpenPCDet's PointPillars KITTI setting: 0.16 m pillars, 432 × 496
    /// grid, backbone stride 2 → feature map 248 (y) × 216 (x).
    const KITTI_RANGE: [f64; 6] = [0.0, -39.68, -3.0, 69.12, 39.68, 1.0];

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn kitti_grid_count_corners_and_heights() {
        let g = AnchorGrid::new(&AnchorConfig::new(KITTI_RANGE, (248, 216), AnchorClass::kitti())).unwrap();
        assert_eq!(g.len(), 248 * 216 * 3 * 2);
        assert_eq!(g.anchors_per_location(), 6);
        // first anchor: the cell centre of the (x_min, y_min) corner, Car, yaw 0
        let first = g.anchors()[0];
        assert!(close(first.center[0], 0.16) && close(first.center[1], -39.52), "{first:?}");
        assert!(close(first.center[2], -1.78 + 1.56 / 2.0));
        assert_eq!(first.size, [3.9, 1.6, 1.56]);
        assert_eq!(first.yaw, 0.0);
        // last anchor: the cell centre of the (x_max, y_max) corner, Cyclist, yaw π/2
        let last = g.anchors()[g.len() - 1];
        assert!(close(last.center[0], 68.96) && close(last.center[1], 39.52), "{last:?}");
        assert!(close(last.center[2], -0.6 + 1.73 / 2.0));
        assert_eq!(last.size, [1.76, 0.6, 1.73]);
        assert!(close(last.yaw, FRAC_PI_2));
    }

    #[test]
    fn layout_is_y_x_class_rotation() {
        let g = AnchorGrid::new(&AnchorConfig::new([0.0, 0.0, -3.0, 4.0, 2.0, 1.0], (2, 4), AnchorClass::kitti())).unwrap();
        assert_eq!(g.len(), 2 * 4 * 3 * 2);
        for y in 0..2 {
            for x in 0..4 {
                for c in 0..3 {
                    for r in 0..2 {
                        let i = g.index(y, x, c, r).unwrap();
                        let a = g.anchors()[i];
                        // 1 m × 1 m cells
                        assert!(close(a.center[0], x as f64 + 0.5) && close(a.center[1], y as f64 + 0.5));
                        assert_eq!(a.size, AnchorClass::kitti()[c].size);
                        assert!(close(a.yaw, [0.0, FRAC_PI_2][r]));
                        assert_eq!(g.class_of(i), Some(c));
                    }
                }
            }
        }
        // consecutive: rotation fastest, then class, then x
        assert_eq!(g.index(0, 0, 0, 1), Some(1));
        assert_eq!(g.index(0, 0, 1, 0), Some(2));
        assert_eq!(g.index(0, 1, 0, 0), Some(6));
        assert_eq!(g.index(1, 0, 0, 0), Some(24));
        assert_eq!(g.index(2, 0, 0, 0), None);
        assert_eq!(g.index(0, 0, 3, 0), None);
        assert_eq!(g.class_of(g.len()), None);
        let rows = g.to_rows_f32();
        assert_eq!(rows.len(), g.len() * 7);
        assert_eq!(&rows[7..14], &[0.5f32, 0.5, (-1.78 + 0.78) as f32, 3.9, 1.6, 1.56, FRAC_PI_2 as f32]);
    }

    #[test]
    fn openpcdet_corner_alignment() {
        let mut cfg = AnchorConfig::new(KITTI_RANGE, (248, 216), AnchorClass::kitti());
        cfg.align_center = false;
        let g = AnchorGrid::new(&cfg).unwrap();
        let (first, last) = (g.anchors()[0], g.anchors()[g.len() - 1]);
        assert!(close(first.center[0], 0.0) && close(first.center[1], -39.68));
        assert!(close(last.center[0], 69.12) && close(last.center[1], 39.68));
        cfg.feature_map_size = (1, 216);
        assert!(AnchorGrid::new(&cfg).is_err());
    }

    #[test]
    fn rotations_are_wrapped_and_configurable() {
        let mut cfg = AnchorConfig::new([0.0, 0.0, -3.0, 1.0, 1.0, 1.0], (1, 1), AnchorClass::kitti()[..1].to_vec());
        cfg.rotations = vec![0.0, FRAC_PI_2, std::f64::consts::PI, 3.0 * FRAC_PI_2];
        let g = AnchorGrid::new(&cfg).unwrap();
        let yaws: Vec<f64> = g.anchors().iter().map(|a| a.yaw).collect();
        let want = [0.0, FRAC_PI_2, std::f64::consts::PI, -FRAC_PI_2];
        assert!(yaws.iter().zip(want).all(|(a, b)| close(*a, b)), "{yaws:?}");
    }

    #[test]
    fn invalid_configs_are_errors() {
        let ok = AnchorConfig::new(KITTI_RANGE, (4, 4), AnchorClass::kitti());
        assert!(AnchorGrid::new(&ok).is_ok());
        let mut c = ok.clone();
        c.point_cloud_range[3] = 0.0;
        assert!(matches!(AnchorGrid::new(&c), Err(AnchorError::Range(_))));
        c = ok.clone();
        c.point_cloud_range[2] = f64::NAN;
        assert!(AnchorGrid::new(&c).is_err());
        c = ok.clone();
        c.feature_map_size = (0, 4);
        assert!(matches!(AnchorGrid::new(&c), Err(AnchorError::FeatureMap { .. })));
        c = ok.clone();
        c.classes[1].size[0] = 0.0;
        assert!(matches!(AnchorGrid::new(&c), Err(AnchorError::Class { .. })));
        c = ok.clone();
        c.rotations.clear();
        assert!(matches!(AnchorGrid::new(&c), Err(AnchorError::Empty)));
        c = ok.clone();
        c.rotations.push(f64::INFINITY);
        assert!(matches!(AnchorGrid::new(&c), Err(AnchorError::Rotation(_))));
        c = ok.clone();
        c.feature_map_size = (1 << 20, 1 << 20);
        assert!(matches!(AnchorGrid::new(&c), Err(AnchorError::TooMany(_))));
    }
}
