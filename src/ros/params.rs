//! Node parameters: one struct tree, documented once. Doc comments become
//! the ROS parameter descriptions (r2r's `RosParams` derive) and the table
//! in docs/parameters.md; defaults come from config/eloss_perception.yaml,
//! compiled in, so the file and the node cannot disagree.

use r2r::RosParams;
use serde::Deserialize;

/// The params file shipped in config/, embedded as the node's defaults.
pub const DEFAULT_PARAMS_YAML: &str = include_str!("../../config/eloss_perception.yaml");
/// Most libtorch threads `detector.threads` may ask for.
pub const MAX_DETECTOR_THREADS: i64 = 1024;

#[derive(RosParams, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct NodeParams {
    /// Hardware id reported in diagnostics (the sensor rig this node serves)
    pub hardware_id: String,
    pub diagnostics: DiagnosticsParams,
    pub cloud: CloudParams,
    pub detector: DetectorParams,
    pub eloss: ElossParams,
    pub camera: CameraParams,
    pub gdc: GdcParams,
}

#[derive(RosParams, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct DiagnosticsParams {
    /// Period of diagnostic_msgs/DiagnosticArray reports [s], in (0, 3600]
    pub period_s: f64,
}

#[derive(RosParams, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct CloudParams {
    /// Points nearer than this 3D range are dropped, e.g. returns from the ego vehicle [m], >= 0
    pub min_range_m: f64,
    /// Points farther than this 3D range are dropped [m], > min_range_m
    pub max_range_m: f64,
    /// Intensities are multiplied by this before detection, > 0: the model was trained on KITTI's 0..1 reflectance; use 0.00392157 (1/255) for drivers that publish 0..255 (velodyne_driver, ouster-ros, hesai and most others; docs/ros_integration.md)
    pub intensity_scale: f64,
}

#[derive(RosParams, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct DetectorParams {
    /// Detector checkpoint (safetensors from `eloss train`); empty = the compact model compiled into the node (docs/model_card.md). Read at start-up
    pub model_path: String,
    /// Where the network runs: auto (CUDA when present), cpu or cuda. Read at start-up
    pub device: String,
    /// libtorch intra-op threads for the detector, 0 = libtorch's default, at most 1024. Read at start-up
    pub threads: i64,
    /// Engine of the backbone, neck and head: torch (libtorch, CPU or CUDA) or onnxruntime (ONNX Runtime's CPU kernels, loaded from ORT_DYLIB_PATH, with the graph of detector.onnx_path; the pillar net stays on libtorch; docs/benchmarks.md). Read at start-up
    pub backend: String,
    /// ONNX graph of the detector's weights for backend onnxruntime (`scripts/export_onnx.py`; refused when made for other weights); empty = <model stem>.onnx beside detector.model_path. Read at start-up
    pub onnx_path: String,
    /// Detections below this confidence are not published, in [0, 1]
    pub score_threshold: f64,
    /// Lifetime of the RViz markers [s], > 0 (they also vanish when the next frame's arrive)
    pub marker_lifetime_s: f64,
    /// Frame the detections are published in (e.g. base_link: level, x forward, z up). Clouds are transformed into it by tf (or detector.sensor_pose) and from there into the model's frame (x forward, z up, the LiDAR at the height the model was trained at), so any mounting works; empty = the cloud's own frame, taken as a KITTI-mounted x-forward LiDAR
    pub frame: String,
    /// Height of the ground plane in detector.frame [m] (0 for base_link on the ground, as REP-105 vehicles and Autoware place it); used with detector.frame
    pub ground_z_m: f64,
    /// LiDAR pose in detector.frame as 6 numbers [x, y, z, roll, pitch, yaw] (m, rad), used only when tf has no transform from the cloud's frame (a warning in diagnostics says so); empty = tf only
    #[serde(default)]
    pub sensor_pose: DoubleArray,
    /// How long a cloud may wait for tf to reach its stamp before the latest transform is tried [s], 0..=1
    pub tf_timeout_s: f64,
    /// front = the model's field ahead of the LiDAR (0..69 m); full = also the rear half (the cloud turned 180 degrees, a second pass): 360 degrees at about twice the network time
    pub coverage: String,
    /// Also publish autoware_perception_msgs/DetectedObjects on detected_objects (Car -> CAR, Pedestrian -> PEDESTRIAN, Cyclist -> BICYCLE, existence probability = score)
    pub autoware_objects: bool,
}

