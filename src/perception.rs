//! The node's per-frame perception without ROS: a decoded cloud goes through
//! the detector once, and the same forward pass yields the detections and
//! the compression network's layer outputs (for the Eloss monitor). The ROS
//! adapter only converts messages around [`FramePipeline::process`] or
//! [`FramePipeline::process_in`].
//!
//! Two ways in:
//! - [`FramePipeline::process`]`(points, score_threshold)`: the cloud's
//!   frame is the model frame (a KITTI-mounted LiDAR: x forward, z up, 1.73 m
//!   above the ground); boxes come out in it. Only the model's range ahead
//!   is covered.
//! - [`FramePipeline::process_in`]`(points, mounting, coverage,
//!   score_threshold)`: the cloud is in any sensor frame; the
//!   [`Mounting`] (from tf or a fixed parameter) moves it into the model
//!   frame and the boxes come out in the user's detector (base) frame.
//!   [`Coverage::Full`] also runs the rear half of the circle (the cloud
//!   turned 180° about z) through the model, in the same forward pass as a
//!   batch of two BEV maps, turns those boxes back and merges both sets with
//!   the detector's class-wise NMS, so an object straddling x = 0 is kept
//!   once.
//!
//! The Eloss report is always computed from the front half only, the input
//! the monitor was calibrated on.
//!
//! ```no_run
//! use eloss_perception::frames::Mounting;
//! use eloss_perception::perception::{Coverage, ElossSettings, FramePipeline};
//! use nalgebra::{Isometry3, Vector3};
//! let mut pipe = FramePipeline::load("", tch::Device::Cpu, &ElossSettings::default()).unwrap();
//! // a y-forward LiDAR (nuScenes LIDAR_TOP) 1.84 m above base_link, drivers' 0..255 intensities
//! let base_from_sensor = Isometry3::new(Vector3::new(0.9, 0.0, 1.84), Vector3::z() * -std::f64::consts::FRAC_PI_2);
//! let mounting = Mounting::new(base_from_sensor, 0.0, pipe.trained_sensor_height_m()).unwrap().with_intensity_scale(1.0 / 255.0).unwrap();
//! let cloud = eloss_perception::cloud::kitti_bin::read("../shared/data/kitti_000008/000008.bin").unwrap();
//! let out = pipe.process_in(&cloud, &mounting, Coverage::Full, 0.5).unwrap();
//! println!("{} boxes in base_link", out.detections.len());
//! ```

use crate::cloud::Points;
use crate::detect::checkpoint::{self, CheckpointError, CheckpointInfo};
use crate::eloss::calibration::{default_path, EntropyCalibration};
use crate::eloss::hysteresis::HysteresisConfig;
use crate::eloss::monitor::{Monitor, MonitorConfig, MonitorReport};
use crate::detect::detector::{Detector, DetectorError, StageTimings};
use crate::detect::model::backbone::LayerOutputs;
use crate::detect::nms::nms_bev_classwise;
use crate::detect::postprocess::Detection;
use crate::frames::mounting::{half_turn, transform_box, Mounting};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tch::Device;

/// The default detector compiled into the binary (its model card:
/// docs/model_card.md), used when no model path is configured.
pub const EMBEDDED_MODEL: &[u8] = include_bytes!("../config/detector/compact_eloss.safetensors");
pub const EMBEDDED_MODEL_NAME: &str = "compact_eloss";
/// Its Eloss calibration on normal synthetic frames (docs/eloss_monitor.md).
pub const EMBEDDED_CALIBRATION: &str = include_str!("../config/detector/compact_eloss.calibration.json");

/// How the Eloss monitor is set up (the node's `eloss.*` parameters).
#[derive(Debug, Clone, PartialEq)]
pub struct ElossSettings {
    /// Calibration JSON; empty = `<model stem>.calibration.json` beside the
    /// model file, or the embedded one for the embedded model.
    pub calibration_path: String,
    /// `None` = the calibration's estimator.
    pub estimator: Option<crate::eloss::entropy::Estimator>,
    /// `None` = the calibration's grouping of ΔH.
    pub grouping: Option<crate::eloss::grouping::Grouping>,
    /// `None` = the calibrated threshold.
    pub threshold: Option<f64>,
    pub hysteresis: HysteresisConfig,
}

