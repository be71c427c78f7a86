//! Checks against the real KITTI frame 000008 (`../shared/data/kitti_000008`,
//! whose `info.json` is mmdetection3d's info file for it) and a writer →
//! reader round trip of a small synthetic dataset.

use super::*;
use crate::cloud::test_data::kitti_dir;
use crate::cloud::Point;
use crate::geometry::{wrap_angle, Box3D};
use serde_json::Value;

/// The first `rows` rows of a JSON matrix, row-major.
fn matrix(v: &Value, rows: usize, cols: usize) -> Vec<f64> {
    (0..rows)
        .flat_map(|r| (0..cols).map(move |c| (r, c)))
        .map(|(r, c)| v[r][c].as_f64().unwrap_or_else(|| panic!("matrix entry [{r}][{c}] in {v}")))
        .collect()
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// info.json's `data_list[0]`.
fn info(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("info.json")).expect("read info.json");
    let info: Value = serde_json::from_str(&text).expect("info.json is JSON");
    info["data_list"][0].clone()
}

/// The frame's calibration from info.json's separate matrices
/// ([`info_json`](super::info_json)).
fn calibration(frame: &Value) -> Calibration {
    super::info_json::InfoFrame::from_value(frame).expect("info.json frame").calib
}

/// An info.json instance and the label it describes.
struct Instance {
    index: usize,
    label: ObjectLabel,
    alpha: f64,
    difficulty: i64,
    num_lidar_pts: i64,
}

/// The instances as labels ([`info_json`](super::info_json));
/// `labels_convert_to_lidar_boxes_and_back` checks its dimension order.
fn instances(frame: &Value) -> Vec<Instance> {
    let labels = super::info_json::InfoFrame::from_value(frame).expect("info.json frame").labels;
    let list = frame["instances"].as_array().expect("instances");
    list.iter()
        .zip(labels)
        .enumerate()
        .map(|(index, (inst, label))| Instance {
            index,
            label,
            alpha: num(&inst["alpha"]),
            difficulty: inst["difficulty"].as_i64().expect("difficulty"),
            num_lidar_pts: inst["num_lidar_pts"].as_i64().expect("num_lidar_pts"),
        })
        .collect()
}

fn objects(frame: &Value) -> Vec<Instance> {
    instances(frame).into_iter().filter(|i| i.label.class != ObjectClass::DontCare).collect()
}

#[test]
fn calibration_from_info_json_round_trips_through_text() {
    let Some(dir) = kitti_dir() else { return };
    let frame = info(&dir);
    let calib = calibration(&frame);
    let text = calib.to_kitti_string();
    assert_eq!(Calibration::parse(&text).as_ref(), Ok(&calib), "{text}");
    assert!(text.starts_with("P0: 7.215377000000e+02 "), "{text}");

    // R0_rect · Tr_velo_to_cam is info.json's lidar2cam (stored as float32).
    let lidar2cam = matrix(&frame["images"]["CAM2"]["lidar2cam"], 3, 4);
    for (a, b) in calib.lidar_to_cam_matrix().iter().zip(&lidar2cam) {
        assert!((a - b).abs() < 1e-6, "{:?} vs {lidar2cam:?}", calib.lidar_to_cam_matrix());
    }
    // lidar2cam alone, with R0_rect = identity, is the same calibration.
    let composed = Calibration {
        r0_rect: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        tr_velo_to_cam: lidar2cam.clone().try_into().expect("3x4"),
        ..calib.clone()
    };
    let lidar2img = matrix(&frame["images"]["CAM2"]["lidar2img"], 3, 4);
    for p in [[5.0, 1.0, -1.5], [40.0, -10.0, 0.5], [12.0, 4.0, -1.7]] {
        let (a, b) = (calib.lidar_to_cam(p), composed.lidar_to_cam(p));
        assert!(a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5), "{a:?} vs {b:?}");
        // and lidar2img (P2 · lidar2cam) gives the same pixel
        let row = |r: usize| (0..3).map(|k| lidar2img[4 * r + k] * p[k]).sum::<f64>() + lidar2img[4 * r + 3];
        let uv = calib.lidar_to_image(p).expect("in front");
        assert!((uv[0] - row(0) / row(2)).abs() < 1e-3 && (uv[1] - row(1) / row(2)).abs() < 1e-3, "{uv:?}");
    }
    // P2 is the one in 000008.txt (there as a padded 4x4).
    let p2_text = std::fs::read_to_string(dir.join("000008.txt")).expect("000008.txt");
    let p2_file: Vec<f64> = p2_text.split_whitespace().map(|t| t.parse().expect("number")).collect();
    assert_eq!(calib.p2[..], p2_file[..12]);
    // kitti_like_default is this calibration at KITTI's 7 digits.
    let default = Calibration::kitti_like_default().lidar_to_cam_matrix();
    assert!(default.iter().zip(calib.lidar_to_cam_matrix()).all(|(a, b)| (a - b).abs() < 1e-6));
}

