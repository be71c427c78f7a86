//! Tests of `eloss simulate`'s writer (dataset folders, sidecars, drives).

use super::*;
use crate::dataset::kitti::KittiDataset;

#[test]
fn anomaly_lists_parse_and_reject_unknowns() {
    let l = parse_anomaly_list("fog:0.5, noise:high,blur:low,lens_occlusion").expect("valid");
    assert_eq!(l.len(), 4);
    assert!(matches!(&l[0], AnomalySpec::Lidar(a, s) if a.kind() == AnomalyKind::Fog && s.value() == 0.5));
    assert!(matches!(&l[2], AnomalySpec::Camera(CameraAnomalyKind::Blur, s) if *s == Severity::LOW));
    assert!(matches!(&l[3], AnomalySpec::Camera(CameraAnomalyKind::LensOcclusion, s) if *s == Severity::MEDIUM));
    assert!(parse_anomaly_list("smoke:0.2").is_err());
    assert!(parse_anomaly_list("fog:2").is_err());
    assert!(parse_anomaly_list("stale_frame:0.5").is_err());
    assert!("test".parse::<SimSplit>().is_err());
}

#[test]
fn written_frames_read_back_and_splits_merge() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = SimulateOptions::new(3, dir.path());
    opts.seed = 40;
    opts.anomalies = parse_anomaly_list("fog:0.5,glare:high").expect("valid");
    opts.anomaly_fraction = 1.0;
    let report = simulate(&opts, |_, _, _| {}).expect("simulates");
    assert_eq!(report.ids, ["000000", "000001", "000002"]);
    assert_eq!(report.anomalous_frames, 3);
    // A second run into val continues the numbering.
    let mut val = SimulateOptions::new(1, dir.path());
    val.split = SimSplit::Val;
    val.seed = 40;
    let second = simulate(&val, |_, _, _| {}).expect("simulates");
    assert_eq!(second.ids, ["000003"]);
    let list = |f: &str| std::fs::read_to_string(dir.path().join("ImageSets").join(f)).expect("exists");
    assert_eq!(list("train.txt"), "000000\n000001\n000002\n");
    assert_eq!(list("val.txt"), "000003\n");
    assert_eq!(list("trainval.txt"), "000000\n000001\n000002\n000003\n");

    let ds = KittiDataset::open(dir.path(), Split::Training).expect("opens");
    assert_eq!(ds.len(), 4);
    let calib = crate::dataset::kitti::Calibration::kitti_like_default();
    for (i, id) in report.ids.iter().enumerate() {
        let frame = ds.frame(id).expect("reads");
        // Same scene again: the reader sees what the simulator made.
        let seed = 40 + i as u64;
        let scene = SceneConfig::default().generate(seed).expect("scene");
        let lidar = Lidar::new(LidarConfig::hdl64e()).expect("preset");
        let camera = CameraModel::kitti();
        let f = simulate_frame(&lidar, &camera, scene.clone(), scene.snapshot(0.0), seed, &opts.anomalies, 1.0).expect("frame");
        assert_eq!(frame.points.len(), KITTI_IMAGE_WINDOW_DEG.crop(&f.points).len());
        assert!(frame.points.len() > 5000, "{} points", frame.points.len());
        assert_eq!(frame.calib, calib);
        let want: Vec<String> = f.labels.iter().map(|l| l.label.to_kitti_line()).collect();
        let got: Vec<String> = frame.labels.iter().map(|l| l.to_kitti_line()).collect();
        assert_eq!(got, want);
        let png = frame.image_path.expect("image written");
        assert_eq!(::image::open(png).expect("png").to_rgb8(), f.image);
    }
    // anomalies.json: every frame, with what was applied.
    let text = std::fs::read_to_string(dir.path().join("anomalies.json")).expect("sidecar");
    let rec: BTreeMap<String, FrameAnomalies> = serde_json::from_str(&text).expect("json");
    assert_eq!(rec.len(), 4);
    for id in &report.ids {
        let r = &rec[id];
        assert!(r.lidar.is_some() != r.camera.is_some(), "{id}: {r:?}");
        if let Some(t) = r.lidar {
            assert_eq!((t.kind, t.severity), (AnomalyKind::Fog, 0.5));
        }
        if let Some(t) = r.camera {
            assert_eq!((t.kind, t.severity), (CameraAnomalyKind::Glare, 1.0));
        }
        assert_eq!(r.split, SimSplit::Train);
    }
    assert_eq!(rec["000003"], FrameAnomalies { seed: 43, split: SimSplit::Val, lidar: None, camera: None });
}

#[test]
fn varied_sensors_are_recorded_and_scanned_with() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = SimulateOptions::new(3, dir.path());
    opts.seed = 7;
    opts.sensor_variation = SensorVariation::parse("beams,mount").expect("valid");
    // flat ground, so the ground level says where the sensor was
    opts.scene = crate::dataset::sim::tests::empty_config();
    let report = simulate(&opts, |_, _, _| {}).expect("simulates");
    let text = std::fs::read_to_string(dir.path().join("sensors.json")).expect("sidecar");
    let rec: BTreeMap<String, SensorDraw> = serde_json::from_str(&text).expect("json");
    let ds = KittiDataset::open(dir.path(), Split::Training).expect("opens");
    for (i, id) in report.ids.iter().enumerate() {
        let want = opts.sensor_variation.draw(&LidarConfig::hdl64e(), 7 + i as u64);
        let (got, drawn) = (&rec[id], SensorDraw::of(&want));
        assert_eq!((got.beams, got.intensity_scale, got.dropout), (drawn.beams, drawn.intensity_scale, drawn.dropout));
        assert!((got.mount_height_m - drawn.mount_height_m).abs() < 1e-12 && (got.bottom_deg - drawn.bottom_deg).abs() < 1e-12);
        // the written cloud is that sensor's: its ground lies at the drawn mounting height
        let frame = ds.frame(id).expect("reads");
        let ground = crate::dataset::realism::ground_level(&frame.points).expect("ground seen") as f64;
        assert!((ground + want.mount_height_m).abs() < 0.1, "{id}: ground {ground} for a sensor {} m up", want.mount_height_m);
    }
    let beams: std::collections::BTreeSet<usize> = rec.values().map(|d| d.beams).collect();
    assert!(beams.len() > 1 || report.ids.len() < 2, "beam counts drawn: {beams:?}");
}