impl Default for ElossSettings {
    fn default() -> Self {
        Self { calibration_path: String::new(), estimator: None, grouping: None, threshold: None, hysteresis: HysteresisConfig::default() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("Eloss monitor: {0}")]
    Monitor(#[from] crate::eloss::monitor::MonitorError),
}

pub struct FramePipeline {
    detector: Detector,
    info: CheckpointInfo,
    model_id: String,
    monitor: Monitor,
    /// Why the calibration was not used (a file that failed to load).
    calibration_problem: Option<String>,
    /// Whether frames get an Eloss profile and report (`eloss.enabled`).
    monitor_enabled: bool,
}

/// Which part of the circle around the sensor is searched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Coverage {
    /// The model's own range ahead of the sensor (the embedded model: x in
    /// [0, 69.12] m, |y| < 39.68 m): one pass.
    #[default]
    Front,
    /// Front and rear: the rear half, turned 180° about z, goes through the
    /// same model in the same forward pass (a batch of two).
    Full,
}

impl Coverage {
    pub fn name(self) -> &'static str {
        match self {
            Coverage::Front => "front",
            Coverage::Full => "full",
        }
    }
}

impl std::str::FromStr for Coverage {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "front" => Ok(Coverage::Front),
            "full" => Ok(Coverage::Full),
            _ => Err(format!("coverage {s:?}: expected \"front\" or \"full\"")),
        }
    }
}

/// What one cloud produced.
pub struct FrameResult {
    /// In the model frame ([`FramePipeline::process`]) or the mounting's
    /// base frame ([`FramePipeline::process_in`]).
    pub detections: Vec<Detection>,
    /// Layer outputs of the front pass (batch element 0 for full coverage).
    pub layers: LayerOutputs,
    /// Pillarize and network of the whole batch; post-processing includes
    /// the merge of both halves.
    pub timings: StageTimings,
    /// Whole frame: transform (for `process_in`), pillarization to NMS.
    pub total: Duration,
    /// The Eloss report of the same forward pass (or why it failed);
    /// `None` while the monitor is switched off
    /// ([`FramePipeline::set_monitor_enabled`]).
    pub eloss: Option<Result<MonitorReport, String>>,
}

impl FramePipeline {
    /// The detector at `model_path`, or the embedded one when it is empty,
    /// with its Eloss monitor. A calibration that is missing or fails to
    /// load leaves the monitor uncalibrated (it says why); a calibration for
    /// other weights or another estimator is an error.
    pub fn load(model_path: &str, device: Device, eloss: &ElossSettings) -> Result<Self, PipelineError> {
        let (name, (detector, info)) = if model_path.is_empty() {
            (EMBEDDED_MODEL_NAME.to_string(), checkpoint::load_bytes(EMBEDDED_MODEL, Path::new("<embedded compact_eloss>"), device)?)
        } else {
            let path = PathBuf::from(model_path);
            let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            (stem, checkpoint::load(&path, device)?)
        };
        let mut detector = detector;
        detector.fold_for_inference(crate::detect::detector::INFERENCE_FORMAT);
        let calibration = if !eloss.calibration_path.is_empty() {
            EntropyCalibration::load(Path::new(&eloss.calibration_path)).map(Some).map_err(|e| e.to_string())
        } else if model_path.is_empty() {
            EntropyCalibration::from_json(EMBEDDED_CALIBRATION, Path::new("<embedded calibration>")).map(Some).map_err(|e| e.to_string())
        } else {
            let beside = default_path(Path::new(model_path));
            if beside.is_file() {
                EntropyCalibration::load(&beside).map(Some).map_err(|e| e.to_string())
            } else {
                Ok(None)
            }
        };
        let (calibration, calibration_problem) = match calibration {
            Ok(c) => (c, None),
            Err(e) => (None, Some(e)),
        };
        let config = MonitorConfig { estimator: eloss.estimator, grouping: eloss.grouping, threshold: eloss.threshold, hysteresis: eloss.hysteresis };
        let monitor = Monitor::new(&info.model_id, calibration, config)?;
        let model_id = format!("{name}@{}", info.model_id);
        Ok(Self { detector, info, model_id, monitor, calibration_problem, monitor_enabled: true })
    }