#[derive(RosParams, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct ElossParams {
    /// Run the Eloss monitor: every frame gets an entropy profile (7-12 % of the frame on two cores), a report on eloss and an anomaly score; false = detections only (no eloss topic, anomaly_score NaN), e.g. to keep up with a fast LiDAR. Settable at run time
    pub enabled: bool,
    /// Eloss calibration JSON (`eloss calibrate`); empty = <model stem>.calibration.json beside detector.model_path, or the embedded model's own. Without one the node publishes Eloss but scores no anomalies. Read at start-up
    pub calibration_path: String,
    /// Entropy estimator: empty = the calibration's, else knn or gaussian (must match the calibration). Read at start-up
    pub estimator: String,
    /// Grouping of the entropy changes in the Eloss: empty = the calibration's, else per_block or reference (must match the calibration, which records the grouping the model was trained with). Read at start-up
    pub grouping: String,
    /// Anomaly score threshold; < 0 = the calibrated one (set for its false-alarm rate). Read at start-up
    pub threshold: f64,
    /// Hysteresis: frames in the sliding window, 1..=1000. Read at start-up
    pub hysteresis_window: i64,
    /// Hysteresis: anomalous frames within the window that raise the alarm, 1..=window. Read at start-up
    pub hysteresis_enter: i64,
    /// Hysteresis: consecutive normal frames that clear the alarm, 1..=1000. Read at start-up
    pub hysteresis_exit: i64,
    /// Detections of a frame while the alarm is up: publish (unchanged), temper (scores times eloss.temper_factor, boxes under detector.score_threshold dropped) or suppress (none). Every detections message carries the frame's anomaly score, alarm and the action taken
    pub on_alarm: String,
    /// Score factor of on_alarm=temper, in (0, 1]
    pub temper_factor: f64,
}

impl DetectorParams {
    /// `detector.sensor_pose` as [x, y, z, roll, pitch, yaw]; `None` when empty.
    pub fn sensor_pose(&self) -> Result<Option<[f64; 6]>, ParamsError> {
        let v = &self.sensor_pose.0;
        if v.is_empty() {
            return Ok(None);
        }
        let invalid = |rule| ParamsError::Invalid { name: "detector.sensor_pose", value: format!("{v:?}"), rule };
        let pose: [f64; 6] = v.as_slice().try_into().map_err(|_| invalid("must be empty or 6 numbers [x, y, z, roll, pitch, yaw]"))?;
        if !pose.iter().all(|x| x.is_finite()) || pose[..3].iter().any(|x| x.abs() > 100.0) {
            return Err(invalid("must be finite, with |x|, |y|, |z| <= 100 m"));
        }
        Ok(Some(pose))
    }
}

impl ElossParams {
    /// `eloss.on_alarm` with `eloss.temper_factor`.
    pub fn on_alarm(&self) -> Result<crate::eloss::on_alarm::OnAlarm, ParamsError> {
        use crate::eloss::on_alarm::{OnAlarm, OnAlarmError};
        OnAlarm::new(&self.on_alarm, self.temper_factor).map_err(|e| match e {
            OnAlarmError::Unknown => ParamsError::Invalid { name: "eloss.on_alarm", value: crate::log_limit::printable(&self.on_alarm), rule: "must be publish, temper or suppress" },
            OnAlarmError::Factor => ParamsError::Invalid { name: "eloss.temper_factor", value: self.temper_factor.to_string(), rule: "must be in (0, 1]" },
        })
    }

