//! The Eloss calibration: what normal frames look like for one model, the
//! decision threshold and (optionally) anomaly type signatures. A JSON file
//! next to the model (`<stem>.calibration.json`, [`default_path`]), written
//! by `eloss calibrate`, tied to the model's weights by `model_id`, and
//! identified by a content hash (`calibration_id`) that travels in every
//! Eloss report.
//!
//! Fitting ([`EntropyCalibration::fit`]): the normal profiles are split in
//! order into a fit part (the first 1 − `held_out_fraction`) and a held-out
//! part (contiguous, so a recorded drive's neighbouring frames do not leak
//! into both). The fit part gives [`NormalStats`]; the held-out frames are
//! scored, and the threshold is their ⌈(n+1)(1−α)⌉-th smallest score (the
//! split-conformal quantile): a new normal frame exchangeable with them
//! exceeds it with probability ≤ α. With n < 1/α − 1 no order statistic
//! guarantees α; the maximum is used and `achievable_false_alarm` says
//! 1/(n+1) instead.

use super::entropy::Estimator;
use super::grouping::Grouping;
use super::numeric::{mean_cov, mean_std, median, quantile_sorted, sorted};
use super::profile::EntropyProfile;
use super::score::{log_eloss, unit, NormalStats, ScoreError, ScoreKind, Scorer};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

pub const FORMAT: &str = "eloss_perception.eloss_calibration.v1";
/// The quantiles of the normal Eloss stored for reference.
pub const QUANTILES: [f64; 9] = [0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99];

#[derive(Debug, thiserror::Error)]
pub enum CalibrationError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not an Eloss calibration: {reason}")]
    Format { path: PathBuf, reason: String },
    #[error("{path}: content does not match its calibration_id {stored} (edited or corrupted; recalibrate)")]
    Tampered { path: PathBuf, stored: String },
    #[error("the calibration was made for model {calibration} but the loaded model is {model}: run `eloss calibrate` for this model")]
    ModelMismatch { calibration: String, model: String },
    #[error("need {need} normal frames to calibrate, got {got}")]
    TooFewFrames { got: usize, need: usize },
    #[error("profiles disagree: {0}")]
    Inconsistent(String),
    #[error("invalid option: {0}")]
    Option(String),
    #[error(transparent)]
    Score(#[from] ScoreError),
}

/// How to fit.
#[derive(Debug, Clone, PartialEq)]
pub struct CalibrationOptions {
    /// Target false-alarm rate α per frame (before hysteresis).
    pub false_alarm: f64,
    pub held_out_fraction: f64,
    pub ridge_rel: f64,
    pub score: ScoreKind,
}

impl Default for CalibrationOptions {
    fn default() -> Self {
        Self { false_alarm: 0.01, held_out_fraction: 0.3, ridge_rel: 0.01, score: ScoreKind::Combined }
    }
}

/// A (quantile, value) pair.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Quantile {
    pub q: f64,
    pub value: f64,
}

/// The mean standardised deviation of one anomaly type (see [`super::score`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TypeSignature {
    pub name: String,
    pub frames: usize,
    /// Unit vector ((h_i − μ_i)/σ_i …, z_E) averaged over the type's frames.
    pub direction: Vec<f64>,
    /// Mean layer entropies of the type (for inspection).
    pub mean_entropies: Vec<f64>,
    pub median_deviation_factor: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntropyCalibration {
    pub format: String,
    /// First 12 hex digits of the SHA-256 of this file's JSON with this field empty.
    pub calibration_id: String,
    /// The detector weights it was made for ([`crate::detect::checkpoint`]'s model id).
    pub model_id: String,
    pub estimator: Estimator,
    pub score: ScoreKind,
    pub normal: NormalStats,
    pub fit_frames: usize,
    pub held_out_frames: usize,
    pub eloss_quantiles: Vec<Quantile>,
    /// α asked for.
    pub target_false_alarm: f64,
    /// The smallest rate the held-out set can certify: max(α, 1/(n+1)).
    pub achievable_false_alarm: f64,
    /// A frame is anomalous when its score exceeds this.
    pub threshold: f64,
    /// Fraction of held-out frames above the threshold.
    pub held_out_false_alarm: f64,
    pub signatures: Vec<TypeSignature>,
    /// Free-form provenance (data folder, split, frame count, command).
    pub source: serde_json::Value,
}

