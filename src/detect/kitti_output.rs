//! Detections as KITTI `label_2` lines (with the score column), so they can
//! be evaluated by the KITTI protocol or read by any KITTI tool. The 2D box
//! is the projected 3D box clipped to the image, as the devkit's detections
//! are expected to be; a detection that does not reach the image is dropped
//! (KITTI scores only what the camera sees).

use super::postprocess::Detection;
use crate::dataset::kitti::{project_box_to_image, Calibration, ObjectClass, ObjectLabel};
use std::str::FromStr;

/// `class_names[d.class]` must be a KITTI type name; others are skipped.
pub fn detections_to_labels(dets: &[Detection], class_names: &[String], calib: &Calibration, width: u32, height: u32) -> Vec<ObjectLabel> {
    dets.iter()
        .filter_map(|d| {
            let class = ObjectClass::from_str(class_names.get(d.class)?).ok()?;
            let proj = project_box_to_image(&d.bbox, calib, width, height)?;
            let mut label = ObjectLabel::from_lidar_box(class, &d.bbox, calib, proj.bbox_clipped, proj.truncation, 0);
            label.score = Some(d.score as f64);
            Some(label)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::Box3D;

    #[test]
    fn labels_round_trip_the_box_and_drop_unseen_ones() {
        let calib = Calibration::kitti_like_default();
        let names = vec!["Car".to_string(), "Pedestrian".to_string(), "NotAKittiType".to_string()];
        let ahead = Box3D { center: [15.0, 1.0, -0.9], size: [3.9, 1.6, 1.5], yaw: 0.4 };
        let behind = Box3D { center: [-15.0, 1.0, -0.9], ..ahead };
        let dets = [
            Detection { bbox: ahead, class: 0, score: 0.9 },
            Detection { bbox: behind, class: 1, score: 0.8 },
            Detection { bbox: ahead, class: 2, score: 0.7 },
        ];
        let labels = detections_to_labels(&dets, &names, &calib, 1242, 375);
        assert_eq!(labels.len(), 1);
        assert_eq!(labels[0].class, ObjectClass::Car);
        assert!((labels[0].score.unwrap() - 0.9).abs() < 1e-6);
        let back = labels[0].to_lidar_box(&calib);
        assert!(crate::detect::iou::iou_3d(&back, &ahead) > 0.999);
        let parsed = ObjectLabel::parse_line(&labels[0].to_kitti_line()).unwrap();
        assert!((parsed.score.unwrap() - 0.9).abs() < 1e-4, "the score column is written");
    }
}
