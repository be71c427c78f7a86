//! Anomaly scores of one entropy profile against the normal statistics.
//!
//! Raw Eloss values mean nothing across models (the kNN estimator drops its
//! constants, the Gaussian one is in nats of a model-specific feature
//! space), so every score here is relative to the model's own normal frames:
//!
//! - **deviation factor** r = Eloss / median normal Eloss (the papers'
//!   "factor over 100");
//! - **Mahalanobis distance** d of the layer entropies h from the normal mean
//!   μ under the ridge-regularised normal covariance Σ_r;
//! - both as z-scores: z_E = (ln Eloss − mean ln Eloss) / sd ln Eloss
//!   (Eloss is a variance, so right-skewed: its log is near normal), and
//!   z_M = Wilson–Hilferty(d², L) (≈ N(0, 1) when d² ~ χ²_L);
//! - the **score** used for the threshold ([`ScoreKind::Combined`], the
//!   default) = Wilson–Hilferty(d_J², L + 1) with d_J the Mahalanobis
//!   distance of the extended profile (H_1 … H_L, ln Eloss) under the joint
//!   normal covariance. It combines the two signals with the weights the
//!   normal data imply (ln Eloss is largely predictable from the H_j, so a
//!   frame is only penalised for the part of its Eloss deviation the profile
//!   does not explain), it is two-sided (anomalies move Eloss both ways: on
//!   our detector fog and snow *lower* it), and it stays one χ²-like
//!   statistic, ≈ N(0, 1) on normal data whatever the model, so it compares
//!   across models. We first used max(|z_E|, z_M): on the evaluation set its
//!   AUROC was below that of z_M alone for most types, because the noisy
//!   normal tail of |z_E| set the threshold (docs/eloss_monitor.md).
//!
//! The type guess compares the frame's standardised deviation
//! u = ((h_i − μ_i)/σ_i …, z_E) with each calibrated type signature (the
//! mean u of that type, unit length) by cosine similarity: the direction of
//! the deviation says which anomaly, its length how strong.

use super::cells::Cells;
use super::grouping::Grouping;
use super::numeric::{chi2_to_z, cholesky, mahalanobis};
use super::profile::EntropyProfile;
use serde::{Deserialize, Serialize};

/// Which score the threshold applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScoreKind {
    /// Joint Mahalanobis z of (H_1 … H_L, ln Eloss).
    #[default]
    Combined,
    /// |z_E| alone (a two-sided threshold on the deviation factor).
    Eloss,
    /// z_M alone.
    Mahalanobis,
}

impl std::str::FromStr for ScoreKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "combined" => Ok(Self::Combined),
            "eloss" => Ok(Self::Eloss),
            "mahalanobis" => Ok(Self::Mahalanobis),
            other => Err(format!("unknown score `{other}` (combined, eloss, mahalanobis)")),
        }
    }
}

/// What the normal frames look like (the fitted part of a calibration).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NormalStats {
    pub block_layer_counts: Vec<u32>,
    /// The grouping of ΔH the Eloss was computed with (a calibration
    /// written before the option has none: per block, and per-block files
    /// keep their content id because the field is then not written).
    #[serde(default, skip_serializing_if = "Grouping::is_per_block")]
    pub grouping: Grouping,
    /// The cells the entropies were estimated over (absent: all, and
    /// all-cell files keep their content id).
    #[serde(default, skip_serializing_if = "Cells::is_all")]
    pub cells: Cells,
    pub entropy_mean: Vec<f64>,
    /// Sample covariance of the layer entropies, row-major L×L, without ridge.
    pub entropy_cov: Vec<f64>,
    /// Σ_r = Σ + ridge_rel·diag(Σ) (+ 1e-12 absolute): per-layer relative, so
    /// layers of very different spread are regularised alike.
    pub ridge_rel: f64,
    pub eloss_median: f64,
    pub log_eloss_mean: f64,
    pub log_eloss_std: f64,
    /// Cov(ln Eloss, H_i) for every layer: with `entropy_cov` and
    /// `log_eloss_std`² the joint covariance of the combined score.
    pub log_eloss_cross_cov: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScoreError {
    #[error("the profile has blocks of {got:?} layers, the calibration {want:?} (another network layout)")]
    Layout { got: Vec<u32>, want: Vec<u32> },
    #[error("the profile's Eloss uses the {got} grouping, the calibration {want}")]
    Grouping { got: &'static str, want: &'static str },
    #[error("the profile's entropies are over {got} cells, the calibration's over {want}")]
    Cells { got: &'static str, want: &'static str },
    #[error("the normal statistics are unusable: {0}")]
    Stats(String),
}

