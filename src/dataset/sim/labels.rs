//! KITTI `label_2` lines for a simulated frame.
//!
//! For every object of the snapshot whose box reaches into the image:
//! * 3D fields from its LiDAR-frame box through the calibration
//!   ([`ObjectLabel::from_lidar_box`]), class from [`SimClass::kitti`];
//! * 2D box and truncation from [`project_box_to_image`] (the footprint of
//!   the 3D box, clipped to the image, as KITTI's boxes are drawn);
//! * occlusion from the rendered camera frame: the object's *silhouette*
//!   (pixels its body covers when cast alone) against the pixels where the
//!   rendered object-id buffer shows it. The hidden fraction of the
//!   silhouette maps to KITTI's levels: < [`PARTLY_OCCLUDED`] → 0 (fully
//!   visible), < [`LARGELY_OCCLUDED`] → 1 (partly), otherwise 2 (largely).
//!   Anything nearer counts as an occluder: other objects, poles, trees.
//!   (The camera buffer was chosen over LiDAR hit counts because KITTI's
//!   occlusion is judged in the image, and the LiDAR sees past occluders
//!   from 0.27 m further back and 1.7 m higher.)
//! * `DontCare` for objects that annotators could not label: fewer than
//!   [`LabelRules::min_lidar_points`] LiDAR returns or a 2D box lower than
//!   [`LabelRules::min_height_px`]. Objects with no visible pixel and no
//!   LiDAR return get no line at all.
//!
//! Silhouettes are sampled on a grid of at most ~64 × 64 points per box, so
//! a near truck costs the same as a far pedestrian.

use std::collections::BTreeMap;

use super::camera::{CameraFrame, CameraModel};
use super::lidar::Scan;
use super::scene::Snapshot;
use crate::dataset::kitti::{project_box_to_image, ObjectClass, ObjectLabel};
use crate::geometry::Box3D;

/// Hidden fraction below which an object counts as fully visible (level 0).
pub const PARTLY_OCCLUDED: f64 = 0.10;
/// Hidden fraction from which an object counts as largely occluded (level 2).
pub const LARGELY_OCCLUDED: f64 = 0.50;

/// When an object becomes `DontCare`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LabelRules {
    pub min_lidar_points: usize,
    pub min_height_px: f64,
}

impl Default for LabelRules {
    fn default() -> Self {
        Self { min_lidar_points: 5, min_height_px: 10.0 }
    }
}

/// One object's label with the facts behind it (for tests and reports).
#[derive(Debug, Clone, PartialEq)]
pub struct SimLabel {
    pub id: u32,
    pub label: ObjectLabel,
    /// The object's box in the LiDAR frame (before KITTI's rounding).
    pub lidar_box: Box3D,
    pub lidar_points: usize,
    /// Hidden fraction of the silhouette in the image, 0..1.
    pub occluded_fraction: f64,
}

/// Labels of the objects in the camera view, nearest first.
pub fn frame_labels(camera: &CameraModel, snapshot: &Snapshot, scan: &Scan, frame: &CameraFrame, rules: &LabelRules) -> Vec<SimLabel> {
    let lidar = camera.lidar_pose(snapshot);
    let calib = camera.calibration();
    let counts: BTreeMap<u32, usize> = scan.object_point_counts();
    let mut out = Vec::new();
    for o in &snapshot.objects {
        let b = lidar.box_to_local(&o.label);
        let Some(proj) = project_box_to_image(&b, calib, camera.width(), camera.height()) else { continue };
        let lidar_points = counts.get(&o.id).copied().unwrap_or(0);
        let (covered, visible) = silhouette(camera, frame, o, &lidar, proj.bbox_clipped);
        let hidden = if covered == 0 { 1.0 } else { 1.0 - visible as f64 / covered as f64 };
        if visible == 0 && lidar_points == 0 {
            continue;
        }
        let occluded = if hidden < PARTLY_OCCLUDED {
            0
        } else if hidden < LARGELY_OCCLUDED {
            1
        } else {
            2
        };
        let height = proj.bbox_clipped[3] - proj.bbox_clipped[1];
        let label = if lidar_points < rules.min_lidar_points || height < rules.min_height_px || visible == 0 {
            ObjectLabel::dont_care(proj.bbox_clipped)
        } else {
            let class: ObjectClass = o.class.kitti();
            ObjectLabel::from_lidar_box(class, &b, calib, proj.bbox_clipped, proj.truncation, occluded)
        };
        out.push(SimLabel { id: o.id, label, lidar_box: b, lidar_points, occluded_fraction: hidden.clamp(0.0, 1.0) });
    }
    out.sort_by(|a, b| {
        let d = |l: &SimLabel| l.lidar_box.center[0].hypot(l.lidar_box.center[1]);
        d(a).total_cmp(&d(b))
    });
    out
}

