//! The `~/relabel` service (eloss_perception_msgs/srv/RelabelObjects): GDC
//! labels for objects in a camera image. Requests are handled off the spin
//! thread; every failure is an error response, never a crash.
//!
//! Explicit requests carry the image and boxes: 2D boxes in pixels, or 3D
//! boxes in the optical frame of the request's CameraInfo (x right, y down,
//! z forward), taken as upright boxes (yaw about the camera's vertical axis).
//! Requests by detection id (SOURCE_RECENT_FRAME) name a frame of the node's
//! [`FrameHistory`](crate::gdc::frame_history::FrameHistory) and ids in it;
//! the node looks them up (with the time-matched image) and passes the
//! selection and the camera calibration (CameraInfo P + `camera.*`
//! extrinsic) here. The same crop → classify path serves `gdc.auto_relabel`
//! ([`attach_labels`]).

use super::convert;
use super::params::GdcParams;
use crate::dataset::kitti::Calibration;
use crate::gdc::backbone::EmbeddingRecipe;
use crate::gdc::bank::{EmbeddingSpec, FitOptions, GaussianBank};
use crate::gdc::classifier::{check_request_size, Answer, Distribution, GdcClassifier};
use crate::gdc::crops::{crop_box, crop_pixels, CropConfig, CropSkip};
use crate::gdc::frame_history::Selection;
use crate::gdc::encoder::load_encoder;
use crate::geometry::Box3D;
use crate::image::RgbImage;
use r2r::eloss_perception_msgs::msg::{ClassProbability, Detection3D, ObjectLabel};
use r2r::eloss_perception_msgs::srv::RelabelObjects;
use std::path::Path;

/// The node's GDC state: a classifier, or why there is none.
pub type Gdc = Result<(GdcClassifier, CropConfig), String>;

/// Loads the bank and the backbone named by the parameters.
/// Without a bank but with a generator and a backbone, the bank starts
/// empty (full covariance, default ridge; the backbone's default recipe) and
/// fills with run-time classes.
pub fn load(p: &GdcParams) -> Gdc {
    let zero_shot = p.bank_path.is_empty() && !p.generator.path.is_empty() && !p.backbone_path.is_empty();
    if p.bank_path.is_empty() && !zero_shot {
        return Err("GDC is off: set gdc.bank_path (and gdc.backbone_path) to a bank built with `eloss gdc bank`, or gdc.generator.path and gdc.backbone_path to start from class names".into());
    }
    let backbone = Path::new(&p.backbone_path);
    let (bank, recipe) = if zero_shot {
        (None, EmbeddingRecipe::default_for(backbone))
    } else {
        let bank = GaussianBank::load(&p.bank_path).map_err(|e| format!("GDC bank: {e}"))?;
        let recipe = EmbeddingRecipe::from_id(&bank.spec().recipe)
            .ok_or_else(|| format!("GDC bank {}: unknown embedding recipe {:?}", p.bank_path, bank.spec().recipe))?;
        (Some(bank), recipe)
    };
    let device = crate::torch_cuda::cuda_if_available();
    let encoder = load_encoder(backbone, recipe, device).map_err(|e| format!("GDC backbone: {e}"))?;
    let bank = match bank {
        Some(b) => b,
        None => GaussianBank::empty(EmbeddingSpec::new(encoder.backbone_id(), recipe.id()), FitOptions::default()).map_err(|e| e.to_string())?,
    };
    let mut classifier = GdcClassifier::new(encoder, bank).map_err(|e| e.to_string())?;
    apply_settings(&mut classifier, p);
    classifier.batch = p.batch_size.max(1) as usize;
    Ok((classifier, CropConfig { min_size_px: p.min_crop_px, ..Default::default() }))
}

