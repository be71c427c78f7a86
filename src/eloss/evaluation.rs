//! `eloss eloss-eval`: how well a calibrated monitor separates injected
//! anomalies from normal frames, per anomaly type and severity.
//!
//! Per (type, severity) against the clean frames of the same set:
//! - deviation factor: median Eloss of the type / the calibrated normal median;
//! - AUROC of the combined score, and of its two parts (|z_E|: the two-sided
//!   Eloss deviation; the Mahalanobis distance);
//! - detection rate: fraction of the type's frames whose score exceeds the
//!   calibrated threshold (per frame, before hysteresis);
//! - type accuracy: fraction whose nearest signature is their type (when
//!   the calibration has signatures);
//! - AP degradation: KITTI Car AP_R40 (bird's-eye view, Moderate) of the
//!   clean frames minus that of the type's frames.

use super::calibration::EntropyCalibration;
use super::dataset_run::{kind_name, FrameRecord};
use super::numeric::{auroc, mean_std, median};
use super::score::{nearest_type, ScoreError, Scores};
use crate::dataset::kitti::{Difficulty, ObjectClass, ObjectLabel};
use crate::eval::{evaluate, EvalConfig, EvalError, Metric};
use crate::plot::{histograms, line_chart, Histogram, PlotError, Series, VLine};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum EvaluationError {
    #[error(transparent)]
    Score(#[from] ScoreError),
    #[error(transparent)]
    Eval(#[from] EvalError),
    #[error(transparent)]
    Plot(#[from] PlotError),
    #[error(transparent)]
    Calibration(#[from] super::calibration::CalibrationError),
    #[error("no clean frames to compare against (the set needs frames without an injected anomaly)")]
    NoNormalFrames,
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeRow {
    pub kind: String,
    pub severity: f64,
    pub frames: usize,
    /// Median and mean of Eloss / calibrated normal median.
    pub deviation_factor: f64,
    pub mean_deviation_factor: f64,
    /// Median baseline-aware factor (≈ 1 on normal frames).
    pub baseline_factor: f64,
    pub auroc_score: f64,
    pub auroc_baseline: f64,
    pub auroc_eloss: f64,
    pub auroc_mahalanobis: f64,
    pub detection_rate: f64,
    pub type_accuracy: Option<f64>,
    pub ap: Option<f64>,
    pub ap_drop: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EvalSummary {
    pub model_id: String,
    pub calibration_id: String,
    pub estimator: &'static str,
    /// Which score the threshold applies to (`combined`, `eloss`, `mahalanobis`).
    pub score_kind: String,
    pub threshold: f64,
    pub normal_frames: usize,
    /// Eloss of the set's clean frames / calibrated median (≈ 1 when the set matches the calibration data).
    pub normal_deviation_factor: f64,
    /// Median baseline-aware factor of the set's clean frames (≈ 1).
    pub normal_baseline_factor: f64,
    /// Clean frames above the threshold.
    pub false_alarm_rate: f64,
    pub normal_ap: Option<f64>,
    pub rows: Vec<TypeRow>,
    pub mean_detect_ms: f64,
    pub mean_profile_ms: f64,
}

/// The per-frame scores of a run.
pub fn score_frames(cal: &EntropyCalibration, frames: &[FrameRecord]) -> Result<Vec<Scores>, EvaluationError> {
    let scorer = cal.scorer()?;
    Ok(frames.iter().map(|f| scorer.score(&f.profile)).collect::<Result<Vec<_>, _>>()?)
}

/// Car AP_R40, bird's-eye view, Moderate (percent); None without frames.
/// BEV rather than 3D and Car only: a compact CPU model early in training
/// has ≈ 0 AP in 3D and for the small classes, where no drop can show.
fn car_bev_ap(frames: &[&FrameRecord]) -> Result<Option<f64>, EvaluationError> {
    let (gt, dt): (Vec<Vec<ObjectLabel>>, Vec<Vec<ObjectLabel>>) = frames.iter().filter_map(|f| f.labels.clone()).unzip();
    if gt.is_empty() {
        return Ok(None);
    }
    let report = evaluate(&gt, &dt, &EvalConfig::default())?;
    Ok(report.ap(ObjectClass::Car, Metric::Bev, Difficulty::Moderate, true))
}

pub fn summarize(cal: &EntropyCalibration, frames: &[FrameRecord], scores: &[Scores]) -> Result<EvalSummary, EvaluationError> {
    let normal: Vec<usize> = (0..frames.len()).filter(|&i| frames[i].is_clean()).collect();
    if normal.is_empty() {
        return Err(EvaluationError::NoNormalFrames);
    }
    let pick = |idx: &[usize], f: &dyn Fn(&Scores) -> f64| idx.iter().map(|&i| f(&scores[i])).collect::<Vec<f64>>();
    let score = |s: &Scores| s.score;
    let ratio = |s: &Scores| s.deviation_factor;
    // two-sided, as in the score: anomalies move Eloss up or down
    let eloss_dev = |s: &Scores| s.z_eloss.abs();
    let mahal = |s: &Scores| s.mahalanobis;
    let baseline = |s: &Scores| s.baseline_factor;
    let (n_score, n_ratio, n_mahal) = (pick(&normal, &score), pick(&normal, &ratio), pick(&normal, &mahal));
    let n_dev = pick(&normal, &eloss_dev);
    let n_baseline = pick(&normal, &baseline);
    let normal_refs: Vec<&FrameRecord> = normal.iter().map(|&i| &frames[i]).collect();
    let normal_ap = car_bev_ap(&normal_refs)?;
    // group anomalous frames by (kind, severity); severities compare by their printed value
    let mut groups: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
    for (i, f) in frames.iter().enumerate() {
        if let Some((kind, sev)) = f.lidar_anomaly {
            groups.entry((kind_name(kind), format!("{sev:.2}"))).or_default().push(i);
        }
    }
    let sigs: Vec<(&str, &[f64])> = cal.signatures.iter().map(|s| (s.name.as_str(), s.direction.as_slice())).collect();
    let mut rows = Vec::new();
    for ((kind, sev), idx) in groups {
        let refs: Vec<&FrameRecord> = idx.iter().map(|&i| &frames[i]).collect();
        let ap = car_bev_ap(&refs)?;
        let type_accuracy = (!sigs.is_empty()).then(|| {
            let hits = idx.iter().filter(|&&i| nearest_type(&scores[i].standardized, sigs.iter().copied()).is_some_and(|g| g.name == kind)).count();
            hits as f64 / idx.len() as f64
        });
        let s = pick(&idx, &score);
        rows.push(TypeRow {
            severity: sev.parse().unwrap_or(f64::NAN),
            frames: idx.len(),
            deviation_factor: median(&pick(&idx, &ratio)),
            mean_deviation_factor: mean_std(&pick(&idx, &ratio)).0,
            baseline_factor: median(&pick(&idx, &baseline)),
            auroc_score: auroc(&n_score, &s),
            auroc_baseline: auroc(&n_baseline, &pick(&idx, &baseline)),
            auroc_eloss: auroc(&n_dev, &pick(&idx, &eloss_dev)),
            auroc_mahalanobis: auroc(&n_mahal, &pick(&idx, &mahal)),
            detection_rate: s.iter().filter(|v| **v > cal.threshold).count() as f64 / idx.len() as f64,
            type_accuracy,
            ap_drop: normal_ap.zip(ap).map(|(n, a)| n - a),
            ap,
            kind,
        });
    }
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    Ok(EvalSummary {
        model_id: cal.model_id.clone(),
        calibration_id: cal.calibration_id.clone(),
        estimator: cal.estimator.name(),
        score_kind: format!("{:?}", cal.score).to_lowercase(),
        threshold: cal.threshold,
        normal_frames: normal.len(),
        normal_deviation_factor: median(&n_ratio),
        normal_baseline_factor: median(&n_baseline),
        false_alarm_rate: n_score.iter().filter(|v| **v > cal.threshold).count() as f64 / n_score.len() as f64,
        normal_ap,
        rows,
        mean_detect_ms: frames.iter().map(|f| ms(f.detect_time)).sum::<f64>() / frames.len() as f64,
        mean_profile_ms: frames.iter().map(|f| ms(f.profile.compute_time)).sum::<f64>() / frames.len() as f64,
    })
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "n/a".into(), |v| format!("{v:.digits$}"))
}

/// The report as markdown: a header with the setting, then one table.
pub fn markdown(s: &EvalSummary) -> String {
    let mut out = format!(
        "Model `{}`, calibration `{}`, estimator `{}`, threshold {:.3} on the {} score.\n\
         Clean frames: {} (Eloss / calibrated median: {:.2}; baseline-aware factor: {:.2}; false-alarm rate per frame {:.3}; Car AP BEV mod. R40 {}).\n\
         Per frame: detector {:.1} ms, Eloss profile {:.2} ms ({:.1} % of the detector).\n\n",
        s.model_id,
        s.calibration_id,
        s.estimator,
        s.threshold,
        s.score_kind,
        s.normal_frames,
        s.normal_deviation_factor,
        s.normal_baseline_factor,
        s.false_alarm_rate,
        opt(s.normal_ap, 2),
        s.mean_detect_ms,
        s.mean_profile_ms,
        100.0 * s.mean_profile_ms / s.mean_detect_ms.max(1e-9),
    );
    out.push_str("| type | severity | frames | deviation factor (median) | (mean) | baseline-aware factor | AUROC score | AUROC Eloss (2-sided) | AUROC baseline-aware | AUROC Mahal. | detection rate | type acc. | Car AP BEV | AP drop |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in &s.rows {
        out.push_str(&format!(
            "| {} | {:.2} | {} | {:.2} | {:.2} | {:.2} | {:.3} | {:.3} | {:.3} | {:.3} | {:.2} | {} | {} | {} |\n",
            r.kind,
            r.severity,
            r.frames,
            r.deviation_factor,
            r.mean_deviation_factor,
            r.baseline_factor,
            r.auroc_score,
            r.auroc_eloss,
            r.auroc_baseline,
            r.auroc_mahalanobis,
            r.detection_rate,
            opt(r.type_accuracy, 2),
            opt(r.ap, 2),
            opt(r.ap_drop, 2),
        ));
    }
    out
}

/// `eloss_sequence.png` (log10 Eloss / normal median over the frames, anomalous
/// frames marked by type), `score_sequence.png` (score and threshold) and
/// `score_hist.png` (score distribution per type, threshold marked); scores
/// are drawn as asinh(score).
pub fn plots(dir: &Path, cal: &EntropyCalibration, frames: &[FrameRecord], scores: &[Scores]) -> Result<Vec<PathBuf>, EvaluationError> {
    std::fs::create_dir_all(dir).map_err(|source| EvaluationError::Io { path: dir.to_path_buf(), source })?;
    let log_ratio: Vec<(f64, f64)> = scores.iter().enumerate().map(|(i, s)| (i as f64, s.deviation_factor.max(1e-12).log10())).collect();
    // asinh: linear near the threshold, logarithmic for the scores of strong anomalies (10³ and more)
    let score: Vec<(f64, f64)> = scores.iter().enumerate().map(|(i, s)| (i as f64, s.score.asinh())).collect();
    let mut by_kind: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, f) in frames.iter().enumerate() {
        if let Some((k, _)) = f.lidar_anomaly {
            by_kind.entry(kind_name(k)).or_default().push(i);
        }
    }
    let marks = |pts: &[(f64, f64)]| by_kind.iter().map(|(k, idx)| Series::new(k.clone(), idx.iter().map(|&i| pts[i]).collect())).collect::<Vec<_>>();
    let mut written = Vec::new();
    let p = dir.join("eloss_sequence.png");
    line_chart(&p, "Eloss over the frames (anomalous frames marked)", "frame", "log10(Eloss / normal median)", &[Series::new("Eloss", log_ratio.clone())], &marks(&log_ratio))?;
    written.push(p);
    let p = dir.join("score_sequence.png");
    let thr = Series::new("threshold", vec![(0.0, cal.threshold.asinh()), ((frames.len().max(1) - 1) as f64, cal.threshold.asinh())]);
    line_chart(&p, "Anomaly score over the frames", "frame", "asinh(score)", &[Series::new("score", score.clone()), thr], &marks(&score))?;
    written.push(p);
    let mut hists = vec![Histogram { name: "normal".into(), values: frames.iter().zip(scores).filter(|(f, _)| f.is_clean()).map(|(_, s)| s.score.asinh()).collect() }];
    for (k, idx) in &by_kind {
        hists.push(Histogram { name: k.clone(), values: idx.iter().map(|&i| scores[i].score.asinh()).collect() });
    }
    let p = dir.join("score_hist.png");
    histograms(&p, "Anomaly score per type", "asinh(score)", &hists, 40, &[VLine { name: "threshold".into(), x: cal.threshold.asinh() }])?;
    written.push(p);
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::sim::AnomalyKind;
    use crate::eloss::calibration::{tests::normal_profiles, CalibrationOptions};
    use std::time::Duration;

    fn scores(score: f64, factor: f64, mahalanobis: f64) -> Scores {
        Scores {
            deviation_factor: factor,
            mahalanobis,
            z_eloss: factor - 1.0,
            z_mahalanobis: 0.0,
            score,
            standardized: vec![0.0; 7],
            baseline_eloss: 0.0,
            baseline_factor: factor,
        }
    }

    /// The eloss_monitor.md table's numbers from hand-made scores: clean
    /// frames are those without a LiDAR or camera anomaly; rows group by
    /// (type, severity at 2 decimals); AUROC, detection and false-alarm
    /// rates against the calibrated threshold; medians and means.
    #[test]
    fn summarize_hand_computed_table() {
        let mut cal = EntropyCalibration::fit("m", &normal_profiles(40, 1), &CalibrationOptions::default(), serde_json::Value::Null).unwrap();
        cal.threshold = 2.5;
        let profile = normal_profiles(1, 2).remove(0);
        let frame = |lidar: Option<(AnomalyKind, f64)>, camera: bool, ms: u64| FrameRecord {
            id: String::new(),
            profile: profile.clone(),
            detect_time: Duration::from_millis(ms),
            lidar_anomaly: lidar,
            camera_anomaly: camera,
            labels: None,
        };
        let fog = Some((AnomalyKind::Fog, 0.5));
        let frames = vec![
            frame(None, false, 10),
            frame(None, false, 10),
            frame(None, false, 10),
            frame(fog, false, 20),
            frame(Some((AnomalyKind::Fog, 0.500_000_1)), false, 20), // the same row at 2 decimals
            frame(fog, false, 20),
            frame(Some((AnomalyKind::Noise, 1.0)), false, 30),
            frame(None, true, 40), // camera-only: neither clean nor a LiDAR row
        ];
        let s = vec![
            scores(1.0, 0.9, 1.0),
            scores(2.0, 1.0, 2.0),
            scores(4.0, 1.2, 3.0),
            scores(3.0, 2.0, 0.5),
            scores(5.0, 3.0, 2.5),
            scores(0.5, 10.0, 4.0),
            scores(9.0, 50.0, 9.0),
            scores(100.0, 100.0, 100.0),
        ];
        let sum = summarize(&cal, &frames, &s).unwrap();
        assert_eq!(sum.normal_frames, 3);
        assert_eq!(sum.normal_deviation_factor, 1.0);
        assert!((sum.false_alarm_rate - 1.0 / 3.0).abs() < 1e-12, "only 4.0 exceeds 2.5");
        assert_eq!(sum.normal_ap, None, "no labels, no AP");
        assert!((sum.mean_detect_ms - 160.0 / 8.0).abs() < 1e-9);
        assert_eq!(sum.rows.len(), 2);
        let fog = &sum.rows[0];
        assert_eq!((fog.kind.as_str(), fog.severity, fog.frames), ("fog", 0.5, 3));
        assert_eq!((fog.deviation_factor, fog.mean_deviation_factor), (3.0, 5.0));
        // score 3 beats 1, 2; 5 beats all three; 0.5 none: 5 of 9 pairs
        assert!((fog.auroc_score - 5.0 / 9.0).abs() < 1e-12, "{}", fog.auroc_score);
        // Mahalanobis 0.5 beats none, 2.5 beats 1, 2, 4 beats all: 5 of 9
        assert!((fog.auroc_mahalanobis - 5.0 / 9.0).abs() < 1e-12);
        // |z_E| = factor − 1: 1, 2, 9 against 0.1, 0, 0.2: all 9 pairs
        assert_eq!(fog.auroc_eloss, 1.0);
        assert!((fog.detection_rate - 2.0 / 3.0).abs() < 1e-12, "3 and 5 exceed 2.5");
        assert_eq!((fog.type_accuracy, fog.ap, fog.ap_drop), (None, None, None));
        let noise = &sum.rows[1];
        assert_eq!((noise.kind.as_str(), noise.frames, noise.auroc_score, noise.detection_rate), ("noise", 1, 1.0, 1.0));
        // no clean frame at all: an error, not NaN rows
        let anomalous: Vec<FrameRecord> = frames[3..7].to_vec();
        assert!(matches!(summarize(&cal, &anomalous, &s[3..7]), Err(EvaluationError::NoNormalFrames)));
    }
}
