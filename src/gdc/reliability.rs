//! How far a classifier's confidence can be trusted (issue 16): expected
//! calibration error, the reliability diagram's bins, the accuracy-coverage
//! curve and the AUROC of the "unknown" score.
//!
//! - ECE with B equal-width confidence bins over [0, 1]:
//!   ECE = Σ_b (n_b / N) · |acc_b − conf_b|, where acc_b is the fraction of
//!   the bin's predictions that are correct and conf_b their mean confidence
//!   (Guo et al. 2017; B = 15 as they use). Confidence 1.0 falls in the last bin.
//! - Accuracy-coverage: predictions sorted by a "doubt" score, ascending;
//!   keeping the least doubtful fraction c of them gives accuracy a(c).

/// One prediction: its confidence (probability of the predicted class) and
/// whether the prediction was right.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    pub confidence: f64,
    pub correct: bool,
}

/// Number of bins of the reported ECE.
pub const ECE_BINS: usize = 15;

/// One reliability bin: its range, number of predictions, mean confidence and accuracy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bin {
    pub lower: f64,
    pub upper: f64,
    pub count: usize,
    pub confidence: f64,
    pub accuracy: f64,
}

/// Equal-width bins over [0, 1] (empty bins have count 0 and NaN means).
pub fn reliability_bins(scored: &[Scored], bins: usize) -> Vec<Bin> {
    let bins = bins.max(1);
    let mut sums = vec![(0usize, 0.0f64, 0usize); bins];
    for s in scored {
        let b = ((s.confidence.clamp(0.0, 1.0) * bins as f64) as usize).min(bins - 1);
        sums[b].0 += 1;
        sums[b].1 += s.confidence;
        sums[b].2 += s.correct as usize;
    }
    sums.iter()
        .enumerate()
        .map(|(b, &(count, conf, hits))| Bin {
            lower: b as f64 / bins as f64,
            upper: (b + 1) as f64 / bins as f64,
            count,
            confidence: conf / count as f64,
            accuracy: hits as f64 / count as f64,
        })
        .collect()
}

/// Expected calibration error over `bins` equal-width bins (`None` without predictions).
pub fn expected_calibration_error(scored: &[Scored], bins: usize) -> Option<f64> {
    if scored.is_empty() {
        return None;
    }
    let n = scored.len() as f64;
    Some(
        reliability_bins(scored, bins)
            .iter()
            .filter(|b| b.count > 0)
            .map(|b| b.count as f64 / n * (b.accuracy - b.confidence).abs())
            .sum(),
    )
}

/// (coverage, accuracy) after keeping the k least doubtful predictions, for
/// k = 1..=N; `doubt[i]` belongs to `correct[i]`, larger = more doubtful.
pub fn accuracy_coverage(doubt: &[f64], correct: &[bool]) -> Vec<(f64, f64)> {
    let mut order: Vec<usize> = (0..doubt.len().min(correct.len())).collect();
    order.sort_by(|&a, &b| doubt[a].total_cmp(&doubt[b]));
    let n = order.len() as f64;
    let mut hits = 0usize;
    order
        .iter()
        .enumerate()
        .map(|(k, &i)| {
            hits += correct[i] as usize;
            ((k + 1) as f64 / n, hits as f64 / (k + 1) as f64)
        })
        .collect()
}

/// Writes the reliability diagram (accuracy against mean confidence per
/// non-empty bin, with the diagonal of perfect calibration) as a PNG.
pub fn reliability_diagram(path: &std::path::Path, title: &str, scored: &[Scored], bins: usize) -> Result<(), crate::plot::PlotError> {
    use crate::plot::{line_chart, Series};
    let points: Vec<(f64, f64)> =
        reliability_bins(scored, bins).iter().filter(|b| b.count > 0).map(|b| (b.confidence, b.accuracy)).collect();
    let ideal = Series::new("perfect calibration", vec![(0.0, 0.0), (1.0, 1.0)]);
    let model = Series::new("model (per bin)", points);
    line_chart(path, title, "confidence", "accuracy", &[ideal, model.clone()], &[model])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(confidence: f64, correct: bool) -> Scored {
        Scored { confidence, correct }
    }

    #[test]
    fn ece_matches_a_hand_computed_case() {
        // bin [0.6, 0.667): two at 0.65, one right → |0.5 − 0.65| · 2/4
        // last bin: two at 1.0, both right → 0
        let scored = [s(0.65, true), s(0.65, false), s(1.0, true), s(1.0, true)];
        let ece = expected_calibration_error(&scored, 15).unwrap();
        assert!((ece - 0.075).abs() < 1e-12, "{ece}");
        assert_eq!(expected_calibration_error(&[], 15), None);
        // perfectly calibrated: confidence 0.8, 4 of 5 right
        let calibrated: Vec<Scored> = (0..5).map(|i| s(0.8, i < 4)).collect();
        assert!(expected_calibration_error(&calibrated, 15).unwrap() < 1e-12);
    }

    #[test]
    fn accuracy_coverage_keeps_the_least_doubtful_first() {
        let curve = accuracy_coverage(&[0.1, 0.9, 0.2, 0.8], &[true, false, true, true]);
        assert_eq!(curve, vec![(0.25, 1.0), (0.5, 1.0), (0.75, 1.0), (1.0, 0.75)]);
    }
}