/// `<dir>/<stem>.calibration.json` for model `<dir>/<stem>.<ext>`.
pub fn default_path(model: &Path) -> PathBuf {
    let stem = model.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    model.with_file_name(format!("{stem}.calibration.json"))
}

impl EntropyCalibration {
    /// Fits the normal statistics and the threshold (module docs).
    pub fn fit(model_id: &str, profiles: &[EntropyProfile], opts: &CalibrationOptions, source: serde_json::Value) -> Result<Self, CalibrationError> {
        if !(opts.false_alarm > 0.0 && opts.false_alarm < 1.0) {
            return Err(CalibrationError::Option(format!("false-alarm rate {} not in (0, 1)", opts.false_alarm)));
        }
        if !(opts.held_out_fraction > 0.0 && opts.held_out_fraction < 1.0) {
            return Err(CalibrationError::Option(format!("held-out fraction {} not in (0, 1)", opts.held_out_fraction)));
        }
        if !(opts.ridge_rel >= 0.0 && opts.ridge_rel.is_finite()) {
            return Err(CalibrationError::Option(format!("ridge {} must be finite and >= 0", opts.ridge_rel)));
        }
        const MIN_FRAMES: usize = 8;
        let first = profiles.first().ok_or(CalibrationError::TooFewFrames { got: 0, need: MIN_FRAMES })?;
        if profiles.len() < MIN_FRAMES {
            return Err(CalibrationError::TooFewFrames { got: profiles.len(), need: MIN_FRAMES });
        }
        for (i, p) in profiles.iter().enumerate() {
            if p.estimator != first.estimator
                || p.grouping != first.grouping
                || p.cells != first.cells
                || p.block_layer_counts != first.block_layer_counts
            {
                return Err(CalibrationError::Inconsistent(format!(
                    "frame {i}: {} ({}, {} cells) with blocks {:?}, frame 0: {} ({}, {} cells) with blocks {:?}",
                    p.estimator.name(),
                    p.grouping.name(),
                    p.cells.name(),
                    p.block_layer_counts,
                    first.estimator.name(),
                    first.grouping.name(),
                    first.cells.name(),
                    first.block_layer_counts
                )));
            }
        }
        let n_held = ((profiles.len() as f64 * opts.held_out_fraction).round() as usize).clamp(1, profiles.len() - 2);
        let (fit, held) = profiles.split_at(profiles.len() - n_held);
        let normal = normal_stats(fit, opts.ridge_rel);
        let scorer = Scorer::new(normal.clone(), opts.score)?;
        let held_scores = held.iter().map(|p| scorer.score(p).map(|s| s.score)).collect::<Result<Vec<_>, _>>()?;
        let (threshold, achievable) = conformal_threshold(&held_scores, opts.false_alarm);
        let held_out_false_alarm = held_scores.iter().filter(|s| **s > threshold).count() as f64 / held_scores.len() as f64;
        let all_eloss = sorted(&profiles.iter().map(|p| p.eloss).collect::<Vec<_>>());
        let mut cal = Self {
            format: FORMAT.to_string(),
            calibration_id: String::new(),
            model_id: model_id.to_string(),
            estimator: first.estimator,
            score: opts.score,
            normal,
            fit_frames: fit.len(),
            held_out_frames: held.len(),
            eloss_quantiles: QUANTILES.iter().map(|&q| Quantile { q, value: quantile_sorted(&all_eloss, q) }).collect(),
            target_false_alarm: opts.false_alarm,
            achievable_false_alarm: achievable,
            threshold,
            held_out_false_alarm,
            signatures: Vec::new(),
            source,
        };
        cal.calibration_id = cal.content_id();
        Ok(cal)
    }

