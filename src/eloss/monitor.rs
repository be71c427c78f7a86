//! The per-frame Eloss anomaly monitor: layer outputs of the detector's
//! forward pass → [`EntropyProfile`] → [`Scores`] against the calibration →
//! [`Hysteresis`] → one [`MonitorReport`], which carries every field of
//! `msg/ElossReport.msg` (the ROS adapter converts it field by field).
//!
//! Without a calibration the monitor still reports the Eloss and the layer
//! entropies, with `calibrated = false`, NaN scores and no anomaly flag;
//! [`Monitor::uncalibrated_reason`] is the sentence for diagnostics. A
//! calibration made for other weights, another estimator or another ΔH
//! grouping is refused at construction, never silently used; the monitor
//! computes its profiles with the calibration's estimator and grouping.
//!
//! ```no_run
//! use eloss_perception::detect::checkpoint;
//! use eloss_perception::eloss::{calibration::{default_path, EntropyCalibration}, monitor::{Monitor, MonitorConfig}};
//! let model = std::path::Path::new("last.safetensors");
//! let (det, info) = checkpoint::load(model, tch::Device::Cpu).unwrap();
//! let cal = EntropyCalibration::load(&default_path(model)).ok();
//! let mut monitor = Monitor::new(&info.model_id, cal, MonitorConfig::default()).unwrap();
//! let pts = eloss_perception::cloud::kitti_bin::read("../shared/data/kitti_000008/000008.bin").unwrap();
//! let out = det.detect(&pts).unwrap();
//! let report = monitor.observe(&out.layers).unwrap();
//! println!("eloss {} score {} alarm {}", report.eloss, report.anomaly_score, report.anomaly);
//! ```

use super::calibration::{CalibrationError, EntropyCalibration};
use super::entropy::{Estimator, DEFAULT_RIDGE_REL};
use super::cells::Cells;
use super::grouping::Grouping;
use super::hysteresis::{AlarmState, Hysteresis, HysteresisConfig};
use super::profile::{EntropyProfile, ProfileError, ProfileSpec};
use super::score::{nearest_type, ScoreError, Scorer, Scores, TypeGuess};
use crate::detect::model::backbone::LayerOutputs;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error(transparent)]
    Calibration(#[from] CalibrationError),
    #[error("the monitor is configured for the {configured} estimator but the calibration was made with {calibrated}")]
    EstimatorMismatch { configured: &'static str, calibrated: &'static str },
    #[error("the monitor is configured for the {configured} grouping but the calibration was made with {calibrated}")]
    GroupingMismatch { configured: &'static str, calibrated: &'static str },
    #[error("threshold override {0} is not finite")]
    Threshold(f64),
    #[error(transparent)]
    Profile(#[from] ProfileError),
    #[error(transparent)]
    Score(#[from] ScoreError),
}

/// Run-time settings (the node's parameters).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MonitorConfig {
    /// `None`: the calibration's estimator (or the Gaussian one when
    /// uncalibrated). `Some` must match the calibration's.
    pub estimator: Option<Estimator>,
    /// `None`: the calibration's grouping (per block when uncalibrated).
    /// `Some` must match the calibration's.
    pub grouping: Option<Grouping>,
    /// `None`: the calibrated threshold. `Some(t)`: score threshold t instead
    /// (trades false alarms for sensitivity; the calibrated rate no longer holds).
    pub threshold: Option<f64>,
    pub hysteresis: HysteresisConfig,
}

/// One frame's Eloss report. Field names follow `msg/ElossReport.msg`; the
/// extra fields (marked) are for diagnostics and evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorReport {
    pub model_id: String,
    /// Empty when uncalibrated.
    pub calibration_id: String,
    /// `knn` or `gaussian`.
    pub estimator: &'static str,
    pub eloss: f64,
    pub layer_entropies: Vec<f64>,
    pub block_layer_counts: Vec<u32>,
    pub calibrated: bool,
    /// NaN when uncalibrated (as are the next three).
    pub anomaly_score: f64,
    pub threshold: f64,
    pub deviation_factor: f64,
    pub mahalanobis_distance: f64,
    /// Baseline-aware Eloss: Σ over transitions of ((ΔH_j − μ_j)/σ_j)²
    /// against the calibration's normal ΔH (NaN when uncalibrated).
    pub baseline_eloss: f64,
    /// `baseline_eloss` / number of transitions (≈ 1 on normal frames).
    pub baseline_factor: f64,
    /// After hysteresis.
    pub anomaly: bool,
    /// Nearest signature when `anomaly` and signatures exist; else empty.
    pub anomaly_type: String,
    /// (extra) This frame's score alone exceeds the threshold.
    pub anomalous_frame: bool,
    /// (extra) The hysteresis state.
    pub alarm_state: AlarmState,
    /// (extra) The score's parts (NaN when uncalibrated).
    pub z_eloss: f64,
    pub z_mahalanobis: f64,
    /// (extra) Nearest signature on every frame (flagged or not), with its similarity.
    pub type_guess: Option<TypeGuess>,
    /// (extra) Profile + scoring wall time.
    pub compute_time: Duration,
}