/// One frame's scores.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    pub deviation_factor: f64,
    pub mahalanobis: f64,
    pub z_eloss: f64,
    pub z_mahalanobis: f64,
    /// The score of the configured [`ScoreKind`].
    pub score: f64,
    /// ((h_i − μ_i)/σ_i …, z_E): the space of the type signatures.
    pub standardized: Vec<f64>,
    /// Baseline-aware Eloss: Σ over the transitions of the grouping of
    /// ((ΔH_j − μ_j)/σ_j)², μ_j and σ_j the normal mean and spread of ΔH_j
    /// (from the calibration's entropy mean and ridged covariance). The
    /// normal pattern of ΔH is removed, so a normal frame scores about the
    /// number of transitions whatever the model.
    pub baseline_eloss: f64,
    /// `baseline_eloss` / number of transitions (≈ 1 on normal frames).
    pub baseline_factor: f64,
}

/// The nearest type signature.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeGuess {
    pub name: String,
    /// Cosine similarity in [−1, 1].
    pub similarity: f64,
}

/// Scores profiles against [`NormalStats`] (precomputes the Cholesky factor).
#[derive(Debug, Clone)]
pub struct Scorer {
    stats: NormalStats,
    kind: ScoreKind,
    /// Cholesky factors of the ridged L×L and (L+1)×(L+1) joint covariances.
    chol: Vec<f64>,
    chol_joint: Vec<f64>,
    sd: Vec<f64>,
    /// (layer index i, normal mean and sd of H_{i+1} − H_i) per transition of the grouping.
    transitions: Vec<(usize, f64, f64)>,
}

/// Normal mean and sd of every ΔH_j = H_{i+1} − H_i of the grouping's
/// transitions: μ_{i+1} − μ_i and √(Σ_{i+1,i+1} + Σ_{i,i} − 2Σ_{i,i+1}) (floored).
fn transition_stats(grouping: Grouping, counts: &[u32], mean: &[f64], cov: &[f64]) -> Vec<(usize, f64, f64)> {
    let l = mean.len();
    grouping
        .transitions(counts)
        .into_iter()
        .filter(|&i| i + 1 < l)
        .map(|i| {
            let var = cov[(i + 1) * l + i + 1] + cov[i * l + i] - 2.0 * cov[i * l + i + 1];
            let floor = 1e-12 * (cov[i * l + i] + cov[(i + 1) * l + i + 1]).max(1e-300);
            (i, mean[i + 1] - mean[i], var.max(floor).sqrt())
        })
        .collect()
}

/// Smallest Eloss used in logs: a profile with perfectly steady ΔH has
/// Eloss 0, and ln 0 would give −∞.
fn log_floor(median: f64) -> f64 {
    (median.abs() * 1e-9).max(1e-300)
}

impl Scorer {
    pub fn new(stats: NormalStats, kind: ScoreKind) -> Result<Self, ScoreError> {
        let l = stats.entropy_mean.len();
        if l == 0 || stats.entropy_cov.len() != l * l || stats.log_eloss_cross_cov.len() != l || stats.block_layer_counts.iter().sum::<u32>() as usize != l {
            return Err(ScoreError::Stats(format!("{l} layer means, {} covariance entries, blocks {:?}", stats.entropy_cov.len(), stats.block_layer_counts)));
        }
        if !(stats.ridge_rel >= 0.0 && stats.ridge_rel.is_finite()) {
            return Err(ScoreError::Stats(format!("ridge_rel {}", stats.ridge_rel)));
        }
        if !(stats.eloss_median.is_finite() && stats.log_eloss_mean.is_finite() && stats.log_eloss_std.is_finite()) {
            return Err(ScoreError::Stats("non-finite Eloss statistics".into()));
        }
        let mut reg = stats.entropy_cov.clone();
        for i in 0..l {
            reg[i * l + i] += stats.ridge_rel * stats.entropy_cov[i * l + i] + 1e-12;
        }
        let chol = cholesky(l, &reg).ok_or_else(|| ScoreError::Stats("covariance is not positive definite".into()))?;
        let j = l + 1;
        let mut joint = vec![0.0; j * j];
        for r in 0..l {
            joint[r * j..r * j + l].copy_from_slice(&reg[r * l..(r + 1) * l]);
            joint[r * j + l] = stats.log_eloss_cross_cov[r];
            joint[l * j + r] = stats.log_eloss_cross_cov[r];
        }
        joint[l * j + l] = stats.log_eloss_std.powi(2) * (1.0 + stats.ridge_rel) + 1e-12;
        let chol_joint = cholesky(j, &joint).ok_or_else(|| ScoreError::Stats("joint covariance is not positive definite".into()))?;
        let sd = (0..l).map(|i| reg[i * l + i].sqrt()).collect();
        let transitions = transition_stats(stats.grouping, &stats.block_layer_counts, &stats.entropy_mean, &reg);
        Ok(Self { stats, kind, chol, chol_joint, sd, transitions })
    }