    pub fn settings(&self) -> Result<crate::perception::ElossSettings, ParamsError> {
        let invalid = |name, value: String, rule| ParamsError::Invalid { name, value, rule };
        let estimator = match self.estimator.as_str() {
            "" => None,
            s => Some(s.parse().map_err(|_| invalid("eloss.estimator", s.to_string(), "must be empty, knn or gaussian"))?),
        };
        let grouping = match self.grouping.as_str() {
            "" => None,
            s => Some(s.parse().map_err(|_| invalid("eloss.grouping", crate::log_limit::printable(s), "must be empty, per_block or reference"))?),
        };
        let count = |v: i64| usize::try_from(v).unwrap_or(0);
        let hysteresis = crate::eloss::hysteresis::HysteresisConfig::new(count(self.hysteresis_window), count(self.hysteresis_enter), count(self.hysteresis_exit))
            .map_err(|e| invalid("eloss.hysteresis_*", e.to_string(), "1 <= enter <= window <= 1000, 1 <= exit <= 1000"))?;
        if !self.threshold.is_finite() {
            return Err(invalid("eloss.threshold", self.threshold.to_string(), "must be finite"));
        }
        let threshold = (self.threshold >= 0.0).then_some(self.threshold);
        self.on_alarm()?;
        Ok(crate::perception::ElossSettings { calibration_path: self.calibration_path.clone(), estimator, grouping, threshold, hysteresis })
    }
}

/// A double-array parameter (r2r 0.9's derive has no array leaves). In a
/// params file write every element as a float (`1.0`, not `1`): rcl types a
/// list of integers as an integer array.
#[derive(Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(transparent)]
pub struct DoubleArray(pub Vec<f64>);

impl RosParams for DoubleArray {
    fn register_parameters(
        &mut self,
        prefix: &str,
        param: Option<r2r::Parameter>,
        params: &mut r2r::indexmap::IndexMap<String, r2r::Parameter>,
    ) -> r2r::Result<()> {
        if let Some(cli) = params.get(prefix) {
            let value = cli.value.clone();
            self.set_parameter("", &value).map_err(|e| e.update_param_name(prefix))?;
            params.shift_remove(prefix);
        }
        let mut param = param.unwrap_or_else(r2r::Parameter::empty);
        param.value = r2r::ParameterValue::DoubleArray(self.0.clone());
        params.insert(prefix.to_owned(), param);
        Ok(())
    }

    fn get_parameter(&mut self, param_name: &str) -> r2r::Result<r2r::ParameterValue> {
        match param_name {
            "" => Ok(r2r::ParameterValue::DoubleArray(self.0.clone())),
            _ => Err(r2r::Error::InvalidParameterName { name: param_name.to_owned() }),
        }
    }

    fn set_parameter(&mut self, param_name: &str, param_val: &r2r::ParameterValue) -> r2r::Result<()> {
        self.check_parameter(param_name, param_val)?;
        if let r2r::ParameterValue::DoubleArray(v) = param_val {
            self.0 = v.clone();
        }
        Ok(())
    }

    fn check_parameter(&self, param_name: &str, param_val: &r2r::ParameterValue) -> r2r::Result<()> {
        if !param_name.is_empty() {
            return Err(r2r::Error::InvalidParameterName { name: param_name.to_owned() });
        }
        match param_val {
            r2r::ParameterValue::DoubleArray(_) => Ok(()),
            _ => Err(r2r::Error::InvalidParameterType { name: String::new(), ty: "double array" }),
        }
    }
}

#[derive(RosParams, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct CameraParams {
    /// LiDAR frame → camera optical frame (x right, y down, z forward) as 12 numbers, 3x4 row-major [R|t] (p_cam = R p_lidar + t); with the CameraInfo's P it places detections in the image for GDC crops. Default: KITTI's R0_rect · Tr_velo_to_cam (drive 2011_09_26, the simulator's camera), to use with P = KITTI's P2. Ignored when calib_file is set
    pub lidar_to_camera: DoubleArray,
    /// KITTI calib file (calib/*.txt) whose R0_rect · Tr_velo_to_cam replaces lidar_to_camera; empty = use lidar_to_camera. The image projection still comes from the CameraInfo's P. Read at start-up and on change
    pub calib_file: String,
}