    /// The grouping of ΔH its Eloss uses (the monitor computes profiles with it).
    pub fn grouping(&self) -> Grouping {
        self.normal.grouping
    }

    /// The cells its entropies are estimated over (the monitor's too).
    pub fn cells(&self) -> super::cells::Cells {
        self.normal.cells
    }

    /// How the profiles it scores must be computed (estimator, grouping, cells).
    pub fn profile_spec(&self) -> super::profile::ProfileSpec {
        super::profile::ProfileSpec { estimator: self.estimator, grouping: self.grouping(), cells: self.cells() }
    }

    /// The scorer of this calibration.
    pub fn scorer(&self) -> Result<Scorer, CalibrationError> {
        Ok(Scorer::new(self.normal.clone(), self.score)?)
    }

    /// Adds (or replaces) one signature per named group of anomalous profiles.
    pub fn set_signatures(&mut self, groups: &[(String, Vec<EntropyProfile>)]) -> Result<(), CalibrationError> {
        let scorer = self.scorer()?;
        let mut sigs = Vec::new();
        for (name, profiles) in groups.iter().filter(|(_, p)| !p.is_empty()) {
            let scores = profiles.iter().map(|p| scorer.score(p)).collect::<Result<Vec<_>, _>>()?;
            let dim = scores[0].standardized.len();
            let mean_u: Vec<f64> = (0..dim).map(|i| scores.iter().map(|s| s.standardized[i]).sum::<f64>() / scores.len() as f64).collect();
            let l = profiles[0].entropies.len();
            let mean_h = (0..l).map(|i| profiles.iter().map(|p| p.entropies[i]).sum::<f64>() / profiles.len() as f64).collect();
            sigs.push(TypeSignature {
                name: name.clone(),
                frames: profiles.len(),
                direction: unit(&mean_u),
                mean_entropies: mean_h,
                median_deviation_factor: median(&scores.iter().map(|s| s.deviation_factor).collect::<Vec<_>>()),
            });
        }
        self.signatures = sigs;
        self.calibration_id = self.content_id();
        Ok(())
    }

    /// Refuses to score for other weights.
    pub fn check_model(&self, model_id: &str) -> Result<(), CalibrationError> {
        if self.model_id == model_id {
            Ok(())
        } else {
            Err(CalibrationError::ModelMismatch { calibration: self.model_id.clone(), model: model_id.to_string() })
        }
    }

    fn content_id(&self) -> String {
        let mut c = self.clone();
        c.calibration_id.clear();
        let value = serde_json::to_value(&c).expect("a calibration serialises");
        let json = serde_json::to_vec(&canonical(&value)).expect("a JSON value serialises");
        Sha256::digest(&json).iter().take(6).map(|b| format!("{b:02x}")).collect()
    }