    pub fn stats(&self) -> &NormalStats {
        &self.stats
    }

    pub fn kind(&self) -> ScoreKind {
        self.kind
    }

    pub fn score(&self, p: &EntropyProfile) -> Result<Scores, ScoreError> {
        if p.block_layer_counts != self.stats.block_layer_counts || p.entropies.len() != self.stats.entropy_mean.len() {
            return Err(ScoreError::Layout { got: p.block_layer_counts.clone(), want: self.stats.block_layer_counts.clone() });
        }
        if p.grouping != self.stats.grouping {
            return Err(ScoreError::Grouping { got: p.grouping.name(), want: self.stats.grouping.name() });
        }
        if p.cells != self.stats.cells {
            return Err(ScoreError::Cells { got: p.cells.name(), want: self.stats.cells.name() });
        }
        let l = p.entropies.len();
        let diff: Vec<f64> = p.entropies.iter().zip(&self.stats.entropy_mean).map(|(h, m)| h - m).collect();
        let d = mahalanobis(l, &self.chol, &diff);
        let s = &self.stats;
        let deviation_factor = if s.eloss_median > 0.0 { p.eloss / s.eloss_median } else { f64::INFINITY };
        let z_eloss = (log_eloss(p.eloss, s.eloss_median) - s.log_eloss_mean) / s.log_eloss_std.max(1e-12);
        let z_mahalanobis = chi2_to_z(d * d, l);
        let mut ext = diff.clone();
        ext.push(log_eloss(p.eloss, s.eloss_median) - s.log_eloss_mean);
        let d_joint = mahalanobis(l + 1, &self.chol_joint, &ext);
        let score = match self.kind {
            ScoreKind::Combined => chi2_to_z(d_joint * d_joint, l + 1),
            ScoreKind::Eloss => z_eloss.abs(),
            ScoreKind::Mahalanobis => z_mahalanobis,
        };
        let mut standardized: Vec<f64> = diff.iter().zip(&self.sd).map(|(v, sd)| v / sd).collect();
        standardized.push(z_eloss);
        let baseline_eloss: f64 = self.transitions.iter().map(|&(i, mu, sd)| ((p.entropies[i + 1] - p.entropies[i] - mu) / sd).powi(2)).sum();
        let baseline_factor = baseline_eloss / self.transitions.len().max(1) as f64;
        Ok(Scores { deviation_factor, mahalanobis: d, z_eloss, z_mahalanobis, score, standardized, baseline_eloss, baseline_factor })
    }
}

/// ln of an Eloss for the normal statistics (same floor as the scorer).
pub fn log_eloss(eloss: f64, median: f64) -> f64 {
    eloss.max(log_floor(median)).ln()
}

/// Unit-length copy (zeros stay zeros).
pub fn unit(v: &[f64]) -> Vec<f64> {
    let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    v.iter().map(|x| if n > 0.0 { x / n } else { 0.0 }).collect()
}