#[test]
fn labels_convert_to_lidar_boxes_and_back() {
    let Some(dir) = kitti_dir() else { return };
    let frame = info(&dir);
    let calib = calibration(&frame);
    let objects = objects(&frame);
    assert_eq!(objects.len(), 6);
    // The first object is the first line of KITTI's label_2/000008.txt.
    assert_eq!(
        objects[0].label.to_kitti_line(),
        "Car 0.88 3 -0.69 0.00 192.37 402.31 374.00 1.60 1.57 3.23 -2.70 1.74 3.68 -1.29"
    );

    // KITTI's alpha was computed from unrounded values; the rounded labels
    // reproduce it to 0.033 rad (the nearest car, 4.6 m away; 0.025 for the
    // next, under 0.01 for the rest).
    const ALPHA_TOLERANCE: f64 = 0.04;
    let mut worst_alpha: f64 = 0.0;
    for inst in &objects {
        let l = &inst.label;
        // Dimension order: every car here is longer than wide and 1.3-1.8 m high.
        let [h, w, len] = l.dimensions;
        assert!(len > w && (1.3..1.8).contains(&h) && (1.4..1.7).contains(&w), "instance {}: {l}", inst.index);

        let b = l.to_lidar_box(&calib);
        let back = ObjectLabel::from_lidar_box(l.class, &b, &calib, l.bbox, l.truncated, l.occluded);
        for k in 0..3 {
            assert!((back.location[k] - l.location[k]).abs() < 1e-6, "instance {}: {back}", inst.index);
            assert!((back.dimensions[k] - l.dimensions[k]).abs() < 1e-12);
        }
        assert!(wrap_angle(back.rotation_y - l.rotation_y).abs() < 1e-6, "instance {}: {back}", inst.index);
        assert!(wrap_angle(back.alpha - observation_angle(l.rotation_y, l.location)).abs() < 1e-6);
        let alpha_err = wrap_angle(back.alpha - inst.alpha).abs();
        worst_alpha = worst_alpha.max(alpha_err);
        assert!(alpha_err < ALPHA_TOLERANCE, "instance {}: alpha {} vs KITTI's {}", inst.index, back.alpha, inst.alpha);
        let expected = ObjectLabel { alpha: back.alpha, ..l.clone() };
        assert_eq!(back.to_kitti_line(), expected.to_kitti_line());
    }
    eprintln!("worst alpha deviation from KITTI's: {worst_alpha:.4} rad");
}

#[test]
fn projected_boxes_land_on_the_2d_boxes() {
    let Some(dir) = kitti_dir() else { return };
    let frame = info(&dir);
    let calib = calibration(&frame);
    // The labelled boxes were drawn around the projected 3D boxes and clipped
    // to the image; ours go through the LiDAR frame first (to_lidar_box) and
    // are clipped the same way. Measured worst edge error: 0.58 px, from the
    // 1 cm / 0.01 rad rounding of the labels; a wrong axis order, principal
    // point or frame costs tens of pixels.
    const TOLERANCE_PX: f64 = 1.0;
    // Footprint-area truncation against KITTI's annotated truncation, for
    // the two truncated cars: measured 0.8807 vs 0.88 and 0.3391 vs 0.34.
    const TRUNCATION_TOLERANCE: f64 = 0.02;
    let mut worst: f64 = 0.0;
    let mut checked = 0;
    for inst in objects(&frame) {
        let b = inst.label.to_lidar_box(&calib);
        let p = project_box_to_image(&b, &calib, KITTI_IMAGE_WIDTH, KITTI_IMAGE_HEIGHT).expect("visible");
        if inst.label.truncated > 0.0 {
            eprintln!("instance {}: truncation {:.4} (KITTI {:.2})", inst.index, p.truncation, inst.label.truncated);
            assert!(
                (p.truncation - inst.label.truncated).abs() < TRUNCATION_TOLERANCE,
                "instance {}: {p:?}",
                inst.index
            );
            continue;
        }
        assert_eq!(p.truncation, p.truncation.clamp(0.0, 0.02), "instance {}: {p:?}", inst.index);
        for (k, (a, e)) in p.bbox_clipped.iter().zip(inst.label.bbox).enumerate() {
            let err = (a - e).abs();
            worst = worst.max(err);
            assert!(err <= TOLERANCE_PX, "instance {}: edge {k} projected {a:.2}, labelled {e:.2}", inst.index);
        }
        checked += 1;
    }
    eprintln!("worst 2D box edge error over {checked} non-truncated objects: {worst:.2} px");
    assert_eq!(checked, 4);
}

