//! `eloss dose-response`: how each monitor signal grows with the strength of
//! an anomaly. Clean clouds are scored as they are, then again with each
//! LiDAR anomaly of the simulator applied at each severity of a sweep (the
//! same clouds, so every severity is compared on the same scenes); per
//! (kind, severity): the raw Eloss factor (median and mean of Eloss / the
//! calibrated normal median), the baseline-aware factor, and the AUROC
//! against the clean clouds of the two-sided Eloss deviation |z_E|, the
//! baseline-aware Eloss, the Mahalanobis distance of the profile and the
//! combined score, and the detection rate at the calibrated threshold.

use super::calibration::EntropyCalibration;
use super::dataset_run::kind_name;
use super::numeric::{auroc, mean_std, median};
use super::profile::{EntropyProfile, ProfileError};
use super::score::{ScoreError, Scorer, Scores};
use crate::cloud::Points;
use crate::dataset::sim::anomalies::{Anomaly, Severity};
use crate::dataset::sim::SimError;
use crate::detect::detector::{Detector, DetectorError};
use crate::plot::{line_chart, PlotError, Series};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DoseError {
    #[error(transparent)]
    Detector(#[from] DetectorError),
    #[error(transparent)]
    Profile(#[from] ProfileError),
    #[error(transparent)]
    Score(#[from] ScoreError),
    #[error(transparent)]
    Calibration(#[from] super::calibration::CalibrationError),
    #[error(transparent)]
    Anomaly(#[from] SimError),
    #[error(transparent)]
    Plot(#[from] PlotError),
    #[error("no clean clouds to compare against")]
    NoClouds,
}

/// One (kind, severity) of the sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct DosePoint {
    pub kind: String,
    pub severity: f64,
    pub frames: usize,
    pub factor_median: f64,
    pub factor_mean: f64,
    pub baseline_factor_median: f64,
    pub auroc_eloss: f64,
    pub auroc_baseline: f64,
    pub auroc_mahalanobis: f64,
    pub auroc_score: f64,
    pub detection_rate: f64,
}

/// The clean clouds' own numbers (the reference of every AUROC).
#[derive(Debug, Clone, PartialEq)]
pub struct DoseSweep {
    pub model_id: String,
    pub calibration_id: String,
    pub estimator: &'static str,
    pub threshold: f64,
    pub clean_frames: usize,
    pub clean_factor_median: f64,
    pub clean_baseline_factor_median: f64,
    pub clean_false_alarm_rate: f64,
    pub points: Vec<DosePoint>,
}

fn score_cloud(det: &Detector, scorer: &Scorer, cal: &EntropyCalibration, points: &Points) -> Result<Scores, DoseError> {
    let out = det.detect(points)?;
    Ok(scorer.score(&EntropyProfile::compute_on(&out.layers, cal.profile_spec())?)?)
}

/// Runs the sweep: `anomalies` × `severities` over `clouds` (anomaly seeds
/// are the cloud's index, so a severity changes strength, not the draw).
/// `progress(done, total)` counts forward passes.
pub fn sweep(
    det: &Detector,
    model_id: &str,
    cal: &EntropyCalibration,
    clouds: &[Points],
    anomalies: &[Anomaly],
    severities: &[f64],
    mut progress: impl FnMut(usize, usize),
) -> Result<DoseSweep, DoseError> {
    if clouds.is_empty() {
        return Err(DoseError::NoClouds);
    }
    cal.check_model(model_id)?;
    let scorer = cal.scorer()?;
    let total = clouds.len() * (1 + anomalies.len() * severities.len());
    let mut done = 0;
    let mut clean = Vec::with_capacity(clouds.len());
    for c in clouds {
        clean.push(score_cloud(det, &scorer, cal, c)?);
        done += 1;
        progress(done, total);
    }
    let pick = |s: &[Scores], f: fn(&Scores) -> f64| s.iter().map(f).collect::<Vec<f64>>();
    let factor = |s: &Scores| s.deviation_factor;
    let baseline = |s: &Scores| s.baseline_factor;
    let eloss_dev = |s: &Scores| s.z_eloss.abs();
    let mahal = |s: &Scores| s.mahalanobis;
    let score = |s: &Scores| s.score;
    let mut points = Vec::new();
    for a in anomalies {
        for &sev in severities {
            let severity = Severity::new(sev)?;
            let mut scored = Vec::with_capacity(clouds.len());
            for (i, c) in clouds.iter().enumerate() {
                let mut p = c.clone();
                a.apply(&mut p, severity, i as u64)?;
                scored.push(score_cloud(det, &scorer, cal, &p)?);
                done += 1;
                progress(done, total);
            }
            points.push(DosePoint {
                kind: kind_name(a.kind()),
                severity: sev,
                frames: scored.len(),
                factor_median: median(&pick(&scored, factor)),
                factor_mean: mean_std(&pick(&scored, factor)).0,
                baseline_factor_median: median(&pick(&scored, baseline)),
                auroc_eloss: auroc(&pick(&clean, eloss_dev), &pick(&scored, eloss_dev)),
                auroc_baseline: auroc(&pick(&clean, baseline), &pick(&scored, baseline)),
                auroc_mahalanobis: auroc(&pick(&clean, mahal), &pick(&scored, mahal)),
                auroc_score: auroc(&pick(&clean, score), &pick(&scored, score)),
                detection_rate: scored.iter().filter(|s| s.score > cal.threshold).count() as f64 / scored.len() as f64,
            });
        }
    }
    Ok(DoseSweep {
        model_id: model_id.to_string(),
        calibration_id: cal.calibration_id.clone(),
        estimator: cal.estimator.name(),
        threshold: cal.threshold,
        clean_frames: clean.len(),
        clean_factor_median: median(&pick(&clean, factor)),
        clean_baseline_factor_median: median(&pick(&clean, baseline)),
        clean_false_alarm_rate: clean.iter().filter(|s| s.score > cal.threshold).count() as f64 / clean.len() as f64,
        points,
    })
}

/// The sweep as markdown: the setting, then one table.
pub fn markdown(s: &DoseSweep) -> String {
    let mut out = format!(
        "Model `{}`, calibration `{}`, estimator `{}`, threshold {:.3}. Clean clouds: {} (Eloss factor {:.2}, baseline-aware factor {:.2}, false-alarm rate {:.3}).\n\n",
        s.model_id, s.calibration_id, s.estimator, s.threshold, s.clean_frames, s.clean_factor_median, s.clean_baseline_factor_median, s.clean_false_alarm_rate
    );
    out.push_str("| type | severity | factor (median) | factor (mean) | baseline-aware factor | AUROC Eloss (2-sided) | AUROC baseline-aware | AUROC Mahal. | AUROC score | detection rate |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for p in &s.points {
        out.push_str(&format!(
            "| {} | {:.2} | {:.3} | {:.3} | {:.2} | {:.3} | {:.3} | {:.3} | {:.3} | {:.2} |\n",
            p.kind, p.severity, p.factor_median, p.factor_mean, p.baseline_factor_median, p.auroc_eloss, p.auroc_baseline, p.auroc_mahalanobis, p.auroc_score, p.detection_rate
        ));
    }
    out
}

/// `dose_factor.png` (log10 of the median raw and baseline-aware factors
/// against severity, one line per kind) and `dose_auroc.png` (AUROC of the
/// raw Eloss and of the combined score against severity).
pub fn plots(dir: &Path, s: &DoseSweep) -> Result<Vec<PathBuf>, DoseError> {
    let mut kinds: Vec<&str> = s.points.iter().map(|p| p.kind.as_str()).collect();
    kinds.dedup();
    let series = |f: &dyn Fn(&DosePoint) -> f64, label: &str| {
        kinds
            .iter()
            .map(|k| Series::new(format!("{k} {label}"), s.points.iter().filter(|p| p.kind == *k).map(|p| (p.severity, f(p))).collect()))
            .collect::<Vec<_>>()
    };
    let mut factor = series(&|p| p.factor_median.max(1e-12).log10(), "Eloss");
    factor.extend(series(&|p| p.baseline_factor_median.max(1e-12).log10(), "baseline-aware"));
    let mut roc = series(&|p| p.auroc_eloss, "Eloss");
    roc.extend(series(&|p| p.auroc_score, "score"));
    let f = dir.join("dose_factor.png");
    line_chart(&f, "Deviation factor against severity", "severity", "log10(median factor)", &factor, &[])?;
    let r = dir.join("dose_auroc.png");
    line_chart(&r, "AUROC against severity (vs the clean clouds)", "severity", "AUROC", &roc, &[])?;
    Ok(vec![f, r])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::sim::{Lidar, LidarConfig, SceneConfig};
    use crate::detect::checkpoint;
    use crate::eloss::calibration::CalibrationOptions;
    use crate::eloss::entropy::Estimator;
    use crate::eloss::grouping::Grouping;

    /// On a tiny random detector: the noise sweep's signals rise with the
    /// severity from the clean level, and severity 0 is the clean clouds.
    #[test]
    fn noise_sweep_rises_with_severity() {
        let det = crate::eloss::end_to_end::tiny_detector();
        let dir = tempfile::tempdir().unwrap();
        let id = checkpoint::save(&dir.path().join("m.safetensors"), &det, &serde_json::json!({}), &[]).unwrap();
        let lidar = Lidar::new(LidarConfig::vlp32()).unwrap();
        let clouds: Vec<Points> = (0..24)
            .map(|s| {
                let scene = SceneConfig::default().generate(300 + s).unwrap();
                lidar.scan(&scene, &scene.snapshot(0.0), 300 + s).points
            })
            .collect();
        let profiles: Vec<EntropyProfile> = clouds[..16].iter().map(|c| EntropyProfile::compute(&det.detect(c).unwrap().layers, Estimator::Knn, Grouping::PerBlock).unwrap()).collect();
        let cal = EntropyCalibration::fit(&id, &profiles, &CalibrationOptions { false_alarm: 0.2, ..Default::default() }, serde_json::Value::Null).unwrap();
        let mut calls = 0;
        let s = sweep(&det, &id, &cal, &clouds[16..], &[Anomaly::Noise { max_fraction: 1.0 }], &[0.0, 1.0], |d, t| {
            calls += 1;
            assert!(d <= t && t == 8 * 3);
        })
        .unwrap();
        assert_eq!(calls, 24);
        let (zero, full) = (&s.points[0], &s.points[1]);
        assert_eq!((zero.kind.as_str(), zero.severity, zero.frames), ("noise", 0.0, 8));
        // severity 0 leaves the clouds as they are: nothing to tell apart
        assert!((zero.auroc_score - 0.5).abs() < 1e-9 && (zero.factor_median - s.clean_factor_median).abs() < 1e-9, "{zero:?}");
        // as many noise points as the cloud has: every signal separates
        assert!(full.auroc_score > 0.9 && full.auroc_mahalanobis > 0.9, "{full:?}");
        assert!(full.baseline_factor_median > 3.0 * s.clean_baseline_factor_median, "{full:?} vs {}", s.clean_baseline_factor_median);
        let md = markdown(&s);
        assert!(md.contains("| noise | 1.00 |"), "{md}");
        let written = plots(dir.path(), &s).unwrap();
        assert!(written.iter().all(|p| std::fs::metadata(p).unwrap().len() > 1000));
    }
}