    /// Writes pretty JSON via a temporary file and a rename.
    pub fn save(&self, path: &Path) -> Result<(), CalibrationError> {
        let io = |source| CalibrationError::Io { path: path.to_path_buf(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = path.with_extension("json.partial");
        let json = serde_json::to_string_pretty(self).expect("a calibration serialises");
        std::fs::write(&tmp, json).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Reads and checks a calibration: format, content id, and that its
    /// statistics make a scorer.
    pub fn load(path: &Path) -> Result<Self, CalibrationError> {
        let text = std::fs::read_to_string(path).map_err(|source| CalibrationError::Io { path: path.to_path_buf(), source })?;
        Self::from_json(&text, path)
    }

    /// As [`load`](Self::load), from the file's text (e.g. compiled into the
    /// node next to its embedded model); `path` names it in errors.
    pub fn from_json(text: &str, path: &Path) -> Result<Self, CalibrationError> {
        let format_err = |reason: String| CalibrationError::Format { path: path.to_path_buf(), reason };
        let raw: serde_json::Value = serde_json::from_str(text).map_err(|e| format_err(e.to_string()))?;
        match raw.get("format").and_then(|f| f.as_str()) {
            Some(FORMAT) => {}
            other => return Err(format_err(format!("format {other:?}, expected {FORMAT:?}"))),
        }
        let cal: Self = serde_json::from_value(raw).map_err(|e| format_err(e.to_string()))?;
        if cal.content_id() != cal.calibration_id {
            return Err(CalibrationError::Tampered { path: path.to_path_buf(), stored: cal.calibration_id });
        }
        cal.scorer().map_err(|e| format_err(e.to_string()))?;
        if !cal.threshold.is_finite() {
            return Err(format_err(format!("threshold {}", cal.threshold)));
        }
        Ok(cal)
    }
}

/// `v` with every non-integer number written as a 10-significant-digit
/// string: serde_json's default float parser may land one ulp off the value
/// that was written, which must not change the content id of a file.
fn canonical(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Number(n) if n.is_f64() => Value::String(format!("{:.9e}", n.as_f64().unwrap_or(f64::NAN))),
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, x)| (k.clone(), canonical(x))).collect()),
        other => other.clone(),
    }
}

/// Mean/covariance of the entropies and the log-Eloss moments.
fn normal_stats(fit: &[EntropyProfile], ridge_rel: f64) -> NormalStats {
    let rows: Vec<Vec<f64>> = fit.iter().map(|p| p.entropies.clone()).collect();
    let (entropy_mean, entropy_cov) = mean_cov(&rows);
    let eloss: Vec<f64> = fit.iter().map(|p| p.eloss).collect();
    let eloss_median = median(&eloss);
    let logs: Vec<f64> = eloss.iter().map(|&e| log_eloss(e, eloss_median)).collect();
    let (log_eloss_mean, log_eloss_std) = mean_std(&logs);
    let denom = (fit.len() as f64 - 1.0).max(1.0);
    let log_eloss_cross_cov = (0..entropy_mean.len())
        .map(|i| rows.iter().zip(&logs).map(|(r, lg)| (r[i] - entropy_mean[i]) * (lg - log_eloss_mean)).sum::<f64>() / denom)
        .collect();
    NormalStats {
        block_layer_counts: fit[0].block_layer_counts.clone(),
        grouping: fit[0].grouping,
        cells: fit[0].cells,
        entropy_mean,
        entropy_cov,
        ridge_rel,
        eloss_median,
        log_eloss_mean,
        log_eloss_std,
        log_eloss_cross_cov,
    }
}

