//! Tests of the node's parameters (src/ros/params.rs).

use super::*;

#[test]
fn parameters_doc_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/parameters.md");
    let want = parameters_markdown().unwrap();
    if std::env::var_os("ELOSS_BLESS").is_some() {
        std::fs::write(path, &want).unwrap();
    }
    let have = std::fs::read_to_string(path).unwrap_or_default();
    assert_eq!(have, want, "docs/parameters.md is stale: run ELOSS_BLESS=1 cargo test parameters_doc");
}

#[test]
fn shipped_params_file_is_valid_and_complete() {
    let p = NodeParams::defaults().expect("config/eloss_perception.yaml parses");
    p.validate().expect("shipped defaults are valid");
    let names: Vec<String> = p.declared().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "hardware_id",
            "diagnostics.period_s",
            "cloud.min_range_m",
            "cloud.max_range_m",
            "cloud.intensity_scale",
            "detector.model_path",
            "detector.device",
            "detector.threads",
            "detector.backend",
            "detector.onnx_path",
            "detector.score_threshold",
            "detector.marker_lifetime_s",
            "detector.frame",
            "detector.ground_z_m",
            "detector.sensor_pose",
            "detector.tf_timeout_s",
            "detector.coverage",
            "detector.autoware_objects",
            "eloss.enabled",
            "eloss.calibration_path",
            "eloss.estimator",
            "eloss.grouping",
            "eloss.threshold",
            "eloss.hysteresis_window",
            "eloss.hysteresis_enter",
            "eloss.hysteresis_exit",
            "eloss.on_alarm",
            "eloss.temper_factor",
            "camera.lidar_to_camera",
            "camera.calib_file",
            "gdc.bank_path",
            "gdc.backbone_path",
            "gdc.temperature",
            "gdc.unknown_rate",
            "gdc.batch_size",
            "gdc.min_crop_px",
            "gdc.history_frames",
            "gdc.max_image_lag_s",
            "gdc.auto_relabel",
            "gdc.generator.path",
            "gdc.generator.classes",
            "gdc.generator.per_class",
            "gdc.generator.templates",
            "gdc.generator.steps",
            "gdc.generator.guidance",
            "gdc.generator.size",
            "gdc.generator.seed",
            "gdc.generator.batch",
            "gdc.generator.cache_dir",
            "gdc.generator.save_bank_path"
        ]
    );
}