/// Largest `camera.calib_file` read (a KITTI calib file is ~1 KB).
pub const MAX_CALIB_FILE_BYTES: u64 = 64 * 1024;
/// Longest `camera.calib_file` path accepted.
pub const MAX_PATH_BYTES: usize = 4096;

impl CameraParams {
    /// The checks that need no file: `calib_file` is a plausible path, and
    /// without one `lidar_to_camera` is a valid extrinsic.
    pub fn check(&self) -> Result<(), ParamsError> {
        if self.calib_file.len() > MAX_PATH_BYTES || self.calib_file.contains('\0') {
            return Err(ParamsError::Invalid {
                name: "camera.calib_file",
                value: format!("{} bytes", self.calib_file.len()),
                rule: "must be a path of at most 4096 bytes without NUL",
            });
        }
        if self.calib_file.is_empty() {
            self.extrinsic()?;
        }
        Ok(())
    }

    /// The LiDAR → camera-optical extrinsic (3x4 row-major), from the calib
    /// file when one is named, else from `lidar_to_camera`; checked: 12
    /// finite numbers whose rotation part is invertible. The file is read
    /// as untrusted input ([`crate::untrusted_file`]: a regular file of at
    /// most [`MAX_CALIB_FILE_BYTES`]), and errors never quote its contents.
    /// Reads the file on every call: the node calls it once per change
    /// (`GuardedParams`), never per request.
    pub fn extrinsic(&self) -> Result<[f64; 12], ParamsError> {
        let m: [f64; 12] = if self.calib_file.is_empty() {
            let m: [f64; 12] = self.lidar_to_camera.0.as_slice().try_into().map_err(|_| ParamsError::Invalid {
                name: "camera.lidar_to_camera",
                value: format!("{} numbers", self.lidar_to_camera.0.len()),
                rule: "must have 12 numbers (3x4 row-major [R|t])",
            })?;
            m
        } else {
            let calib_error = |error: String| ParamsError::CalibFile { path: crate::log_limit::printable(&self.calib_file), error };
            let text = crate::untrusted_file::read_text(std::path::Path::new(&self.calib_file), MAX_CALIB_FILE_BYTES)
                .map_err(|e| calib_error(e.to_string()))?;
            crate::dataset::kitti::Calibration::parse(&text)
                .map_err(|e| {
                    calib_error(match e.line {
                        // the line's text is not quoted: the file may be anything readable
                        Some(n) => format!("line {n} is not a valid KITTI calib entry (`KEY: numbers`, P2 / R0_rect / Tr_velo_to_cam needed)"),
                        None => e.message,
                    })
                })?
                .lidar_to_cam_matrix()
        };
        let invalid = |rule| ParamsError::Invalid { name: "camera.lidar_to_camera", value: format!("{m:?}"), rule };
        if !m.iter().all(|v| v.is_finite()) {
            return Err(invalid("must be finite"));
        }
        let r = [m[0], m[1], m[2], m[4], m[5], m[6], m[8], m[9], m[10]];
        if crate::geometry::mat3_det(&r).abs() < 1e-6 {
            return Err(invalid("rotation part must be invertible (|det| >= 1e-6)"));
        }
        Ok(m)
    }
}