#[test]
fn points_in_car_boxes_match_num_lidar_pts() {
    let Some(dir) = kitti_dir() else { return };
    let frame = info(&dir);
    let calib = calibration(&frame);
    let points = kitti_bin::read(dir.join("000008.bin")).expect("cloud");
    let pts: Vec<[f64; 3]> = (0..points.len())
        .filter_map(|i| points.get(i))
        .map(|p| [f64::from(p.x), f64::from(p.y), f64::from(p.z)])
        .collect();
    // to_lidar_box follows mmdetection3d's conversion, so the counts agree
    // exactly (mapping the camera box's centre instead moved near cars by
    // 8 mm and changed their counts by up to 8 %: 1426 vs 1325 for instance 0).
    for inst in objects(&frame) {
        let b: Box3D = inst.label.to_lidar_box(&calib);
        let n = pts.iter().filter(|&&p| b.contains(p)).count() as i64;
        assert_eq!(n, inst.num_lidar_pts, "instance {}: points in {b:?}", inst.index);
    }
}

#[test]
fn difficulty_matches_info_json() {
    let Some(dir) = kitti_dir() else { return };
    let frame = info(&dir);
    let all = instances(&frame);
    assert_eq!(all.len(), 10);
    for inst in all {
        let ours = match inst.label.difficulty() {
            Some(Difficulty::Easy) => 0,
            Some(Difficulty::Moderate) => 1,
            Some(Difficulty::Hard) => 2,
            None => -1,
        };
        assert_eq!(ours, inst.difficulty, "instance {}: {}", inst.index, inst.label);
    }
}

/// Three frames with distinct clouds and labels, and the labels rounded as
/// a file stores them.
fn synthetic_frame(i: u64) -> (Points, Calibration, Vec<ObjectLabel>) {
    let mut points = Points::default();
    for k in 0..(10 + i) {
        let v = k as f32 * 0.5 + i as f32;
        points.push(Point { x: v, y: -v, z: 0.25 * v, intensity: 0.1, ..Point::default() });
    }
    let mut calib = Calibration::kitti_like_default();
    calib.tr_velo_to_cam[3] += 0.01 * i as f64;
    calib.tr_imu_to_velo = None;
    let car = ObjectLabel::from_lidar_box(
        ObjectClass::Car,
        &Box3D { center: [10.0 + i as f64, 2.0, -0.9], size: [4.0, 1.7, 1.5], yaw: 0.3 },
        &calib,
        [100.0, 150.0, 300.0, 250.0],
        0.0,
        1,
    );
    let car = ObjectLabel::parse_line(&car.to_kitti_line()).expect("own line");
    let labels = if i == 1 { Vec::new() } else { vec![car, ObjectLabel::dont_care([1.0, 2.0, 3.0, 4.0])] };
    (points, calib, labels)
}

