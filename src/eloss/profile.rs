//! The per-frame entropy profile: what the Eloss monitor measures on the
//! compression network's layer outputs of the forward pass that made the
//! detections (no second pass; batch size 1).
//!
//! For every layer: H_j (either [`Estimator`]); for each group of layers
//! ([`Grouping`]: per block, or the reference repository's two halves),
//! ΔH_j = H_{j+1} − H_j, and Eloss = Σ_groups Var_j(ΔH_j) (unbiased; a group
//! with fewer than two ΔH adds 0) — the training term of [`super::loss`] without
//! the optional decrease term, evaluated without autograd
//! ([`super::entropy::entropy_value`]) and in f64.
//!
//! ```no_run
//! use eloss_perception::detect::detector::{Detector, DetectorConfig};
//! use eloss_perception::eloss::{entropy::Estimator, grouping::Grouping, profile::EntropyProfile};
//! let det = Detector::new(DetectorConfig::compact(), tch::Device::Cpu).unwrap();
//! let pts = eloss_perception::cloud::kitti_bin::read("../shared/data/kitti_000008/000008.bin").unwrap();
//! let out = det.detect(&pts).unwrap();
//! let p = EntropyProfile::compute(&out.layers, Estimator::Knn, Grouping::PerBlock).unwrap();
//! println!("Eloss {:.4} in {:?}", p.eloss, p.compute_time);
//! ```

use super::cells::{occupied_indices, select, subsample, Cells, CellsError};
use super::entropy::{entropy_value, Estimator};
use super::grouping::Grouping;
use crate::detect::model::backbone::LayerOutputs;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProfileError {
    #[error("no layer outputs (the backbone returned no blocks)")]
    Empty,
    #[error("block {block}, layer {layer}: shape {shape:?}, expected [1, C, H, W] (the monitor runs on batch size 1)")]
    Shape { block: usize, layer: usize, shape: Vec<i64> },
    #[error("block {block}, layer {layer}: entropy estimate is {value} (not finite)")]
    NotFinite { block: usize, layer: usize, value: f64 },
    #[error(transparent)]
    Cells(#[from] CellsError),
}

/// How a frame's profile is computed: estimator, grouping of ΔH, cells.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProfileSpec {
    pub estimator: Estimator,
    pub grouping: Grouping,
    pub cells: Cells,
}

/// One frame's layer-wise entropies and its Eloss.
#[derive(Debug, Clone, PartialEq)]
pub struct EntropyProfile {
    pub estimator: Estimator,
    /// Which transitions form one variance term of `eloss`.
    pub grouping: Grouping,
    /// Which cells the entropies are estimated over.
    pub cells: Cells,
    /// H of every layer output, forward order (nats for the Gaussian
    /// estimator; the kNN one drops the estimator's constants).
    pub entropies: Vec<f64>,
    /// Layers per block (sums to `entropies.len()`).
    pub block_layer_counts: Vec<u32>,
    /// ΔH within each group of `grouping`.
    pub delta_h: Vec<Vec<f64>>,
    /// Σ_groups Var(ΔH).
    pub eloss: f64,
    /// Wall time of the estimates (device synchronised by the value reads).
    pub compute_time: Duration,
}

impl EntropyProfile {
    /// Estimates every layer's entropy and the Eloss. Checks the shapes
    /// first (tch would panic on a wrong rank) and rejects non-finite
    /// estimates, which would poison the calibration statistics.
    pub fn compute(layers: &LayerOutputs, estimator: Estimator, grouping: Grouping) -> Result<Self, ProfileError> {
        Self::compute_on(layers, ProfileSpec { estimator, grouping, cells: Cells::All })
    }

    /// As [`Self::compute`], the entropies over the spec's [`Cells`].
    pub fn compute_on(layers: &LayerOutputs, spec: ProfileSpec) -> Result<Self, ProfileError> {
        let ProfileSpec { estimator, grouping, cells } = spec;
        if layers.blocks.iter().all(Vec::is_empty) {
            return Err(ProfileError::Empty);
        }
        for (b, block) in layers.blocks.iter().enumerate() {
            for (l, x) in block.iter().enumerate() {
                let shape = x.size();
                if shape.len() != 4 || shape[0] != 1 {
                    return Err(ProfileError::Shape { block: b, layer: l, shape });
                }
            }
        }
        let started = Instant::now();
        let occupied = if cells == Cells::Occupied { tch::no_grad(|| occupied_indices(layers))? } else { Vec::new() };
        let mut entropies = Vec::with_capacity(layers.num_layers());
        for (b, block) in layers.blocks.iter().enumerate() {
            for (l, x) in block.iter().enumerate() {
                // a host value per layer, so on CUDA the clock below sees finished work
                let value = match cells {
                    Cells::All => entropy_value(estimator, x),
                    Cells::Occupied => entropy_value(estimator, &select(x, &occupied[entropies.len()])),
                    Cells::Subsampled => entropy_value(estimator, &subsample(x)),
                };
                if !value.is_finite() {
                    return Err(ProfileError::NotFinite { block: b, layer: l, value });
                }
                entropies.push(value);
            }
        }
        let block_layer_counts: Vec<u32> = layers.blocks.iter().map(|b| b.len() as u32).collect();
        let delta_h = grouping.deltas(&entropies, &block_layer_counts);
        let eloss = eloss_of(&delta_h);
        Ok(Self { estimator, grouping, cells, entropies, block_layer_counts, delta_h, eloss, compute_time: started.elapsed() })
    }