#[derive(RosParams, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct GdcParams {
    /// Gaussian class bank file (safetensors, from `eloss gdc bank`); empty = GDC off, ~/relabel answers with an error. Read at start-up
    pub bank_path: String,
    /// Backbone the bank was built with: a Hugging Face DINOv2 folder (config.json + model.safetensors) or an EfficientNet-Lite0 .safetensors file. Read at start-up
    pub backbone_path: String,
    /// Divides the class log-likelihoods before Bayes' rule: > 0 this value (1 = plain Bayes); 0 = the temperature fitted on held-out bank images and stored in the bank (1 for a bank without one), >= 0
    pub temperature: f64,
    /// Target false-rejection rate of the open-set answer: a crop outside every class at this rate (per-class conformal threshold on held-out bank distances) is labelled unknown; 0 = never unknown; a bank without calibration data never answers unknown, in [0, 1)
    pub unknown_rate: f64,
    /// Crops embedded per forward pass, >= 1
    pub batch_size: i64,
    /// Boxes smaller than this on their shorter image side get no label [px], >= 1
    pub min_crop_px: f64,
    /// Frames (clouds with their published detections) and decoded images the node keeps for ~/relabel by detection id, 1..=1000
    pub history_frames: i64,
    /// Largest time difference between a cloud and the camera image used for its crops [s], >= 0
    pub max_image_lag_s: f64,
    /// Attach the GDC label (has_gdc, gdc_label, gdc_probabilities, and the open-set test: gdc_unknown, gdc_nearest_class/_distance/_threshold) to every published detection whose box has a crop in a time-matched image; needs a bank and a CameraInfo, adds the classification time to each frame (detector diagnostics: gdc_*_ms)
    pub auto_relabel: bool,
    pub generator: GeneratorParams,
}

/// Run-time classes (~/add_classes): a text-to-image generator makes images
/// of a new class name, the GDC backbone embeds them, the bank gains a class.
/// Read at start-up.
#[derive(RosParams, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct GeneratorParams {
    /// Hugging Face diffusers folder (SD 1.x/2.x, SD-Turbo, SDXL, SDXL-Turbo; docs/generators.md); empty = ~/add_classes answers with an error. With it and gdc.backbone_path but no gdc.bank_path, the node starts with an empty bank (zero-shot: classes come from names only)
    pub path: String,
    /// Class names generated at start-up unless the bank has them, comma-separated (e.g. car,pedestrian,cyclist); empty = none
    pub classes: String,
    /// Images generated per new class, >= 2 (the paper: 240)
    pub per_class: i64,
    /// Prompt templates: default (8 built in) or a file with one template containing {} per line
    pub templates: String,
    /// Sampling steps, >= 1 (turbo models: 1-4; SD 1.x/2.x: ~25 with guidance 7.5)
    pub steps: i64,
    /// Classifier-free guidance scale; <= 1 = no guidance (turbo models)
    pub guidance: f64,
    /// Side of the generated images [px], 0 = the model's native size
    pub size: i64,
    /// Base seed; image i of a class always gets the same noise, so a cache stays valid
    pub seed: i64,
    /// Images per generator call, >= 1
    pub batch: i64,
    /// Cache of generated images and contact sheets (resumed after a restart); empty = <gdc.bank_path>.images, else <save_bank_path>.images, else ~/.cache/eloss_perception/generated_images
    pub cache_dir: String,
    /// The bank with the run-time classes is written here after each new class (so a restart can load it as gdc.bank_path); empty = kept in memory only
    pub save_bank_path: String,
}