/// The run-time settings of the classifier (`gdc.temperature`,
/// `gdc.unknown_rate`, validated by the parameters), applied before each
/// request and auto-relabelled frame so a change takes effect at once.
pub fn apply_settings(classifier: &mut GdcClassifier, p: &GdcParams) {
    classifier.temperature = p.temperature;
    classifier.unknown_rate = p.unknown_rate;
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

fn probabilities(d: &Distribution) -> Vec<ClassProbability> {
    d.iter().map(|(n, p)| ClassProbability { class_name: n.clone(), probability: *p as f32 }).collect()
}

fn log_unknown(a: &Answer) {
    if let (true, Some(n)) = (a.is_unknown(), &a.nearest) {
        tracing::debug!(nearest = n.class, distance = n.distance, threshold = n.threshold, "GDC: crop outside every class, answered unknown");
    }
}

/// The open-set fields of both messages (unknown, nearest class, distance,
/// threshold) when there is no test: no answer, or a bank without
/// calibration data.
pub const NO_OPEN_SET_TEST: (bool, String, f32, f32) = (false, String::new(), f32::NAN, f32::NAN);

/// The open-set fields of both messages for an answer.
fn open_set(a: &Answer) -> (bool, String, f32, f32) {
    match &a.nearest {
        Some(n) => (a.is_unknown(), n.class.clone(), n.distance as f32, n.threshold as f32),
        None => NO_OPEN_SET_TEST,
    }
}

/// One label per object: `ids[i]` is object i's id, `results[i]` its answer
/// or why it has none. A crop outside every class is labelled `unknown`.
fn labels(ids: impl IntoIterator<Item = u32>, results: Vec<Result<Answer, CropSkip>>) -> Vec<ObjectLabel> {
    ids.into_iter()
        .zip(results)
        .map(|(id, r)| match r {
            Ok(a) => {
                log_unknown(&a);
                let (unknown, nearest_class, nearest_distance, nearest_threshold) = open_set(&a);
                ObjectLabel {
                    object_id: id,
                    valid: true,
                    error: String::new(),
                    probabilities: probabilities(&a.distribution),
                    label: a.label,
                    unknown,
                    nearest_class,
                    nearest_distance,
                    nearest_threshold,
                }
            }
            Err(e) => {
                let (unknown, nearest_class, nearest_distance, nearest_threshold) = NO_OPEN_SET_TEST;
                ObjectLabel {
                    object_id: id,
                    valid: false,
                    error: e.to_string(),
                    unknown,
                    nearest_class,
                    nearest_distance,
                    nearest_threshold,
                    ..Default::default()
                }
            }
        })
        .collect()
}

/// Fills the GDC fields of `dets` (has_gdc, gdc_label, gdc_probabilities and
/// the open-set test: gdc_unknown, gdc_nearest_*) from their crops
/// (`dets[i]` is the box `boxes[i]`); boxes without a crop keep has_gdc =
/// false. Returns the number of crops classified.
pub fn attach_labels(
    classifier: &GdcClassifier,
    crop_cfg: &CropConfig,
    image: &RgbImage,
    calib: &Calibration,
    boxes: &[Box3D],
    dets: &mut [Detection3D],
) -> Result<usize, String> {
    let results = classifier.classify_lazily(boxes.len(), |i| crop_box(image, &boxes[i], calib, crop_cfg), &[]).map_err(|e| e.to_string())?;
    let n = results.iter().filter(|r| r.is_ok()).count();
    for (d, r) in dets.iter_mut().zip(results) {
        if let Ok(a) = r {
            log_unknown(&a);
            d.has_gdc = true;
            d.gdc_probabilities = probabilities(&a.distribution);
            (d.gdc_unknown, d.gdc_nearest_class, d.gdc_nearest_distance, d.gdc_nearest_threshold) = open_set(&a);
            d.gdc_label = a.label;
        }
    }
    Ok(n)
}

/// Answers a request. `recent(stamp_ns, ids)` looks up a SOURCE_RECENT_FRAME
/// request in the node's history (stamp 0 = the newest frame) and returns
/// the selection with the camera calibration, or why it cannot. A request
/// over the limits of [`check_request_size`] (256 boxes, 1024 candidates) is
/// refused before its image is decoded or a crop is cut; crops are cut and
/// embedded one batch at a time ([`GdcClassifier::classify_lazily`]).
pub fn handle(
    gdc: &Gdc,
    req: &RelabelObjects::Request,
    recent: impl FnOnce(i64, &[u32]) -> Result<(Selection, Calibration), String>,
) -> RelabelObjects::Response {
    let (classifier, crop_cfg) = match gdc {
        Ok(g) => g,
        Err(e) => return failure(e.clone()),
    };
    if let Err(e) = check_request_size(0, req.candidate_classes.len()) {
        return failure(e);
    }
    if req.source == RelabelObjects::Request::SOURCE_RECENT_FRAME as u8 {
        // repeated ids are one object each (the history's lookup drops repeats)
        let (selection, calib) = match recent(convert::stamp_ns(&req.frame_stamp), &req.detection_ids) {
            Ok(s) => s,
            Err(e) => return failure(e),
        };
        if let Err(e) = check_request_size(selection.boxes.len(), 0) {
            return failure(e);
        }
        let image = &selection.image.image;
        let boxes = &selection.boxes;
        return match classifier.classify_lazily(boxes.len(), |i| crop_box(image, &boxes[i].1, &calib, crop_cfg), &req.candidate_classes) {
            Ok(results) => RelabelObjects::Response { success: true, error: String::new(), labels: labels(boxes.iter().map(|(id, _)| *id), results) },
            Err(e) => failure(e.to_string()),
        };
    }
    if req.source != RelabelObjects::Request::SOURCE_EXPLICIT_IMAGE as u8 {
        return failure(format!("unknown source {}", req.source));
    }
    // refused before the image is decoded: the limit bounds the work, not just the answer
    let (n_2d, n_3d) = (req.boxes_2d.len(), req.boxes_3d.len());
    if let Err(e) = check_request_size(n_2d + n_3d, 0) {
        return failure(e);
    }
    let image: RgbImage = match convert::decode_image(&req.image) {
        Ok(i) => i,
        Err(e) => return failure(format!("image: {e}")),
    };
    let calib = if n_3d == 0 {
        None
    } else {
        match convert::decode_camera_info(&req.camera_info) {
            Ok(camera) => Some(Calibration::from_camera(camera.p, VEHICLE_TO_OPTICAL)),
            Err(e) => return failure(format!("boxes_3d need a valid camera_info: {e}")),
        }
    };
    let crop = |i: usize| match (req.boxes_2d.get(i), &calib) {
        (Some(b), _) => crop_pixels(&image, [b.x_min as f64, b.y_min as f64, b.x_max as f64, b.y_max as f64], crop_cfg),
        (None, Some(calib)) => crop_box(&image, &optical_box_to_vehicle(&req.boxes_3d[i - n_2d]), calib, crop_cfg),
        (None, None) => Err(CropSkip::NotVisible), // unreachable: 3D boxes come with a calibration
    };
    match classifier.classify_lazily(n_2d + n_3d, crop, &req.candidate_classes) {
        Ok(results) => {
            let n = results.len() as u32;
            RelabelObjects::Response { success: true, error: String::new(), labels: labels(0..n, results) }
        }
        Err(e) => failure(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_keep_request_order_ids_and_skip_reasons() {
        let dist = |a: &str, p: f64, b: &str| Answer {
            label: a.to_string(),
            distribution: vec![(a.to_string(), p), (b.to_string(), 1.0 - p)],
            nearest: None,
        };
        let out = labels([4, 0, 7], vec![Ok(dist("car", 0.75, "tree")), Err(CropSkip::NotVisible), Ok(dist("tree", 0.5, "car"))]);
        assert_eq!(out.iter().map(|l| l.object_id).collect::<Vec<_>>(), [4, 0, 7]);
        assert!(out[0].valid && out[0].label == "car" && out[0].error.is_empty());
        assert_eq!(out[0].probabilities.iter().map(|p| p.probability).sum::<f32>(), 1.0);
        assert!(!out[1].valid && out[1].error.contains("behind the camera") && out[1].probabilities.is_empty());
        assert_eq!(out[2].label, "tree");
        // a crop outside every class keeps "unknown" as its label, with the posterior given
        let nearest = Some(crate::gdc::classifier::Nearest { class: "car".into(), distance: 40.0, threshold: 9.0 });
        let unknown = Answer { label: crate::gdc::bank::UNKNOWN_LABEL.into(), nearest, ..dist("car", 0.9, "tree") };
        let out = labels([1], vec![Ok(unknown)]);
        assert!(out[0].valid && out[0].label == "unknown" && out[0].probabilities.len() == 2, "{:?}", out[0]);
        // ... and says so, with the nearest class, its distance and threshold (issue 16)
        let l = &out[0];
        assert!(l.unknown, "{l:?}");
        assert_eq!((l.nearest_class.as_str(), l.nearest_distance, l.nearest_threshold), ("car", 40.0, 9.0));
        // a class inside its threshold is not unknown; a bank without calibration data has no open-set test
        let near = Some(crate::gdc::classifier::Nearest { class: "car".into(), distance: 3.5, threshold: f64::INFINITY });
        let known = labels([2, 3], vec![Ok(Answer { nearest: near, ..dist("car", 0.9, "tree") }), Ok(dist("car", 0.9, "tree"))]);
        assert!(!known[0].unknown && known[0].label == "car" && known[0].nearest_class == "car", "{:?}", known[0]);
        assert_eq!((known[0].nearest_distance, known[0].nearest_threshold), (3.5, f32::INFINITY));
        assert!(!known[1].unknown && known[1].nearest_class.is_empty() && known[1].nearest_distance.is_nan() && known[1].nearest_threshold.is_nan());
        assert!(skipped_has_no_open_set_test(&labels([5], vec![Err(CropSkip::NotVisible)])[0]));
    }

    fn skipped_has_no_open_set_test(l: &ObjectLabel) -> bool {
        !l.valid && !l.unknown && l.nearest_class.is_empty() && l.nearest_distance.is_nan() && l.nearest_threshold.is_nan()
    }

    #[test]
    fn requests_fail_cleanly_without_gdc_or_a_frame() {
        let off: Gdc = Err("GDC is off".into());
        let req = RelabelObjects::Request { source: RelabelObjects::Request::SOURCE_RECENT_FRAME as u8, ..Default::default() };
        let r = handle(&off, &req, |_, _| unreachable!("GDC off answers first"));
        assert!(!r.success && r.error == "GDC is off");
    }

    fn explicit_request(boxes: usize) -> RelabelObjects::Request {
        use r2r::eloss_perception_msgs::msg::BoundingBox2D;
        let (w, h) = (64u32, 48u32);
        let image = r2r::sensor_msgs::msg::Image { width: w, height: h, encoding: "rgb8".into(), step: 3 * w, data: vec![230; (3 * w * h) as usize], ..Default::default() };
        let whole = BoundingBox2D { x_min: 0.0, y_min: 0.0, x_max: w as f32, y_max: h as f32 };
        RelabelObjects::Request { source: RelabelObjects::Request::SOURCE_EXPLICIT_IMAGE as u8, image, boxes_2d: vec![whole; boxes], ..Default::default() }
    }

    /// Issue 13: 5,000 whole-image boxes took the node to 7.8 GB with no
    /// answer. Over the limit: an error naming it, before any crop; the
    /// next request is served.
    #[test]
    fn oversized_requests_are_refused_and_the_next_one_is_served() {
        use crate::gdc::classifier::{test_support::dark_bright_classifier, MAX_BOXES_PER_REQUEST};
        use std::sync::atomic::Ordering;
        let (classifier, largest_call) = dark_bright_classifier();
        let gdc: Gdc = Ok((classifier, CropConfig::default()));
        let r = handle(&gdc, &explicit_request(5_000), |_, _| unreachable!());
        assert!(!r.success && r.error.contains("5000 boxes") && r.error.contains("at most 256"), "{}", r.error);
        assert!(r.labels.is_empty());
        assert_eq!(largest_call.load(Ordering::Relaxed), 0, "no crop embedded for a refused request");
        let many_candidates = RelabelObjects::Request { candidate_classes: vec!["dark".into(); 100_000], ..explicit_request(1) };
        assert!(handle(&gdc, &many_candidates, |_, _| unreachable!()).error.contains("100000 candidate classes"));

        let r = handle(&gdc, &explicit_request(MAX_BOXES_PER_REQUEST), |_, _| unreachable!());
        assert!(r.success, "{}", r.error);
        assert_eq!(r.labels.len(), MAX_BOXES_PER_REQUEST);
        assert!(r.labels.iter().all(|l| l.valid && l.label == "bright"));
        assert!(largest_call.load(Ordering::Relaxed) <= 4, "crops are embedded one batch at a time");
    }

    /// A `camera_info` for a `w` x `h` pinhole camera, focal length `f`, centred.
    fn pinhole(w: u32, h: u32, f: f64) -> r2r::sensor_msgs::msg::CameraInfo {
        let (cx, cy) = (w as f64 / 2.0, h as f64 / 2.0);
        r2r::sensor_msgs::msg::CameraInfo {
            width: w,
            height: h,
            distortion_model: "plumb_bob".into(),
            d: vec![0.0; 5],
            k: vec![f, 0.0, cx, 0.0, f, cy, 0.0, 0.0, 1.0],
            r: vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
            p: vec![f, 0.0, cx, 0.0, 0.0, f, cy, 0.0, 0.0, 0.0, 1.0, 0.0],
            ..Default::default()
        }
    }

    /// An upright box in the optical frame: centre, yaw `theta` about the
    /// camera's vertical axis (optical y), size (length, width, height).
    fn optical_box(c: [f64; 3], theta: f64, size: [f64; 3]) -> Detection3D {
        let mut d = Detection3D::default();
        (d.pose.position.x, d.pose.position.y, d.pose.position.z) = (c[0], c[1], c[2]);
        (d.pose.orientation.y, d.pose.orientation.w) = ((theta / 2.0).sin(), (theta / 2.0).cos());
        (d.size.x, d.size.y, d.size.z) = (size[0], size[1], size[2]);
        d
    }

    /// The optical → vehicle conversion against hand geometry: the centre
    /// maps (x, y, z) → (z, −x, −y); a box turned by θ about optical y heads
    /// −(θ + π/2) in the vehicle frame; and projecting the converted box with
    /// the request's P gives the rectangle of the 8 optical-frame corners
    /// projected by hand (u = f x / z + cx, v = f y / z + cy).
    #[test]
    fn optical_boxes_convert_and_project_as_hand_computed() {
        use crate::dataset::kitti::project_box_to_image;
        let (theta, size) = (0.3, [4.0, 1.8, 1.5]);
        let d = optical_box([1.0, 0.5, 10.0], theta, size);
        let b = optical_box_to_vehicle(&d);
        assert_eq!(b.center, [10.0, -1.0, -0.5]);
        assert_eq!(b.size, size);
        assert!((b.yaw + theta + std::f64::consts::FRAC_PI_2).abs() < 1e-12, "yaw {}", b.yaw);

        let (w, h, f) = (1242u32, 375u32, 700.0);
        let camera = convert::decode_camera_info(&pinhole(w, h, f)).unwrap();
        let calib = Calibration::from_camera(camera.p, VEHICLE_TO_OPTICAL);
        let got = project_box_to_image(&b, &calib, w, h).expect("in front of the camera").bbox_unclipped;
        // corners: centre ± l/2 along the heading, ± w/2 across it, ± h/2 vertically (optical y)
        let heading = [theta.cos(), 0.0, -theta.sin()];
        let across = [theta.sin(), 0.0, theta.cos()];
        let mut want = [f64::INFINITY, f64::INFINITY, f64::NEG_INFINITY, f64::NEG_INFINITY];
        for sl in [-0.5, 0.5] {
            for sw in [-0.5, 0.5] {
                for sh in [-0.5, 0.5] {
                    let p: Vec<f64> = (0..3)
                        .map(|k| [1.0, 0.5, 10.0][k] + sl * size[0] * heading[k] + sw * size[1] * across[k] + if k == 1 { sh * size[2] } else { 0.0 })
                        .collect();
                    let (u, v) = (f * p[0] / p[2] + w as f64 / 2.0, f * p[1] / p[2] + h as f64 / 2.0);
                    want = [want[0].min(u), want[1].min(v), want[2].max(u), want[3].max(v)];
                }
            }
        }
        for k in 0..4 {
            assert!((got[k] - want[k]).abs() < 1e-6, "projected {got:?}, by hand {want:?}");
        }
    }

    /// `boxes_3d` + CameraInfo through the service handler: a box right of
    /// the optical axis crops the bright right half, one left of it the
    /// dark half, one behind the camera is reported not visible; without a
    /// valid camera_info the request fails with the reason.
    #[test]
    fn boxes_3d_with_camera_info_crop_where_they_project() {
        use crate::gdc::classifier::test_support::dark_bright_classifier;
        let (classifier, _) = dark_bright_classifier();
        let gdc: Gdc = Ok((classifier, CropConfig::default()));
        let (w, h) = (64u32, 48u32);
        let data = (0..h).flat_map(|_| (0..w).flat_map(|x| [if x < w / 2 { 20u8 } else { 230 }; 3])).collect();
        let image = r2r::sensor_msgs::msg::Image { width: w, height: h, encoding: "rgb8".into(), step: 3 * w, data, ..Default::default() };
        // 3 m boxes at 10 m: ~12 px wide, centred at u = 40·(±4)/10 + 32
        let cube = [3.0, 3.0, 3.0];
        let boxes_3d = vec![
            optical_box([4.0, 0.0, 10.0], 0.0, cube),  // u ≈ 42..54: bright
            optical_box([-4.0, 0.0, 10.0], 0.0, cube), // u ≈ 10..22: dark
            optical_box([0.0, 0.0, -10.0], 0.0, cube), // behind the camera
        ];
        let req = RelabelObjects::Request {
            source: RelabelObjects::Request::SOURCE_EXPLICIT_IMAGE as u8,
            image,
            camera_info: pinhole(w, h, 40.0),
            boxes_3d,
            ..Default::default()
        };
        let r = handle(&gdc, &req, |_, _| unreachable!());
        assert!(r.success, "{}", r.error);
        let got: Vec<(u32, bool, &str)> = r.labels.iter().map(|l| (l.object_id, l.valid, l.label.as_str())).collect();
        assert_eq!(got[..2], [(0, true, "bright"), (1, true, "dark")]);
        assert!(!r.labels[2].valid && r.labels[2].error.contains("behind the camera"), "{:?}", r.labels[2]);
        let no_camera = RelabelObjects::Request { camera_info: Default::default(), ..req };
        let r = handle(&gdc, &no_camera, |_, _| unreachable!());
        assert!(!r.success && r.error.contains("boxes_3d need a valid camera_info"), "{}", r.error);
    }
}