#[test]
fn unknown_keys_and_bad_values_are_rejected() {
    let unknown = DEFAULT_PARAMS_YAML.replace("period_s: 1.0", "period_s: 1.0\n      typo: 2");
    assert!(NodeParams::from_params_yaml(DEFAULT_PARAMS_YAML).is_ok());
    assert!(NodeParams::from_params_yaml(&unknown).is_err());
    let mut p = NodeParams::defaults().unwrap();
    p.cloud.max_range_m = p.cloud.min_range_m;
    assert!(matches!(p.validate(), Err(ParamsError::Invalid { name: "cloud.max_range_m", .. })));
    p = NodeParams::defaults().unwrap();
    p.diagnostics.period_s = 0.0;
    assert!(p.validate().is_err());
    p = NodeParams::defaults().unwrap();
    p.gdc.temperature = -1.0;
    assert!(matches!(p.validate(), Err(ParamsError::Invalid { name: "gdc.temperature", .. })));
    p.gdc.temperature = 0.0; // the bank's fitted temperature
    assert!(p.validate().is_ok());
    for bad_rate in [-0.01, 1.0, f64::NAN, f64::INFINITY] {
        p.gdc.unknown_rate = bad_rate;
        assert!(matches!(p.validate(), Err(ParamsError::Invalid { name: "gdc.unknown_rate", .. })), "{bad_rate}");
    }
    p.gdc.unknown_rate = 0.05;
    assert!(p.validate().is_ok());
    p = NodeParams::defaults().unwrap();
    p.eloss.hysteresis_enter = p.eloss.hysteresis_window + 1;
    assert!(matches!(p.validate(), Err(ParamsError::Invalid { name: "eloss.hysteresis_*", .. })));
    p = NodeParams::defaults().unwrap();
    p.eloss.estimator = "fourier".into();
    assert!(matches!(p.validate(), Err(ParamsError::Invalid { name: "eloss.estimator", .. })));
    p = NodeParams::defaults().unwrap();
    p.eloss.grouping = "per-block".into();
    assert!(matches!(p.validate(), Err(ParamsError::Invalid { name: "eloss.grouping", .. })));
    p.eloss.grouping = "reference".into();
    assert_eq!(p.eloss.settings().unwrap().grouping, Some(crate::eloss::grouping::Grouping::Reference));
    let mut p = NodeParams::defaults().unwrap();
    p.detector.backend = "tensorrt".into();
    assert!(matches!(p.validate(), Err(ParamsError::Invalid { name: "detector.backend", .. })));
    p.detector.backend = "onnxruntime".into();
    p.validate().unwrap();
    p.eloss.on_alarm = "drop".into();
    assert!(matches!(p.validate(), Err(ParamsError::Invalid { name: "eloss.on_alarm", .. })));
    p.eloss.on_alarm = "temper".into();
    p.eloss.temper_factor = 0.0;
    assert!(matches!(p.validate(), Err(ParamsError::Invalid { name: "eloss.temper_factor", .. })));
    p = NodeParams::defaults().unwrap();
    p.detector.device = "tpu".into();
    assert!(matches!(p.validate(), Err(ParamsError::Invalid { name: "detector.device", .. })));
    assert!(matches!(NodeParams::from_params_yaml("a: 1"), Err(ParamsError::NoSection)));
    for threads in [-1, 1025, 1 << 31] {
        p = NodeParams::defaults().unwrap();
        p.detector.threads = threads;
        assert!(matches!(p.validate(), Err(ParamsError::Invalid { name: "detector.threads", .. })), "{threads}");
    }
    p = NodeParams::defaults().unwrap();
    p.detector.threads = MAX_DETECTOR_THREADS;
    assert!(p.validate().is_ok());
    p = NodeParams::defaults().unwrap();
    p.gdc.history_frames = 0;
    assert!(matches!(p.validate(), Err(ParamsError::Invalid { name: "gdc.history_frames", .. })));
    p = NodeParams::defaults().unwrap();
    p.gdc.max_image_lag_s = -0.1;
    assert!(matches!(p.validate(), Err(ParamsError::Invalid { name: "gdc.max_image_lag_s", .. })));
    for bad in ["car,a/b", "car,,bus", "car,.."] {
        p = NodeParams::defaults().unwrap();
        p.gdc.generator.classes = bad.into();
        assert!(matches!(p.validate(), Err(ParamsError::Invalid { name: "gdc.generator.classes", .. })), "{bad}");
    }
    p.gdc.generator.classes = " car, traffic_cone ".into();
    assert!(p.validate().is_ok());
}

#[test]
fn camera_extrinsic_defaults_to_kitti_and_is_checked() {
    use crate::dataset::kitti::Calibration;
    let p = NodeParams::defaults().unwrap();
    assert!(!p.gdc.auto_relabel);
    let want = Calibration::kitti_like_default().lidar_to_cam_matrix();
    let have = p.camera.extrinsic().unwrap();
    assert!(have.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-8), "{have:?} vs {want:?}");

    let mut c = p.camera.clone();
    c.lidar_to_camera.0.pop();
    assert!(matches!(c.extrinsic(), Err(ParamsError::Invalid { name: "camera.lidar_to_camera", .. })));
    c.lidar_to_camera = DoubleArray(vec![0.0; 12]);
    assert!(c.extrinsic().unwrap_err().to_string().contains("invertible"));
    c.lidar_to_camera = DoubleArray(vec![f64::NAN; 12]);
    assert!(c.extrinsic().unwrap_err().to_string().contains("finite"));

    // a KITTI calib file wins over the numbers
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("000000.txt");
    Calibration::kitti_like_default().write(&file).unwrap();
    let c = CameraParams { lidar_to_camera: DoubleArray::default(), calib_file: file.display().to_string() };
    assert_eq!(c.extrinsic().unwrap(), want);
    let missing = CameraParams { lidar_to_camera: DoubleArray::default(), calib_file: "/nonexistent/calib.txt".into() };
    let e = missing.extrinsic().unwrap_err();
    assert!(matches!(e, ParamsError::CalibFile { .. }) && e.to_string().contains("/nonexistent/calib.txt"), "{e}");
    // validation alone reads no file
    missing.check().unwrap();
}