    /// Switches the Eloss monitor on or off (on after loading). Off, frames
    /// skip the entropy profile (7-12 % of a frame on two cores,
    /// docs/benchmarks.md) and carry no report; switched back on, the alarm
    /// history starts afresh, as after any gap in the input.
    pub fn set_monitor_enabled(&mut self, enabled: bool) {
        if enabled && !self.monitor_enabled {
            self.monitor.reset();
        }
        self.monitor_enabled = enabled;
    }

    /// Runs the detector's backbone, neck and head on ONNX Runtime with the
    /// graph at `graph` (`scripts/export_onnx.py` of these weights) on
    /// `threads` threads; see [`Detector::use_onnxruntime`]. On an error the
    /// detector stays as it was (libtorch).
    #[cfg(feature = "onnxruntime")]
    pub fn use_onnxruntime(&mut self, graph: &Path, threads: usize) -> Result<(), DetectorError> {
        self.detector.use_onnxruntime(graph, &self.info.model_id, threads)
    }

    pub fn monitor_enabled(&self) -> bool {
        self.monitor_enabled
    }

    fn observe(&mut self, layers: &LayerOutputs) -> Option<Result<MonitorReport, String>> {
        self.monitor_enabled.then(|| self.monitor.observe(layers).map_err(|e| e.to_string()))
    }

    /// Why anomalies are not scored; `None` when the monitor is calibrated.
    pub fn uncalibrated_reason(&self) -> Option<String> {
        match (&self.calibration_problem, self.monitor.uncalibrated_reason()) {
            (Some(p), Some(_)) => Some(format!("Eloss calibration not loaded: {p}")),
            (_, r) => r,
        }
    }

    /// `<file stem>@<weights digest>`: what the published messages carry.
    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    pub fn info(&self) -> &CheckpointInfo {
        &self.info
    }

    pub fn class_names(&self) -> Vec<String> {
        self.detector.config.class_names()
    }

    pub fn detector(&self) -> &Detector {
        &self.detector
    }

    /// Height above the ground of the LiDAR the model was trained with, for
    /// [`Mounting::new`]: KITTI's and the simulator's 1.73 m. Checkpoints do
    /// not record it; every model this project trains comes from
    /// KITTI-format data at that height.
    pub fn trained_sensor_height_m(&self) -> f64 {
        crate::frames::TRAINED_SENSOR_HEIGHT_M
    }

    /// Detections with a score below `score_threshold` are dropped (on top of
    /// the model's own threshold).
    pub fn process(&mut self, points: &Points, score_threshold: f32) -> Result<FrameResult, DetectorError> {
        let t = Instant::now();
        let out = self.detector.detect(points)?;
        let detections = out.detections.into_iter().filter(|d| d.score >= score_threshold).collect();
        let total = t.elapsed();
        let eloss = self.observe(&out.layers);
        Ok(FrameResult { detections, layers: out.layers, timings: out.timings, total, eloss })
    }