/// (silhouette samples, samples where the rendered frame shows the object)
/// over a grid in the clipped 2D box.
fn silhouette(
    camera: &CameraModel,
    frame: &CameraFrame,
    o: &super::scene::SceneObject,
    lidar: &super::scene::Pose,
    bbox: [f64; 4],
) -> (usize, usize) {
    const GRID: f64 = 64.0;
    let [x1, y1, x2, y2] = bbox;
    let step_u = ((x2 - x1) / GRID).max(1.0);
    let step_v = ((y2 - y1) / GRID).max(1.0);
    let (mut covered, mut visible) = (0, 0);
    let mut v = y1.ceil();
    while v <= y2 {
        let mut u = x1.ceil();
        while u <= x2 {
            let (pu, pv) = (u as u32, v as u32);
            if camera.body_covers(&o.body, lidar, pu, pv) {
                covered += 1;
                if frame.object_at(pu, pv) == o.id {
                    visible += 1;
                }
            }
            u += step_u;
        }
        v += step_v;
    }
    (covered, visible)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::kitti::{parse_labels, Difficulty};
    use crate::dataset::sim::{Lidar, LidarConfig, SceneConfig};
    use crate::geometry::wrap_angle;

    #[test]
    fn labels_map_back_to_the_scene_boxes_through_the_calibration() {
        let camera = CameraModel::kitti();
        let lidar = Lidar::new(LidarConfig::hdl64e()).expect("preset");
        let mut checked = 0;
        let mut levels = [0usize; 3];
        for seed in [11, 12] {
            let scene = SceneConfig::default().generate(seed).expect("scene");
            let snap = scene.snapshot(0.0);
            let scan = lidar.scan(&scene, &snap, seed);
            let frame = camera.render(&scene, &snap);
            let labels = frame_labels(&camera, &snap, &scan, &frame, &LabelRules::default());
            assert!(!labels.is_empty());
            for l in labels.iter().filter(|l| l.label.class != ObjectClass::DontCare) {
                levels[l.label.occluded as usize] += 1;
                // Exact before rounding.
                let back = l.label.to_lidar_box(camera.calibration());
                for k in 0..3 {
                    assert!((back.center[k] - l.lidar_box.center[k]).abs() < 1e-9, "{back:?} vs {:?}", l.lidar_box);
                }
                // After KITTI's 2-decimal text: location ±5 mm per camera axis,
                // rotation_y ±0.005 rad (the text cannot do better).
                let text = l.label.to_kitti_line();
                let read = parse_labels(&text).expect("parses").remove(0);
                let back = read.to_lidar_box(camera.calibration());
                for k in 0..3 {
                    assert!((back.center[k] - l.lidar_box.center[k]).abs() < 1e-2, "{text}: {back:?} vs {:?}", l.lidar_box);
                    assert!((back.size[k] - l.lidar_box.size[k]).abs() <= 5e-3 + 1e-9);
                }
                assert!(wrap_angle(back.yaw - l.lidar_box.yaw).abs() <= 5e-3 + 1e-9, "{text}");
                assert!(l.label.bbox[0] >= 0.0 && l.label.bbox[2] <= 1241.0 && l.label.bbox[3] <= 374.0);
                assert!((0.0..=1.0).contains(&l.label.truncated));
                checked += 1;
            }
        }
        assert!(checked >= 5, "only {checked} labelled objects");
        assert!(levels[0] > 0, "no fully visible object: {levels:?}");
        let _ = Difficulty::Easy;
    }
}
