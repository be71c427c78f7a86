//! Detections as ROS messages: the standard `vision_msgs/Detection3DArray`
//! (what trackers, fusion nodes and the vision_msgs RViz plugin read), our
//! richer `eloss_perception_msgs/Detection3DArray` (GDC labels), optionally
//! Autoware's `autoware_perception_msgs/DetectedObjects`, and a
//! `visualization_msgs/MarkerArray` for RViz (a translucent box and a
//! "Class 0.87" label per object, coloured by class). Each marker array
//! starts with one DELETEALL with an empty namespace: rviz2 applies a
//! DELETEALL only to the namespace it names, and to all of them when the
//! namespace is empty, so boxes and labels of the previous frame vanish even
//! when the new frame has fewer objects; the lifetime clears them if the node
//! stops.

use crate::detect::postprocess::Detection;
use r2r::builtin_interfaces::msg::Duration as RosDuration;
use crate::eloss::monitor::MonitorReport;
use r2r::eloss_perception_msgs::msg::{Detection3D, Detection3DArray, ElossReport};
use r2r::geometry_msgs::msg::{Point, Pose, Quaternion, Vector3};
use r2r::std_msgs::msg::{ColorRGBA, Header};
use r2r::visualization_msgs::msg::{Marker, MarkerArray};
use r2r::autoware_perception_msgs::msg as autoware;
use r2r::vision_msgs::msg as vision;

const CUBE: i32 = 1;
const TEXT_VIEW_FACING: i32 = 9;
const ADD: i32 = 0;
const DELETEALL: i32 = 3;

fn yaw_pose(center: [f64; 3], yaw: f64) -> Pose {
    let (s, c) = (yaw / 2.0).sin_cos();
    Pose { position: Point { x: center[0], y: center[1], z: center[2] }, orientation: Quaternion { x: 0.0, y: 0.0, z: s, w: c } }
}

pub fn detection_array(header: &Header, model_id: &str, dets: &[Detection], class_names: &[String]) -> Detection3DArray {
    let detections = dets
        .iter()
        .enumerate()
        .map(|(i, d)| {
            // GDC fields stay empty until auto-relabel fills them (relabel::attach_labels)
            let (gdc_unknown, gdc_nearest_class, gdc_nearest_distance, gdc_nearest_threshold) = super::relabel::NO_OPEN_SET_TEST;
            Detection3D {
                id: i as u32,
                pose: yaw_pose(d.bbox.center, d.bbox.yaw),
                size: Vector3 { x: d.bbox.size[0], y: d.bbox.size[1], z: d.bbox.size[2] },
                yaw: d.bbox.yaw,
                class_id: d.class as u16,
                class_name: class_names.get(d.class).cloned().unwrap_or_default(),
                score: d.score,
                gdc_unknown,
                gdc_nearest_class,
                gdc_nearest_distance,
                gdc_nearest_threshold,
                ..Default::default()
            }
        })
        .collect();
    Detection3DArray { header: header.clone(), model_id: model_id.to_string(), detections, anomaly_score: f64::NAN, anomaly: false, on_alarm: String::new(), score_factor: 1.0 }
}

/// The standard message: per detection one hypothesis (the detector's class
/// name as `class_id`, its score), the box as `bbox` and the hypothesis pose,
/// and the detection id (unique within the frame, as in our message and
/// `~/relabel`) as the string `id`.
pub fn vision_detections(ours: &Detection3DArray) -> vision::Detection3DArray {
    let detections = ours
        .detections
        .iter()
        .map(|d| vision::Detection3D {
            header: ours.header.clone(),
            results: vec![vision::ObjectHypothesisWithPose {
                hypothesis: vision::ObjectHypothesis { class_id: d.class_name.clone(), score: d.score as f64 },
                pose: r2r::geometry_msgs::msg::PoseWithCovariance { pose: d.pose.clone(), covariance: vec![0.0; 36] },
            }],
            bbox: vision::BoundingBox3D { center: d.pose.clone(), size: d.size.clone() },
            id: d.id.to_string(),
        })
        .collect();
    vision::Detection3DArray { header: ours.header.clone(), detections }
}