    /// A per-block profile from given entropies (tests, replays of stored profiles).
    pub fn from_entropies(estimator: Estimator, entropies: Vec<f64>, block_layer_counts: Vec<u32>) -> Self {
        Self::from_grouped_entropies(estimator, Grouping::PerBlock, entropies, block_layer_counts)
    }

    /// As [`Self::from_entropies`] with the given grouping.
    pub fn from_grouped_entropies(estimator: Estimator, grouping: Grouping, entropies: Vec<f64>, block_layer_counts: Vec<u32>) -> Self {
        let delta_h = grouping.deltas(&entropies, &block_layer_counts);
        let eloss = eloss_of(&delta_h);
        Self { estimator, grouping, cells: Cells::All, entropies, block_layer_counts, delta_h, eloss, compute_time: Duration::ZERO }
    }
}

/// Σ over groups of the unbiased variance of ΔH (groups with < 2 ΔH add 0).
pub fn eloss_of(delta_h: &[Vec<f64>]) -> f64 {
    delta_h
        .iter()
        .filter(|d| d.len() >= 2)
        .map(|d| {
            let n = d.len() as f64;
            let mean = d.iter().sum::<f64>() / n;
            d.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eloss::loss::entropy_loss;
    use tch::{Device, Kind, Tensor};

    fn layers(seed: i64) -> LayerOutputs {
        tch::manual_seed(seed);
        let block = |c: i64, n: usize, s: i64| (0..n).map(|j| Tensor::randn([1, c, s, s], (Kind::Float, Device::Cpu)) * (1.0 + j as f64)).collect();
        LayerOutputs { blocks: vec![block(8, 3, 8), block(16, 4, 4)], input: None }
    }

    #[test]
    fn profile_equals_the_training_loss_at_batch_size_one() {
        let l = layers(5);
        for (est, grouping) in [
            (Estimator::Knn, Grouping::PerBlock),
            (Estimator::Gaussian { ridge_rel: 1e-3 }, Grouping::PerBlock),
            (Estimator::Knn, Grouping::Reference),
        ] {
            let p = EntropyProfile::compute(&l, est, grouping).unwrap();
            let t = entropy_loss(&l.blocks, est, grouping, 0.0);
            assert_eq!(p.block_layer_counts, [3, 4]);
            // per block: 2 and 3 ΔH; reference (N = 7, h = 3): layers 1..3 and 2..6
            let want_lens: &[usize] = if grouping == Grouping::Reference { &[1, 3] } else { &[2, 3] };
            assert_eq!(p.delta_h.iter().map(Vec::len).collect::<Vec<_>>(), want_lens);
            let want = t.loss.double_value(&[]);
            assert!((p.eloss - want).abs() <= 1e-4 * want.abs().max(1.0), "{}: {} vs {want}", est.name(), p.eloss);
            for (a, b) in p.entropies.iter().zip(t.entropy_values()) {
                assert!((a - b).abs() < 1e-4 * b.abs().max(1.0), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn bad_shapes_are_errors_not_panics() {
        let batch2 = LayerOutputs { blocks: vec![vec![Tensor::zeros([2, 4, 3, 3], (Kind::Float, Device::Cpu))]], input: None };
        assert!(matches!(EntropyProfile::compute(&batch2, Estimator::Knn, Grouping::PerBlock), Err(ProfileError::Shape { .. })));
        let flat = LayerOutputs { blocks: vec![vec![Tensor::zeros([4, 3], (Kind::Float, Device::Cpu))]], input: None };
        assert!(matches!(EntropyProfile::compute(&flat, Estimator::Knn, Grouping::PerBlock), Err(ProfileError::Shape { .. })));
        assert_eq!(EntropyProfile::compute(&LayerOutputs { blocks: vec![], input: None }, Estimator::Knn, Grouping::PerBlock), Err(ProfileError::Empty));
    }

    #[test]
    fn eloss_by_hand() {
        // ΔH = (−4, −8) → variance 8; a two-layer block adds nothing
        let p = EntropyProfile::from_entropies(Estimator::Knn, vec![10.0, 6.0, -2.0, 1.0, 0.0], vec![3, 2]);
        assert_eq!(p.delta_h, vec![vec![-4.0, -8.0], vec![-1.0]]);
        assert!((p.eloss - 8.0).abs() < 1e-12);
        // two blocks of three (N = 6, h = 3): per block ΔH (−4, −8) and (−1, 4):
        // 8 + 12.5; reference: layers 1..2 → (−8), layers 2..5 → (3, −1, 4): mean 2, (1 + 9 + 4)/2 = 7
        let h = vec![10.0, 6.0, -2.0, 1.0, 0.0, 4.0];
        let b = EntropyProfile::from_entropies(Estimator::Knn, h.clone(), vec![3, 3]);
        assert!((b.eloss - 20.5).abs() < 1e-12, "{}", b.eloss);
        let r = EntropyProfile::from_grouped_entropies(Estimator::Knn, Grouping::Reference, h, vec![3, 3]);
        assert_eq!(r.delta_h, vec![vec![-8.0], vec![3.0, -1.0, 4.0]]);
        assert!((r.eloss - 7.0).abs() < 1e-12, "{}", r.eloss);
    }
}