struct Calibrated {
    calibration: EntropyCalibration,
    scorer: Scorer,
    threshold: f64,
}

pub struct Monitor {
    model_id: String,
    /// The calibration's (estimator, grouping, cells), else the configured ones over all cells.
    spec: ProfileSpec,
    calibrated: Option<Calibrated>,
    hysteresis: Hysteresis,
}

impl Monitor {
    /// A monitor for the weights `model_id`, scoring when `calibration` is
    /// given (it must be for these weights and, when configured, this estimator).
    pub fn new(model_id: &str, calibration: Option<EntropyCalibration>, config: MonitorConfig) -> Result<Self, MonitorError> {
        if let Some(t) = config.threshold.filter(|t| !t.is_finite()) {
            return Err(MonitorError::Threshold(t));
        }
        let calibrated = match calibration {
            None => None,
            Some(cal) => {
                cal.check_model(model_id)?;
                if let Some(e) = config.estimator.filter(|e| *e != cal.estimator) {
                    return Err(MonitorError::EstimatorMismatch { configured: e.name(), calibrated: cal.estimator.name() });
                }
                if let Some(g) = config.grouping.filter(|g| *g != cal.grouping()) {
                    return Err(MonitorError::GroupingMismatch { configured: g.name(), calibrated: cal.grouping().name() });
                }
                let scorer = cal.scorer()?;
                Some(Calibrated { threshold: config.threshold.unwrap_or(cal.threshold), scorer, calibration: cal })
            }
        };
        let spec = match &calibrated {
            Some(c) => c.calibration.profile_spec(),
            None => ProfileSpec {
                estimator: config.estimator.unwrap_or(Estimator::Gaussian { ridge_rel: DEFAULT_RIDGE_REL }),
                grouping: config.grouping.unwrap_or_default(),
                cells: Cells::All,
            },
        };
        Ok(Self { model_id: model_id.to_string(), spec, calibrated, hysteresis: Hysteresis::new(config.hysteresis) })
    }

    pub fn estimator(&self) -> Estimator {
        self.spec.estimator
    }

    pub fn grouping(&self) -> Grouping {
        self.spec.grouping
    }

    pub fn calibration(&self) -> Option<&EntropyCalibration> {
        self.calibrated.as_ref().map(|c| &c.calibration)
    }

    /// Why anomalies are not scored, for diagnostics; `None` when calibrated.
    pub fn uncalibrated_reason(&self) -> Option<String> {
        self.calibrated.is_none().then(|| {
            format!("no Eloss calibration for model {}: anomalies are not scored (run `eloss calibrate --model MODEL --data NORMAL_KITTI_DIR`)", self.model_id)
        })
    }

    /// Profiles, scores and debounces one frame.
    pub fn observe(&mut self, layers: &LayerOutputs) -> Result<MonitorReport, MonitorError> {
        let started = Instant::now();
        let profile = EntropyProfile::compute_on(layers, self.spec)?;
        self.report(profile, started)
    }

    /// As [`observe`](Self::observe), from a profile already computed.
    pub fn observe_profile(&mut self, profile: EntropyProfile) -> Result<MonitorReport, MonitorError> {
        let started = Instant::now().checked_sub(profile.compute_time).unwrap_or_else(Instant::now);
        self.report(profile, started)
    }

    /// Forgets the alarm history (after a gap in the input).
    pub fn reset(&mut self) {
        self.hysteresis.reset();
    }

