//! The `~/relabel` service (eloss_perception_msgs/srv/RelabelObjects): GDC
//! labels for objects in a camera image. Requests are handled off the spin
//! thread; every failure is an error response, never a crash.
//!
//! Explicit requests carry the image and boxes: 2D boxes in pixels, or 3D
//! boxes in the optical frame of the request's CameraInfo (x right, y down,
//! z forward), taken as upright boxes (yaw about the camera's vertical axis).
//! Requests by detection id need the detector's frame history (not yet in
//! the node) and are answered with an error saying so.

use super::convert;
use super::params::GdcParams;
use crate::dataset::kitti::Calibration;
use crate::gdc::backbone::EmbeddingRecipe;
use crate::gdc::bank::GaussianBank;
use crate::gdc::classifier::GdcClassifier;
use crate::gdc::crops::{crop_box, crop_pixels, CropConfig};
use crate::gdc::encoder::load_encoder;
use crate::geometry::Box3D;
use crate::image::RgbImage;
use r2r::eloss_perception_msgs::msg::{ClassProbability, ObjectLabel};
use r2r::eloss_perception_msgs::srv::RelabelObjects;
use std::path::Path;

/// The node's GDC state: a classifier, or why there is none.
pub type Gdc = Result<(GdcClassifier, CropConfig), String>;

/// Loads the bank and the backbone named by the parameters.
pub fn load(p: &GdcParams) -> Gdc {
    if p.bank_path.is_empty() {
        return Err("GDC is off: set gdc.bank_path (and gdc.backbone_path) to a bank built with `eloss gdc bank`".into());
    }
    let bank = GaussianBank::load(&p.bank_path).map_err(|e| format!("GDC bank: {e}"))?;
    let recipe = EmbeddingRecipe::from_id(&bank.spec().recipe)
        .ok_or_else(|| format!("GDC bank {}: unknown embedding recipe {:?}", p.bank_path, bank.spec().recipe))?;
    let device = tch::Device::cuda_if_available();
    let encoder = load_encoder(Path::new(&p.backbone_path), recipe, device).map_err(|e| format!("GDC backbone: {e}"))?;
    let mut classifier = GdcClassifier::new(encoder, bank).map_err(|e| e.to_string())?;
    classifier.temperature = p.temperature;
    classifier.batch = p.batch_size.max(1) as usize;
    Ok((classifier, CropConfig { min_size_px: p.min_crop_px, ..Default::default() }))
}

fn failure(error: String) -> RelabelObjects::Response {
    RelabelObjects::Response { success: false, error, labels: vec![] }
}

/// LiDAR-style box (x forward, y left, z up) of an upright box given in a
/// camera optical frame, and the optical-frame camera it is seen by.
fn optical_box_to_vehicle(d: &r2r::eloss_perception_msgs::msg::Detection3D) -> Box3D {
    let (p, q, s) = (&d.pose.position, &d.pose.orientation, &d.size);
    // the box's own x axis rotated by q, in optical coordinates
    let ax = [1.0 - 2.0 * (q.y * q.y + q.z * q.z), 2.0 * (q.x * q.y + q.w * q.z), 2.0 * (q.x * q.z - q.w * q.y)];
    // optical (x right, y down, z forward) → vehicle (x forward, y left, z up)
    let to_vehicle = |v: [f64; 3]| [v[2], -v[0], -v[1]];
    let axis = to_vehicle(ax);
    Box3D { center: to_vehicle([p.x, p.y, p.z]), size: [s.x, s.y, s.z], yaw: axis[1].atan2(axis[0]) }
}

/// The vehicle → optical rotation as a 3x4 extrinsic, for [`Calibration::from_camera`].
const VEHICLE_TO_OPTICAL: [f64; 12] = [0.0, -1.0, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0];

pub fn handle(gdc: &Gdc, req: &RelabelObjects::Request) -> RelabelObjects::Response {
    let (classifier, crop_cfg) = match gdc {
        Ok(g) => g,
        Err(e) => return failure(e.clone()),
    };
    if req.source == RelabelObjects::Request::SOURCE_RECENT_FRAME as u8 {
        return failure("relabelling detections by id needs the detector's frame history, which this node does not run yet; send source=SOURCE_EXPLICIT_IMAGE with the image and boxes".into());
    }
    if req.source != RelabelObjects::Request::SOURCE_EXPLICIT_IMAGE as u8 {
        return failure(format!("unknown source {}", req.source));
    }
    let image: RgbImage = match convert::decode_image(&req.image) {
        Ok(i) => i,
        Err(e) => return failure(format!("image: {e}")),
    };
    let mut crops = Vec::new();
    let mut outcome: Vec<Result<usize, String>> = Vec::new();
    let mut push = |r: Result<crate::gdc::crops::Crop, crate::gdc::crops::CropSkip>| match r {
        Ok(c) => {
            outcome.push(Ok(crops.len()));
            crops.push(c.image);
        }
        Err(e) => outcome.push(Err(e.to_string())),
    };
    for b in &req.boxes_2d {
        push(crop_pixels(&image, [b.x_min as f64, b.y_min as f64, b.x_max as f64, b.y_max as f64], crop_cfg));
    }
    if !req.boxes_3d.is_empty() {
        let camera = match convert::decode_camera_info(&req.camera_info) {
            Ok(c) => c,
            Err(e) => return failure(format!("boxes_3d need a valid camera_info: {e}")),
        };
        let calib = Calibration::from_camera(camera.p, VEHICLE_TO_OPTICAL);
        for d in &req.boxes_3d {
            push(crop_box(&image, &optical_box_to_vehicle(d), &calib, crop_cfg));
        }
    }
    let dists = match classifier.classify(&crops, &req.candidate_classes) {
        Ok(d) => d,
        Err(e) => return failure(e.to_string()),
    };
    let labels = outcome
        .into_iter()
        .enumerate()
        .map(|(i, o)| match o {
            Ok(k) => ObjectLabel {
                object_id: i as u32,
                valid: true,
                error: String::new(),
                label: dists[k].first().map(|(n, _)| n.clone()).unwrap_or_default(),
                probabilities: dists[k]
                    .iter()
                    .map(|(n, p)| ClassProbability { class_name: n.clone(), probability: *p as f32 })
                    .collect(),
            },
            Err(e) => ObjectLabel { object_id: i as u32, valid: false, error: e, ..Default::default() },
        })
        .collect();
    RelabelObjects::Response { success: true, error: String::new(), labels }
}