    /// A cloud in any sensor frame: moved into the model frame by
    /// `mounting`, searched ahead ([`Coverage::Front`]) or all around
    /// ([`Coverage::Full`]), detections returned in the mounting's base
    /// frame with a score of at least `score_threshold`. The Eloss report
    /// comes from the front half.
    pub fn process_in(&mut self, points: &Points, mounting: &Mounting, coverage: Coverage, score_threshold: f32) -> Result<FrameResult, DetectorError> {
        let t = Instant::now();
        let (front, mut detections, timings) = match coverage {
            Coverage::Front => {
                let mut out = self.detector.detect(&mounting.to_model(points))?;
                let dets = std::mem::take(&mut out.detections);
                let timings = out.timings;
                (out, dets, timings)
            }
            Coverage::Full => {
                let x_min = self.detector.config.pillars.range[0] as f32;
                let (front_cloud, rear_cloud) = mounting.to_model_halves(points, x_min);
                let mut outs = self.detector.detect_batch(&[&front_cloud, &rear_cloud])?.into_iter();
                let (Some(mut front), Some(rear)) = (outs.next(), outs.next()) else {
                    unreachable!("detect_batch returns one output per cloud")
                };
                let merge_start = Instant::now();
                let turn = half_turn();
                let mut all = std::mem::take(&mut front.detections);
                all.extend(rear.detections.iter().map(|d| Detection { bbox: transform_box(&turn, &d.bbox), ..d.clone() }));
                let dets = self.merge(all)?;
                let mut timings = front.timings;
                timings.postprocess += rear.timings.postprocess + merge_start.elapsed();
                (front, dets, timings)
            }
        };
        detections.retain(|d| d.score >= score_threshold);
        for d in &mut detections {
            d.bbox = mounting.box_to_base(&d.bbox);
        }
        let total = t.elapsed();
        let eloss = self.observe(&front.layers);
        Ok(FrameResult { detections, layers: front.layers, timings, total, eloss })
    }