/// Autoware's label for one of our class names (KITTI's and the simulator's
/// classes); anything else is UNKNOWN.
pub fn autoware_label(class_name: &str) -> u8 {
    match class_name {
        "Car" | "Van" => autoware::ObjectClassification::CAR as u8,
        "Truck" => autoware::ObjectClassification::TRUCK as u8,
        "Pedestrian" | "Person_sitting" => autoware::ObjectClassification::PEDESTRIAN as u8,
        "Cyclist" => autoware::ObjectClassification::BICYCLE as u8,
        _ => autoware::ObjectClassification::UNKNOWN as u8,
    }
}

/// Autoware's message: existence probability = score, one classification
/// (probability 1, as Autoware's own LiDAR detectors fill it), an oriented
/// bounding box, the heading known (the detector predicts the direction).
pub fn autoware_objects(ours: &Detection3DArray) -> autoware::DetectedObjects {
    let objects = ours
        .detections
        .iter()
        .map(|d| autoware::DetectedObject {
            existence_probability: d.score,
            classification: vec![autoware::ObjectClassification { label: autoware_label(&d.class_name), probability: 1.0 }],
            kinematics: autoware::DetectedObjectKinematics {
                pose_with_covariance: r2r::geometry_msgs::msg::PoseWithCovariance { pose: d.pose.clone(), covariance: vec![0.0; 36] },
                has_position_covariance: false,
                orientation_availability: autoware::DetectedObjectKinematics::AVAILABLE as u8,
                has_twist: false,
                has_twist_covariance: false,
                ..Default::default()
            },
            shape: autoware::Shape { type_: autoware::Shape::BOUNDING_BOX as u8, dimensions: d.size.clone(), ..Default::default() },
        })
        .collect();
    autoware::DetectedObjects { header: ours.header.clone(), objects }
}

/// The monitor's report as the message (`model_id` as in the detection array).
pub fn eloss_report(header: &Header, model_id: &str, r: &MonitorReport) -> ElossReport {
    ElossReport {
        header: header.clone(),
        model_id: model_id.to_string(),
        calibration_id: r.calibration_id.clone(),
        estimator: r.estimator.to_string(),
        eloss: r.eloss,
        layer_entropies: r.layer_entropies.clone(),
        block_layer_counts: r.block_layer_counts.clone(),
        calibrated: r.calibrated,
        anomaly_score: r.anomaly_score,
        threshold: r.threshold,
        deviation_factor: r.deviation_factor,
        mahalanobis_distance: r.mahalanobis_distance,
        baseline_eloss: r.baseline_eloss,
        baseline_factor: r.baseline_factor,
        anomaly: r.anomaly,
        anomaly_type: r.anomaly_type.clone(),
        anomalous_frame: r.anomalous_frame,
        compute_time_ms: r.compute_time.as_secs_f64() * 1e3,
    }
}

/// Car blue, Pedestrian red, Cyclist green, then a fixed palette.
pub fn class_colour(class: usize) -> [f32; 3] {
    const PALETTE: [[f32; 3]; 6] = [[0.2, 0.5, 1.0], [1.0, 0.25, 0.2], [0.2, 0.9, 0.3], [1.0, 0.8, 0.1], [0.8, 0.3, 1.0], [0.1, 0.9, 0.9]];
    PALETTE[class % PALETTE.len()]
}