#[test]
fn writer_then_reader_round_trip() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("kitti");
    let w = KittiWriter::create(&root, Split::Training).expect("create");
    let ids: Vec<String> = (0..3).map(frame_id).collect();
    assert_eq!(ids, ["000000", "000001", "000002"]);
    for (i, id) in (0..).zip(&ids) {
        let (points, calib, labels) = synthetic_frame(i);
        w.write_frame(id, &points, &calib, &labels).expect("write frame");
    }
    // The caller writes the image itself; only frame 2 has one.
    let image = w.image_path("000002").expect("path");
    assert_eq!(image, root.join("training/image_2/000002.png"));
    std::fs::write(&image, b"not really a png").expect("image");

    // Without ImageSets: the velodyne folder, in order.
    let ds = KittiDataset::open(&root, Split::Training).expect("open");
    assert_eq!(ds.ids(), ids);
    for (i, id) in (0..).zip(&ids) {
        let f = ds.frame(id).expect("frame");
        let (points, calib, labels) = synthetic_frame(i);
        assert_eq!((&f.id, &f.points, &f.calib, &f.labels), (id, &points, &calib, &labels));
        assert_eq!(f.image_path.as_ref(), (i == 2).then_some(&image));
    }
    assert_eq!(std::fs::read_to_string(root.join("training/label_2/000001.txt")).ok().as_deref(), Some(""));

    // With ImageSets: trainval wins; else train then val.
    w.write_image_set(ImageSet::Train, &ids[..2]).expect("train");
    w.write_image_set(ImageSet::Val, &ids[1..]).expect("val");
    assert_eq!(KittiDataset::open(&root, Split::Training).expect("open").ids(), ids);
    assert_eq!(KittiDataset::open_image_set(&root, ImageSet::Val).expect("val").ids(), &ids[1..]);
    w.write_image_set(ImageSet::TrainVal, &ids[2..]).expect("trainval");
    assert_eq!(KittiDataset::open(&root, Split::Training).expect("open").ids(), &ids[2..]);
    assert_eq!(std::fs::read_to_string(root.join("ImageSets/train.txt")).ok().as_deref(), Some("000000\n000001\n"));

    // A testing split: no label_2 folder, frames read without labels.
    let t = KittiWriter::create(&root, Split::Testing).expect("testing");
    let (points, calib, labels) = synthetic_frame(0);
    t.write_frame("000007", &points, &calib, &labels[..0]).expect("write");
    assert!(!root.join("testing/label_2").exists());
    let test = KittiDataset::open(&root, Split::Testing).expect("open testing");
    assert_eq!(test.ids(), ["000007"]);
    let f = test.frame("000007").expect("frame");
    assert!(f.labels.is_empty() && f.image_path.is_none() && f.points == points);
    t.write_image_set(ImageSet::Test, &["000007".to_owned()]).expect("test set");
    assert_eq!(KittiDataset::open_image_set(&root, ImageSet::Test).expect("test").split(), Split::Testing);
}

#[test]
fn velodyne_listing_orders_ids_by_value() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("training/velodyne");
    std::fs::create_dir_all(&dir).expect("mkdir");
    for name in ["1000000.bin", "000010.bin", "000002.bin", "notes.txt", "abc.bin"] {
        std::fs::write(dir.join(name), b"").expect("file");
    }
    let ds = KittiDataset::open(tmp.path(), Split::Training).expect("open");
    assert_eq!(ds.ids(), ["000002", "000010", "1000000"]);
}

#[test]
fn malformed_files_give_errors_naming_file_and_line() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let w = KittiWriter::create(tmp.path(), Split::Training).expect("create");
    let (points, calib, labels) = synthetic_frame(0);
    w.write_frame("000000", &points, &calib, &labels).expect("write");
    let ds = KittiDataset::open(tmp.path(), Split::Training).expect("open");
    let err_of = |id: &str| ds.frame(id).expect_err("malformed").to_string();

    let label_path = tmp.path().join("training/label_2/000000.txt");
    let good = format_labels(&labels);
    std::fs::write(&label_path, format!("{good}Car 0 0 0 0 0 1 1 1 1 1 0 0 x 0\n")).expect("write");
    let err = err_of("000000");
    assert!(err.contains("label_2/000000.txt: line 3: z: `x` is not a number"), "{err}");
    std::fs::write(&label_path, &good).expect("restore");

    let calib_path = tmp.path().join("training/calib/000000.txt");
    let text = std::fs::read_to_string(&calib_path).expect("calib");
    std::fs::write(&calib_path, text.replace("P2: 7.215377000000e+02 ", "P2: ")).expect("write");
    let err = err_of("000000");
    assert!(err.contains("calib/000000.txt: line 3: `P2` needs 12 numbers, found 11"), "{err}");
    std::fs::write(&calib_path, &text).expect("restore");

    let bin = tmp.path().join("training/velodyne/000000.bin");
    std::fs::write(&bin, [0u8; 20]).expect("write");
    let err = err_of("000000");
    assert!(err.contains("velodyne/000000.bin: KITTI .bin length 20"), "{err}");

    assert!(err_of("000001").contains("velodyne/000001.bin"), "missing frame");
    assert!(matches!(ds.frame("../x"), Err(KittiError::InvalidId { .. })));
    assert!(matches!(w.image_path("12a"), Err(KittiError::InvalidId { .. })));

    std::fs::write(tmp.path().join("ImageSets/val.txt"), "000000\n\n00 01\n").expect("write");
    let err = KittiDataset::open_image_set(tmp.path(), ImageSet::Val).expect_err("bad id").to_string();
    assert!(err.contains("ImageSets/val.txt: line 3: `00 01` is not a frame id"), "{err}");
}