/// The signature (name, unit direction) most similar to `standardized`.
pub fn nearest_type<'a>(standardized: &[f64], signatures: impl IntoIterator<Item = (&'a str, &'a [f64])>) -> Option<TypeGuess> {
    let u = unit(standardized);
    signatures
        .into_iter()
        .filter(|(_, dir)| dir.len() == u.len())
        .map(|(name, dir)| TypeGuess { name: name.to_string(), similarity: u.iter().zip(dir).map(|(a, b)| a * b).sum() })
        .max_by(|a, b| a.similarity.total_cmp(&b.similarity))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eloss::entropy::Estimator;

    fn stats() -> NormalStats {
        NormalStats {
            block_layer_counts: vec![3],
            grouping: Grouping::PerBlock,
            cells: Cells::All,
            entropy_mean: vec![10.0, 8.0, 6.0],
            entropy_cov: vec![1.0, 0.0, 0.0, 0.0, 4.0, 0.0, 0.0, 0.0, 0.25],
            ridge_rel: 0.0,
            eloss_median: 0.5,
            log_eloss_mean: 0.5f64.ln(),
            log_eloss_std: 1.0,
            log_eloss_cross_cov: vec![0.0; 3],
        }
    }

    #[test]
    fn scores_by_hand() {
        let s = Scorer::new(stats(), ScoreKind::Combined).unwrap();
        // h = μ + (1, 2, 0.5): one standard deviation on every layer → d = √3
        let p = EntropyProfile::from_entropies(Estimator::Knn, vec![11.0, 10.0, 6.5], vec![3]);
        let sc = s.score(&p).unwrap();
        assert!((sc.mahalanobis - 3f64.sqrt()).abs() < 1e-9);
        // ΔH = (−1, −3.5): Eloss = var = 3.125
        assert!((p.eloss - 3.125).abs() < 1e-12);
        assert!((sc.deviation_factor - 6.25).abs() < 1e-9);
        assert!((sc.z_eloss - 6.25f64.ln()).abs() < 1e-9);
        // uncorrelated ln Eloss: the joint d² is d² + z_E², with 4 degrees of freedom
        assert!((sc.score - crate::eloss::numeric::chi2_to_z(3.0 + sc.z_eloss.powi(2), 4)).abs() < 1e-9);
        // a profile with a much steadier ΔH than normal scores high too (two-sided)
        let steady = EntropyProfile::from_entropies(Estimator::Knn, vec![10.5, 8.0, 5.5], vec![3]);
        let st = s.score(&steady).unwrap();
        assert!(st.z_eloss < -5.0 && st.score > 5.0, "{st:?}");
        assert_eq!(sc.standardized.len(), 4);
        assert!((sc.standardized[1] - 1.0).abs() < 1e-9);
        let wrong = EntropyProfile::from_entropies(Estimator::Knn, vec![1.0, 2.0], vec![2]);
        assert!(matches!(s.score(&wrong), Err(ScoreError::Layout { .. })));
        // entropies over other cells than the calibration's are refused, not scored
        let mut occupied = p.clone();
        occupied.cells = Cells::Occupied;
        assert_eq!(s.score(&occupied).unwrap_err(), ScoreError::Cells { got: "occupied", want: "all" });
        // baseline-aware: normal ΔH (−2, −2) with variances 4 + 1 and 0.25 + 4
        // (diagonal covariance): ((−1 + 2)²/5 + (−3.5 + 2)²/4.25)
        let want = 1.0 / 5.0 + 2.25 / 4.25;
        assert!((sc.baseline_eloss - want).abs() < 1e-9, "{}", sc.baseline_eloss);
        assert!((sc.baseline_factor - want / 2.0).abs() < 1e-9);
        // the normal mean profile has baseline Eloss 0
        let mean = EntropyProfile::from_entropies(Estimator::Knn, vec![10.0, 8.0, 6.0], vec![3]);
        assert!(s.score(&mean).unwrap().baseline_eloss.abs() < 1e-12);
        // zero Eloss is finite, not −∞
        let flat = EntropyProfile::from_entropies(Estimator::Knn, vec![10.0, 8.0, 6.0], vec![3]);
        assert!(s.score(&flat).unwrap().z_eloss.is_finite());
    }

    #[test]
    fn broken_stats_are_rejected() {
        let mut bad = stats();
        bad.entropy_cov[4] = -1.0;
        assert!(Scorer::new(bad, ScoreKind::Combined).is_err());
        let mut bad = stats();
        bad.entropy_mean.pop();
        assert!(Scorer::new(bad, ScoreKind::Combined).is_err());
    }

    #[test]
    fn nearest_type_uses_direction_not_length() {
        let sigs = [("fog", vec![1.0, 0.0]), ("noise", vec![0.0, 1.0])];
        let it = || sigs.iter().map(|(n, d)| (*n, d.as_slice()));
        assert_eq!(nearest_type(&[50.0, 1.0], it()).unwrap().name, "fog");
        assert_eq!(nearest_type(&[0.1, 0.3], it()).unwrap().name, "noise");
        assert!(nearest_type(&[1.0], it()).is_none());
    }
}