    fn report(&mut self, profile: EntropyProfile, started: Instant) -> Result<MonitorReport, MonitorError> {
        let mut r = MonitorReport {
            model_id: self.model_id.clone(),
            calibration_id: String::new(),
            estimator: profile.estimator.name(),
            eloss: profile.eloss,
            layer_entropies: profile.entropies.clone(),
            block_layer_counts: profile.block_layer_counts.clone(),
            calibrated: false,
            anomaly_score: f64::NAN,
            threshold: f64::NAN,
            deviation_factor: f64::NAN,
            mahalanobis_distance: f64::NAN,
            baseline_eloss: f64::NAN,
            baseline_factor: f64::NAN,
            anomaly: false,
            anomaly_type: String::new(),
            anomalous_frame: false,
            alarm_state: AlarmState::Normal,
            z_eloss: f64::NAN,
            z_mahalanobis: f64::NAN,
            type_guess: None,
            compute_time: Duration::ZERO,
        };
        if let Some(c) = &self.calibrated {
            let s: Scores = c.scorer.score(&profile)?;
            let sigs = c.calibration.signatures.iter().map(|t| (t.name.as_str(), t.direction.as_slice()));
            r.type_guess = nearest_type(&s.standardized, sigs);
            r.calibration_id = c.calibration.calibration_id.clone();
            r.calibrated = true;
            r.anomaly_score = s.score;
            r.threshold = c.threshold;
            r.deviation_factor = s.deviation_factor;
            r.mahalanobis_distance = s.mahalanobis;
            r.baseline_eloss = s.baseline_eloss;
            r.baseline_factor = s.baseline_factor;
            r.z_eloss = s.z_eloss;
            r.z_mahalanobis = s.z_mahalanobis;
            r.anomalous_frame = s.score > c.threshold;
            r.alarm_state = self.hysteresis.update(r.anomalous_frame);
            r.anomaly = r.alarm_state.is_alarm();
            if r.anomaly {
                r.anomaly_type = r.type_guess.as_ref().map(|g| g.name.clone()).unwrap_or_default();
            }
        }
        r.compute_time = started.elapsed();
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eloss::calibration::CalibrationOptions;
    use crate::eloss::profile::EntropyProfile;

    fn profiles(n: usize, shift: f64, seed: u64) -> Vec<EntropyProfile> {
        let mut rng = crate::dataset::sim::Rng::new(seed);
        (0..n)
            .map(|_| {
                let h: Vec<f64> = (0..6).map(|i| 40.0 - 4.0 * i as f64 + 0.3 * rng.normal() + if i == 4 { shift } else { 0.0 }).collect();
                EntropyProfile::from_entropies(Estimator::Knn, h, vec![3, 3])
            })
            .collect()
    }

    fn calibration() -> EntropyCalibration {
        let mut cal = EntropyCalibration::fit("model-a", &profiles(300, 0.0, 1), &CalibrationOptions::default(), serde_json::Value::Null).unwrap();
        cal.set_signatures(&[("up".into(), profiles(20, 20.0, 2)), ("down".into(), profiles(20, -20.0, 3))]).unwrap();
        cal
    }

    #[test]
    fn refuses_other_models_and_estimators() {
        let err = Monitor::new("model-b", Some(calibration()), MonitorConfig::default()).err().unwrap();
        assert!(matches!(err, MonitorError::Calibration(CalibrationError::ModelMismatch { .. })), "{err}");
        let cfg = MonitorConfig { estimator: Some(Estimator::Gaussian { ridge_rel: 1e-3 }), ..Default::default() };
        assert!(matches!(Monitor::new("model-a", Some(calibration()), cfg), Err(MonitorError::EstimatorMismatch { .. })));
        let cfg = MonitorConfig { grouping: Some(Grouping::Reference), ..Default::default() };
        assert!(matches!(Monitor::new("model-a", Some(calibration()), cfg), Err(MonitorError::GroupingMismatch { .. })));
        let cfg = MonitorConfig { threshold: Some(f64::NAN), ..Default::default() };
        assert!(matches!(Monitor::new("model-a", None, cfg), Err(MonitorError::Threshold(_))));
    }

    #[test]
    fn monitor_uses_the_calibration_grouping() {
        let grouped = |ps: Vec<EntropyProfile>| -> Vec<EntropyProfile> {
            ps.into_iter().map(|p| EntropyProfile::from_grouped_entropies(p.estimator, Grouping::Reference, p.entropies, p.block_layer_counts)).collect()
        };
        let cal = EntropyCalibration::fit("model-a", &grouped(profiles(100, 0.0, 1)), &CalibrationOptions::default(), serde_json::Value::Null).unwrap();
        assert_eq!(cal.grouping(), Grouping::Reference);
        let cfg = MonitorConfig { grouping: Some(Grouping::Reference), ..Default::default() };
        let mut m = Monitor::new("model-a", Some(cal.clone()), cfg).unwrap();
        assert_eq!(m.grouping(), Grouping::Reference);
        assert!(m.observe_profile(grouped(profiles(1, 0.0, 4)).remove(0)).unwrap().calibrated);
        // a per-block profile is not scored against a reference calibration
        let err = m.observe_profile(profiles(1, 0.0, 4).remove(0)).unwrap_err();
        assert!(matches!(err, MonitorError::Score(ScoreError::Grouping { .. })), "{err}");
        // the grouping travels in the file and changes its content id
        let json = serde_json::to_string(&cal).unwrap();
        assert!(json.contains(r#""grouping":"reference""#), "{json}");
        let back = EntropyCalibration::from_json(&json, std::path::Path::new("mem")).unwrap();
        assert_eq!(back.grouping(), Grouping::Reference);
        let per_block = EntropyCalibration::fit("model-a", &profiles(100, 0.0, 1), &CalibrationOptions::default(), serde_json::Value::Null).unwrap();
        assert!(!serde_json::to_string(&per_block).unwrap().contains("grouping"), "per-block files are written as before the option");
    }

    #[test]
    fn uncalibrated_reports_eloss_without_scores() {
        let mut m = Monitor::new("model-a", None, MonitorConfig::default()).unwrap();
        assert!(m.uncalibrated_reason().unwrap().contains("eloss calibrate"));
        let r = m.observe_profile(profiles(1, 0.0, 4).remove(0)).unwrap();
        assert!(!r.calibrated && !r.anomaly && r.anomaly_score.is_nan() && r.baseline_factor.is_nan() && r.calibration_id.is_empty());
        assert_eq!(r.block_layer_counts, [3, 3]);
        assert!(r.eloss.is_finite());
    }

    #[test]
    fn sustained_anomaly_alarms_with_its_type_and_recovers() {
        let cal = calibration();
        let id = cal.calibration_id.clone();
        let mut m = Monitor::new("model-a", Some(cal), MonitorConfig::default()).unwrap();
        assert!(m.uncalibrated_reason().is_none());
        let normal = profiles(30, 0.0, 5);
        let up = profiles(6, 20.0, 6);
        let mut seq: Vec<EntropyProfile> = normal[..10].to_vec();
        seq.push(up[0].clone()); // a single spike
        seq.extend_from_slice(&normal[10..15]);
        seq.extend_from_slice(&up[1..6]); // sustained
        seq.extend_from_slice(&normal[15..30]);
        let reports: Vec<MonitorReport> = seq.into_iter().map(|p| m.observe_profile(p).unwrap()).collect();
        assert!(reports.iter().all(|r| r.calibrated && r.calibration_id == id && r.threshold.is_finite()));
        assert!(reports[10].anomalous_frame && !reports[10].anomaly, "a single spike is flagged but does not alarm");
        assert!(reports[..16].iter().all(|r| !r.anomaly));
        assert!(reports[18].anomaly && reports[20].anomaly, "sustained anomaly alarms from its third frame");
        assert_eq!(reports[20].anomaly_type, "up");
        assert!(reports[20].deviation_factor > 10.0);
        // the baseline-aware Eloss is about 1 per transition on normal frames and far above on the anomaly
        let normal_mean = reports[..10].iter().map(|r| r.baseline_factor).sum::<f64>() / 10.0;
        assert!((0.2..5.0).contains(&normal_mean), "{normal_mean}");
        assert!(reports[20].baseline_factor > 20.0 * normal_mean, "{} vs {normal_mean}", reports[20].baseline_factor);
        assert!(reports.last().is_some_and(|r| !r.anomaly && r.anomaly_type.is_empty()), "recovers");
    }
}