/// The default (embedded) detector on the real frame: what it finds of the
/// six labelled cars. With `ELOSS_DOCS_IMG=DIR` it also draws the frame —
/// bird's-eye view with ground truth in white and detections in class
/// colours, camera image with the detections — as docs/img/kitti_000008_*.png.
#[cfg(feature = "torch")]
#[test]
fn default_detector_on_the_real_frame() {
    use crate::dataset::render::{class_colour, draw_bev_box, draw_camera_boxes, render_bev, BevOptions};
    let Some(dir) = kitti_dir() else { return };
    let frame = info(&dir);
    let calib = calibration(&frame);
    let gt: Vec<ObjectLabel> = objects(&frame).into_iter().map(|i| i.label).collect();
    let pts = crate::cloud::kitti_bin::read(dir.join("000008.bin")).unwrap();
    let mut pipe = crate::perception::FramePipeline::load("", tch::Device::Cpu, &Default::default()).unwrap();
    let out = pipe.process(&pts, 0.3).unwrap();
    let names = pipe.class_names();
    let labels = crate::detect::kitti_output::detections_to_labels(&out.detections, &names, &calib, 1242, 375);
    assert!(labels.iter().all(|l| l.score.is_some_and(|s| s >= 0.3)));
    let cars: Vec<Box3D> = gt.iter().filter(|l| l.class == ObjectClass::Car).map(|l| l.to_lidar_box(&calib)).collect();
    assert_eq!(cars.len(), 6);
    let car_boxes: Vec<Box3D> = out.detections.iter().filter(|d| d.class == 0).map(|d| d.bbox).collect();
    let labelled: Vec<Box3D> = gt.iter().map(|g| g.to_lidar_box(&calib)).collect();
    let counts = crate::detect::real_frame::count_cars(&car_boxes, &cars, &labelled);
    let false_cars = counts.false_boxes;
    eprintln!(
        "000008: {} detections ({} cars); cars found at BEV IoU 0.5: {}/6, at 0.7: {}/6; car boxes on no labelled object: {false_cars}; network {:?}",
        out.detections.len(),
        out.detections.iter().filter(|d| d.class == 0).count(),
        counts.found_05,
        counts.found_07,
        out.timings.network
    );
    // the shipped model's figures in README.md and docs/model_card.md
    assert!(counts.found_05 >= 6, "cars found at BEV IoU 0.5: {}/6", counts.found_05);
    assert!(false_cars <= 3, "car boxes on no labelled object: {false_cars}");
    // the docs say "none at 0.7": a better model must update them, not pass silently
    assert_eq!(counts.found_07, 0, "cars found at BEV IoU 0.7 (README and model card say none)");
    if let Some(img_dir) = std::env::var_os("ELOSS_DOCS_IMG") {
        let img_dir = std::path::PathBuf::from(img_dir);
        let opts = BevOptions { x_range: [0.0, 70.0], y_range: [-35.0, 35.0], ..Default::default() };
        let mut bev = render_bev(&pts, &[], &calib, &opts);
        for g in &cars {
            draw_bev_box(&mut bev, g, &opts, ::image::Rgb([255, 255, 255]));
        }
        for l in &labels {
            draw_bev_box(&mut bev, &l.to_lidar_box(&calib), &opts, class_colour(l.class));
        }
        bev.save(img_dir.join("kitti_000008_detections_bev.png")).unwrap();
        let mut cam = ::image::open(dir.join("000008.png")).unwrap().to_rgb8();
        draw_camera_boxes(&mut cam, &labels, &calib);
        cam.save(img_dir.join("kitti_000008_detections_camera.png")).unwrap();
    }
}