/// The split-conformal threshold for rate α and the rate it can certify.
pub fn conformal_threshold(scores: &[f64], alpha: f64) -> (f64, f64) {
    let s = sorted(scores);
    let n = s.len();
    if n == 0 {
        return (f64::NAN, 1.0);
    }
    let k = ((n as f64 + 1.0) * (1.0 - alpha)).ceil() as usize;
    if k <= n {
        (s[k.max(1) - 1], alpha)
    } else {
        (s[n - 1], 1.0 / (n as f64 + 1.0))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::dataset::sim::Rng;

    /// Synthetic normal profiles: 2 blocks of 3 layers, correlated Gaussian entropies.
    pub(crate) fn normal_profiles(n: usize, seed: u64) -> Vec<EntropyProfile> {
        let mut rng = Rng::new(seed);
        (0..n)
            .map(|_| {
                let common = rng.normal();
                let h: Vec<f64> = (0..6).map(|i| 50.0 - 5.0 * i as f64 + 0.5 * common + 0.3 * rng.normal()).collect();
                EntropyProfile::from_entropies(Estimator::Gaussian { ridge_rel: 1e-3 }, h, vec![3, 3])
            })
            .collect()
    }

    #[test]
    fn threshold_meets_its_false_alarm_rate_on_new_normal_frames() {
        let cal = EntropyCalibration::fit("m", &normal_profiles(1000, 1), &CalibrationOptions { false_alarm: 0.05, ..Default::default() }, serde_json::Value::Null).unwrap();
        assert_eq!((cal.fit_frames, cal.held_out_frames), (700, 300));
        assert!(cal.held_out_false_alarm <= 0.05, "{}", cal.held_out_false_alarm);
        let scorer = cal.scorer().unwrap();
        let fresh = normal_profiles(4000, 2);
        let rate = fresh.iter().filter(|p| scorer.score(p).unwrap().score > cal.threshold).count() as f64 / fresh.len() as f64;
        // α = 0.05 with a 300-frame held-out set: the realised rate has sd ≈ 0.013 around ≤ 0.05
        assert!(rate < 0.05 + 0.03, "false-alarm rate on new normal frames {rate}");
        assert!(rate > 0.005, "threshold far too conservative: {rate}");
        // too few held-out frames for α = 0.001: the maximum, and the certifiable rate says so
        let small = EntropyCalibration::fit("m", &normal_profiles(40, 3), &CalibrationOptions { false_alarm: 0.001, ..Default::default() }, serde_json::Value::Null).unwrap();
        assert!((small.achievable_false_alarm - 1.0 / 13.0).abs() < 1e-12);
        assert_eq!(small.held_out_false_alarm, 0.0);
    }

    /// Hand-computed order statistics: k = ⌈(n+1)(1−α)⌉, the k-th smallest score.
    #[test]
    fn conformal_threshold_hand_computed_cases() {
        // n = 5, α = 0.2: k = ⌈6·0.8⌉ = ⌈4.8⌉ = 5 → the largest (input order does not matter)
        assert_eq!(conformal_threshold(&[5.0, 1.0, 4.0, 2.0, 3.0], 0.2), (5.0, 0.2));
        // n = 19 (scores 1..19), α = 0.25: k = ⌈20·0.75⌉ = 15
        let s19: Vec<f64> = (1..=19).rev().map(f64::from).collect();
        assert_eq!(conformal_threshold(&s19, 0.25), (15.0, 0.25));
        // α = 0.5: k = ⌈10⌉ = 10
        assert_eq!(conformal_threshold(&s19, 0.5), (10.0, 0.5));
        // n = 99 (scores 0..98), α = 0.05: k = ⌈100·0.95⌉ = 95 → score 94; 4 of 99 lie above it
        let s99: Vec<f64> = (0..99).map(f64::from).collect();
        assert_eq!(conformal_threshold(&s99, 0.05), (94.0, 0.05));
        // n = 10, α = 0.05: k = ⌈10.45⌉ = 11 > n → the maximum, certifying only 1/(n+1)
        let s10: Vec<f64> = (0..10).map(f64::from).collect();
        assert_eq!(conformal_threshold(&s10, 0.05), (9.0, 1.0 / 11.0));
        // n = 1, α = 0.9: k = ⌈0.2⌉ = 1
        assert_eq!(conformal_threshold(&[7.0], 0.9), (7.0, 0.9));
        let (t, a) = conformal_threshold(&[], 0.05);
        assert!(t.is_nan() && a == 1.0);
    }

    /// Averaged over 20 calibrations (independent seeds), the false-alarm
    /// rate on fresh normal frames is the split-conformal value
    /// 1 − k/(n+1) = 15/301 = 0.0498 (n = 300 held out, α = 0.05):
    /// per seed sd ≈ 0.013, the mean's ≈ 0.003; the band is ±0.01.
    #[test]
    fn false_alarm_rate_averaged_over_seeds_is_the_conformal_rate() {
        let opts = CalibrationOptions { false_alarm: 0.05, ..Default::default() };
        let seeds = 20;
        let mut total = 0.0;
        for seed in 0..seeds {
            let cal = EntropyCalibration::fit("m", &normal_profiles(1000, 100 + seed), &opts, serde_json::Value::Null).unwrap();
            assert_eq!(cal.held_out_frames, 300);
            let scorer = cal.scorer().unwrap();
            let fresh = normal_profiles(2000, 10_000 + seed);
            total += fresh.iter().filter(|p| scorer.score(p).unwrap().score > cal.threshold).count() as f64 / fresh.len() as f64;
        }
        let mean = total / seeds as f64;
        let expected = 1.0 - 286.0 / 301.0;
        assert!((mean - expected).abs() < 0.01, "mean false-alarm rate {mean}, conformal {expected}");
    }

    #[test]
    fn save_load_round_trip_and_model_check() {
        let dir = tempfile::tempdir().unwrap();
        let mut cal = EntropyCalibration::fit("abc123", &normal_profiles(60, 4), &CalibrationOptions::default(), serde_json::json!({"data": "x"})).unwrap();
        let id_before = cal.calibration_id.clone();
        let strong: Vec<EntropyProfile> = normal_profiles(5, 9)
            .into_iter()
            .map(|p| {
                let mut h = p.entropies.clone();
                h[1] += 30.0;
                EntropyProfile::from_entropies(p.estimator, h, p.block_layer_counts)
            })
            .collect();
        cal.set_signatures(&[("noise".into(), strong)]).unwrap();
        assert_ne!(cal.calibration_id, id_before, "signatures are part of the content id");
        let path = default_path(&dir.path().join("last.safetensors"));
        assert_eq!(path.file_name().unwrap(), "last.calibration.json");
        cal.save(&path).unwrap();
        let back = EntropyCalibration::load(&path).unwrap();
        assert_eq!(back.calibration_id, cal.calibration_id);
        assert_eq!(back.signatures.len(), 1);
        assert!((back.threshold - cal.threshold).abs() <= 1e-12 * cal.threshold.abs());
        assert!(back.check_model("abc123").is_ok());
        let err = back.check_model("ffffff").unwrap_err();
        assert!(matches!(err, CalibrationError::ModelMismatch { .. }));
        assert!(err.to_string().contains("eloss calibrate"), "{err}");
        // an edited file is caught
        let text = std::fs::read_to_string(&path).unwrap().replace("\"abc123\"", "\"abc124\"");
        std::fs::write(&path, text).unwrap();
        assert!(matches!(EntropyCalibration::load(&path), Err(CalibrationError::Tampered { .. })));
        // missing and foreign files
        assert!(matches!(EntropyCalibration::load(&dir.path().join("none.json")), Err(CalibrationError::Io { .. })));
        std::fs::write(&path, "{\"format\": \"other\"}").unwrap();
        assert!(matches!(EntropyCalibration::load(&path), Err(CalibrationError::Format { .. })));
        std::fs::write(&path, "not json").unwrap();
        assert!(matches!(EntropyCalibration::load(&path), Err(CalibrationError::Format { .. })));
    }

    #[test]
    fn bad_inputs_are_errors() {
        let p = normal_profiles(20, 5);
        let fit = |ps: &[EntropyProfile], o: CalibrationOptions| EntropyCalibration::fit("m", ps, &o, serde_json::Value::Null);
        assert!(matches!(fit(&p[..3], CalibrationOptions::default()), Err(CalibrationError::TooFewFrames { got: 3, .. })));
        assert!(matches!(fit(&p, CalibrationOptions { false_alarm: 0.0, ..Default::default() }), Err(CalibrationError::Option(_))));
        let mut mixed = p.clone();
        mixed[4] = EntropyProfile::from_entropies(Estimator::Knn, mixed[4].entropies.clone(), vec![3, 3]);
        assert!(matches!(fit(&mixed, CalibrationOptions::default()), Err(CalibrationError::Inconsistent(_))));
    }
}