pub fn marker_array(header: &Header, dets: &[Detection], class_names: &[String], lifetime_s: f64) -> MarkerArray {
    let lifetime = RosDuration { sec: lifetime_s.trunc() as i32, nanosec: (lifetime_s.fract() * 1e9) as u32 };
    let mut markers = vec![Marker { header: header.clone(), ns: String::new(), action: DELETEALL, ..Default::default() }];
    for (i, d) in dets.iter().enumerate() {
        let [r, g, b] = class_colour(d.class);
        let name = class_names.get(d.class).map(String::as_str).unwrap_or("?");
        let base = Marker { header: header.clone(), action: ADD, lifetime: lifetime.clone(), ..Default::default() };
        markers.push(Marker {
            ns: "eloss_boxes".into(),
            id: i as i32,
            type_: CUBE,
            pose: yaw_pose(d.bbox.center, d.bbox.yaw),
            scale: Vector3 { x: d.bbox.size[0], y: d.bbox.size[1], z: d.bbox.size[2] },
            color: ColorRGBA { r, g, b, a: 0.45 },
            ..base.clone()
        });
        let top = [d.bbox.center[0], d.bbox.center[1], d.bbox.center[2] + d.bbox.size[2] / 2.0 + 0.4];
        markers.push(Marker {
            ns: "eloss_labels".into(),
            id: i as i32,
            type_: TEXT_VIEW_FACING,
            pose: yaw_pose(top, 0.0),
            scale: Vector3 { x: 0.0, y: 0.0, z: 0.6 },
            color: ColorRGBA { r, g, b, a: 1.0 },
            text: format!("{name} {:.2}", d.score),
            ..base
        });
    }
    MarkerArray { markers }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::Box3D;

    #[test]
    fn boxes_and_markers_carry_the_detection() {
        let header = Header { frame_id: "velodyne".into(), ..Default::default() };
        let names = vec!["Car".to_string(), "Pedestrian".to_string()];
        let dets = [Detection { bbox: Box3D { center: [10.0, -2.0, -0.8], size: [3.9, 1.6, 1.5], yaw: std::f64::consts::FRAC_PI_2 }, class: 1, score: 0.75 }];
        let arr = detection_array(&header, "m@1", &dets, &names);
        assert_eq!(arr.header.frame_id, "velodyne");
        let d = &arr.detections[0];
        assert_eq!((d.class_name.as_str(), d.class_id, d.score), ("Pedestrian", 1, 0.75));
        let q = &d.pose.orientation;
        assert!((2.0 * q.z.atan2(q.w) - d.yaw).abs() < 1e-12, "quaternion encodes the yaw");
        let m = marker_array(&header, &dets, &names, 0.25);
        assert_eq!(m.markers.len(), 3);
        assert_eq!(m.markers[0].action, DELETEALL);
        assert_eq!(m.markers[0].ns, "", "an empty namespace: rviz2 clears every namespace");
        assert!(m.markers[1..].iter().all(|k| k.action == ADD && !k.ns.is_empty()));
        assert_eq!(m.markers[1].type_, CUBE);
        assert_eq!((m.markers[1].scale.x, m.markers[1].lifetime.nanosec), (3.9, 250_000_000));
        assert_eq!(m.markers[2].text, "Pedestrian 0.75");
        assert_eq!(m.markers[1].color.r, class_colour(1)[0]);

        let v = vision_detections(&arr);
        assert_eq!(v.header.frame_id, "velodyne");
        let h = &v.detections[0].results[0];
        assert_eq!((h.hypothesis.class_id.as_str(), h.hypothesis.score), ("Pedestrian", 0.75));
        assert_eq!(v.detections[0].id, "0");
        assert_eq!(v.detections[0].bbox.size.x, 3.9);
        assert_eq!(v.detections[0].bbox.center, d.pose);
        assert_eq!(h.pose.covariance.len(), 36);

        let a = autoware_objects(&arr);
        let o = &a.objects[0];
        assert_eq!((o.existence_probability, o.classification[0].label), (0.75, autoware::ObjectClassification::PEDESTRIAN as u8));
        assert_eq!(o.shape.dimensions.z, 1.5);
        assert_eq!(o.kinematics.pose_with_covariance.pose, d.pose);
    }

    #[test]
    fn autoware_labels_follow_the_issue_mapping() {
        assert_eq!(autoware_label("Car"), autoware::ObjectClassification::CAR as u8);
        assert_eq!(autoware_label("Pedestrian"), autoware::ObjectClassification::PEDESTRIAN as u8);
        assert_eq!(autoware_label("Cyclist"), autoware::ObjectClassification::BICYCLE as u8);
        assert_eq!(autoware_label("traffic_cone"), autoware::ObjectClassification::UNKNOWN as u8);
    }
}