    /// Class-wise NMS over the boxes of both halves (already in the model
    /// frame), best first, capped at the detector's maximum per frame.
    fn merge(&self, all: Vec<Detection>) -> Result<Vec<Detection>, DetectorError> {
        let boxes: Vec<_> = all.iter().map(|d| d.bbox).collect();
        let scores: Vec<f32> = all.iter().map(|d| d.score).collect();
        let classes: Vec<usize> = all.iter().map(|d| d.class).collect();
        let kept = nms_bev_classwise(&boxes, &scores, &classes, self.detector.nms_config())?;
        let mut out: Vec<Detection> = kept.into_iter().map(|i| all[i].clone()).collect();
        out.truncate(self.detector.config.max_detections);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_model_loads_and_runs_on_the_real_frame() {
        let mut pipe = FramePipeline::load("", Device::Cpu, &ElossSettings::default()).unwrap();
        assert!(pipe.model_id().starts_with("compact_eloss@"));
        assert_eq!(pipe.uncalibrated_reason(), None, "the embedded model ships calibrated");
        assert_eq!(pipe.class_names(), ["Car", "Pedestrian", "Cyclist"]);
        let Some(dir) = crate::cloud::test_data::kitti_dir() else { return };
        let pts = crate::cloud::kitti_bin::read(dir.join("000008.bin")).unwrap();
        let out = pipe.process(&pts, 0.5).unwrap();
        assert!(out.detections.iter().all(|d| d.score >= 0.5));
        assert_eq!(out.layers.blocks.len(), 3);
        let report = out.eloss.unwrap().unwrap();
        assert!(report.calibrated && report.eloss.is_finite() && report.anomaly_score.is_finite());
        assert_eq!(report.layer_entropies.len(), 16);
        // switched off: the same boxes, no profile; back on: reports again
        pipe.set_monitor_enabled(false);
        let off = pipe.process(&pts, 0.5).unwrap();
        assert!(off.eloss.is_none() && !pipe.monitor_enabled());
        assert_eq!(off.detections.len(), out.detections.len());
        pipe.set_monitor_enabled(true);
        let on = pipe.process(&pts, 0.5).unwrap().eloss.unwrap().unwrap();
        assert_eq!(on.eloss, report.eloss);
    }

    /// Grossly out-of-distribution clouds (not the simulator's realistic
    /// anomalies): random points move Eloss by over 100x and are flagged,
    /// the real frame is not. The table in docs/eloss_monitor.md:
    /// `cargo test --release --lib out_of_distribution -- --nocapture`.
    #[test]
    fn out_of_distribution_clouds_move_eloss_by_orders_of_magnitude() {
        use crate::cloud::Point;
        let Some(dir) = crate::cloud::test_data::kitti_dir() else { return };
        let real = crate::cloud::kitti_bin::read(dir.join("000008.bin")).unwrap();
        let mut rng = crate::dataset::sim::Rng::new(9);
        let uniform = |n: usize, rng: &mut crate::dataset::sim::Rng| {
            let mut p = Points::with_capacity(n, false, false);
            for _ in 0..n {
                let (x, y, z) = (rng.range(0.0, 69.0) as f32, rng.range(-39.0, 39.0) as f32, rng.range(-3.0, 1.0) as f32);
                p.push(Point { x, y, z, intensity: rng.uniform() as f32, ring: 0, time: 0.0 });
            }
            p
        };
        let mut scaled = real.clone();
        scaled.x.iter_mut().chain(scaled.y.iter_mut()).for_each(|v| *v *= 0.3);
        let mut dark = real.clone();
        dark.intensity.iter_mut().for_each(|v| *v = 0.0);
        let mut lifted = real.clone();
        lifted.z.iter_mut().for_each(|v| *v += 1.5);
        let cases: Vec<(&str, Points)> = vec![
            ("real KITTI 000008", real.clone()),
            ("uniform random points, same count", uniform(real.len(), &mut rng)),
            ("uniform random points, 100k", uniform(100_000, &mut rng)),
            ("x, y scaled by 0.3", scaled),
            ("z + 1.5 m (sensor mounted higher)", lifted),
            ("intensity zeroed", dark),
        ];
        let mut pipe = FramePipeline::load("", Device::Cpu, &ElossSettings::default()).unwrap();
        println!("| input | Eloss | deviation factor | score (threshold) | flagged |\n|---|---:|---:|---:|---|");
        let mut reports = Vec::new();
        for (name, pts) in &cases {
            let r = pipe.process(pts, 0.3).unwrap().eloss.unwrap().unwrap();
            println!("| {name} | {:.4e} | {:.2} | {:.2} ({:.2}) | {} |", r.eloss, r.deviation_factor, r.anomaly_score, r.threshold, r.anomalous_frame);
            reports.push(r);
        }
        assert!(!reports[0].anomalous_frame, "the real frame is normal");
        for r in &reports[1..3] {
            // the papers' "over 100x": the shipped model's monitor reads the term it was
            // trained to keep small (batch-norm frozen, kNN), measured 189x and 200x
            assert!(r.anomalous_frame && r.deviation_factor > 100.0, "random points: factor {}", r.deviation_factor);
            assert!(r.eloss > 20.0 * reports[0].eloss, "random points: Eloss {} vs the real frame's {}", r.eloss, reports[0].eloss);
        }
        // docs/eloss_monitor.md's "flagged" column: wrong units are caught, a lifted
        // sensor and a dead intensity channel are not (on this frame)
        assert!(reports[3].anomalous_frame, "x, y scaled by 0.3: score {}", reports[3].anomaly_score);
        assert!(!reports[4].anomalous_frame && !reports[5].anomalous_frame, "lifted / dark flagged: {} / {}", reports[4].anomaly_score, reports[5].anomaly_score);
        assert!(reports[0].anomaly_score < reports[0].threshold);
    }

    #[test]
    fn a_bad_model_path_is_an_error_not_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.safetensors");
        std::fs::write(&junk, b"\x08\x00\x00\x00\x00\x00\x00\x00{}").unwrap();
        let settings = ElossSettings::default();
        assert!(FramePipeline::load(junk.to_str().unwrap(), Device::Cpu, &settings).is_err());
        assert!(FramePipeline::load("/nonexistent/model.safetensors", Device::Cpu, &settings).is_err());
        // a broken calibration file: the detector runs, the monitor says why it does not score
        let cal = dir.path().join("broken.calibration.json");
        std::fs::write(&cal, "{not json").unwrap();
        let pipe = FramePipeline::load("", Device::Cpu, &ElossSettings { calibration_path: cal.display().to_string(), ..Default::default() }).unwrap();
        assert!(pipe.uncalibrated_reason().unwrap().contains("broken.calibration.json"));
    }
}