impl GeneratorParams {
    /// The start-up class names, trimmed, in order.
    pub fn class_names(&self) -> Vec<String> {
        if self.classes.trim().is_empty() {
            return Vec::new();
        }
        self.classes.split(',').map(|c| c.trim().to_string()).collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ParamsError {
    #[error("params YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("params YAML has no '/**: ros__parameters' (or '<node>: ros__parameters') section")]
    NoSection,
    #[error("parameter camera.calib_file = {path}: {error}")]
    CalibFile { path: String, error: String },
    #[error("parameter {name} = {value}: {rule}")]
    Invalid { name: &'static str, value: String, rule: &'static str },
}

impl NodeParams {
    /// Parses a ROS 2 params file (first node section, usually `/**`).
    pub fn from_params_yaml(text: &str) -> Result<Self, ParamsError> {
        let doc: serde_yaml::Value = serde_yaml::from_str(text)?;
        let section = doc
            .as_mapping()
            .and_then(|m| m.values().next())
            .and_then(|node| node.get("ros__parameters"))
            .ok_or(ParamsError::NoSection)?;
        Ok(serde_yaml::from_value(section.clone())?)
    }

    /// The compiled-in defaults (config/eloss_perception.yaml).
    pub fn defaults() -> Result<Self, ParamsError> {
        Self::from_params_yaml(DEFAULT_PARAMS_YAML)
    }

    /// Rejects out-of-range values instead of clamping them. Reads no file
    /// (`camera.calib_file` is read by [`CameraParams::extrinsic`]).
    pub fn validate(&self) -> Result<(), ParamsError> {
        let bad = |name, value: f64, rule| Err(ParamsError::Invalid { name, value: value.to_string(), rule });
        if !(self.diagnostics.period_s > 0.0 && self.diagnostics.period_s <= 3600.0) {
            return bad("diagnostics.period_s", self.diagnostics.period_s, "must be in (0, 3600]");
        }
        if !(self.cloud.min_range_m.is_finite() && self.cloud.min_range_m >= 0.0) {
            return bad("cloud.min_range_m", self.cloud.min_range_m, "must be >= 0");
        }
        if self.cloud.max_range_m.partial_cmp(&self.cloud.min_range_m) != Some(std::cmp::Ordering::Greater) {
            return bad("cloud.max_range_m", self.cloud.max_range_m, "must be > cloud.min_range_m");
        }
        if !matches!(self.detector.device.as_str(), "auto" | "cpu" | "cuda") {
            return Err(ParamsError::Invalid { name: "detector.device", value: self.detector.device.clone(), rule: "must be auto, cpu or cuda" });
        }
        if !matches!(self.detector.backend.as_str(), "torch" | "onnxruntime") {
            return Err(ParamsError::Invalid { name: "detector.backend", value: crate::log_limit::printable(&self.detector.backend), rule: "must be torch or onnxruntime" });
        }
        if !(0..=MAX_DETECTOR_THREADS).contains(&self.detector.threads) {
            // libtorch takes an i32 and starts that many threads: 2^31 killed the cloud worker
            return bad("detector.threads", self.detector.threads as f64, "must be in 0..=1024");
        }
        if !(0.0..=1.0).contains(&self.detector.score_threshold) {
            return bad("detector.score_threshold", self.detector.score_threshold, "must be in [0, 1]");
        }
        if !(self.detector.marker_lifetime_s.is_finite() && self.detector.marker_lifetime_s > 0.0) {
            return bad("detector.marker_lifetime_s", self.detector.marker_lifetime_s, "must be > 0");
        }
        if !(self.cloud.intensity_scale.is_finite() && self.cloud.intensity_scale > 0.0) {
            return bad("cloud.intensity_scale", self.cloud.intensity_scale, "must be > 0");
        }
        if self.detector.frame.len() > 256 || self.detector.frame.chars().any(|c| c.is_control()) {
            return Err(ParamsError::Invalid { name: "detector.frame", value: format!("{} bytes", self.detector.frame.len()), rule: "must be a frame id of at most 256 printable characters" });
        }
        if !self.detector.ground_z_m.is_finite() || self.detector.ground_z_m.abs() > 100.0 {
            return bad("detector.ground_z_m", self.detector.ground_z_m, "must be within +-100 m");
        }
        self.detector.sensor_pose()?;
        if !(0.0..=1.0).contains(&self.detector.tf_timeout_s) {
            return bad("detector.tf_timeout_s", self.detector.tf_timeout_s, "must be in [0, 1]");
        }
        if !matches!(self.detector.coverage.as_str(), "front" | "full") {
            return Err(ParamsError::Invalid { name: "detector.coverage", value: self.detector.coverage.clone(), rule: "must be front or full" });
        }
        self.eloss.settings()?;
        if !(self.gdc.temperature.is_finite() && self.gdc.temperature >= 0.0) {
            return bad("gdc.temperature", self.gdc.temperature, "must be >= 0 (0 = the bank's fitted temperature)");
        }
        if crate::gdc::bank::validate_unknown_rate(self.gdc.unknown_rate).is_err() {
            return bad("gdc.unknown_rate", self.gdc.unknown_rate, "must be in [0, 1)");
        }
        if self.gdc.batch_size < 1 {
            return bad("gdc.batch_size", self.gdc.batch_size as f64, "must be >= 1");
        }
        if !(self.gdc.min_crop_px >= 1.0) {
            return bad("gdc.min_crop_px", self.gdc.min_crop_px, "must be >= 1");
        }
        if !(1..=1000).contains(&self.gdc.history_frames) {
            return bad("gdc.history_frames", self.gdc.history_frames as f64, "must be in 1..=1000");
        }
        if !(self.gdc.max_image_lag_s.is_finite() && self.gdc.max_image_lag_s >= 0.0) {
            return bad("gdc.max_image_lag_s", self.gdc.max_image_lag_s, "must be >= 0");
        }
        let g = &self.gdc.generator;
        if g.per_class < 2 {
            return bad("gdc.generator.per_class", g.per_class as f64, "must be >= 2");
        }
        if g.steps < 1 {
            return bad("gdc.generator.steps", g.steps as f64, "must be >= 1");
        }
        if !g.guidance.is_finite() {
            return bad("gdc.generator.guidance", g.guidance, "must be finite");
        }
        if g.size < 0 {
            return bad("gdc.generator.size", g.size as f64, "must be >= 0");
        }
        if g.seed < 0 {
            return bad("gdc.generator.seed", g.seed as f64, "must be >= 0");
        }
        if g.batch < 1 {
            return bad("gdc.generator.batch", g.batch as f64, "must be >= 1");
        }
        // the rule ~/add_classes applies to requested names
        if let Some(bad) = g.class_names().iter().find(|c| crate::gdc::generator::class_images::check_class_name(c).is_err()) {
            return Err(ParamsError::Invalid { name: "gdc.generator.classes", value: format!("{bad:?}"), rule: "must be plain names separated by commas" });
        }
        if g.templates.is_empty() {
            return Err(ParamsError::Invalid { name: "gdc.generator.templates", value: String::new(), rule: "must be default or a file" });
        }
        // the calib file itself is read once per change, by GuardedParams
        self.camera.check()?;
        Ok(())
    }

    /// Every parameter as (dotted name, description), in declaration order,
    /// as the node declares them to ROS.
    pub fn declared(&self) -> Vec<(String, String)> {
        let mut map = r2r::indexmap::IndexMap::new();
        let mut me = self.clone();
        // register_parameters fills names and descriptions exactly as the node does
        let _ = RosParams::register_parameters(&mut me, "", None, &mut map);
        map.into_iter().map(|(k, p)| (k, p.description.to_string())).collect()
    }
}

/// The parameter table of docs/parameters.md, generated from the structs
/// (names, doc comments) and the shipped defaults.
pub fn parameters_markdown() -> Result<String, ParamsError> {
    let defaults = NodeParams::defaults()?;
    let mut values = r2r::indexmap::IndexMap::new();
    let mut me = defaults.clone();
    let _ = RosParams::register_parameters(&mut me, "", None, &mut values);
    let mut out = String::from(
        "# Parameters of eloss_perception_node\n\n\
         Generated from `src/ros/params.rs` and `config/eloss_perception.yaml` by\n\
         `ELOSS_BLESS=1 cargo test parameters_doc`; a test fails when this file is stale.\n\n\
         | name | default | description |\n|---|---|---|\n",
    );
    for (name, p) in &values {
        let default = match &p.value {
            r2r::ParameterValue::String(s) => format!("\"{s}\""),
            r2r::ParameterValue::Double(d) => format!("{d:?}"),
            r2r::ParameterValue::Integer(i) => i.to_string(),
            r2r::ParameterValue::Bool(b) => b.to_string(),
            r2r::ParameterValue::DoubleArray(v) => format!("{v:?}"),
            other => format!("{other:?}"),
        };
        out.push_str(&format!("| `{name}` | {default} | {} |\n", p.description));
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
