//! The Entropy Loss term: within each group of layers ([`Grouping`]: per
//! backbone block, or the reference repository's two index halves), the
//! entropy change between consecutive layers ΔH_j = H_{j+1} − H_j should be
//! steady, so the loss is Σ_groups Var_j(ΔH_j) (unbiased variance, as
//! torch.var; a group with fewer than two ΔH contributes 0). Optionally a term rewarding
//! decrease, λ_dec · Σ mean(relu(ΔH)), which the reference repo has but
//! leaves commented out. The same value at inference, batch size 1, is the
//! per-frame Eloss of the anomaly monitor.

use super::entropy::Estimator;
use super::grouping::Grouping;
use tch::{Kind, Tensor};

/// Per-layer entropies (grouped by block) and the resulting Eloss.
#[derive(Debug)]
pub struct ElossTerms {
    /// H of every layer, grouped by block: 0-d tensors (differentiable).
    pub entropies: Vec<Vec<Tensor>>,
    /// Σ_groups Var(ΔH) (+ the decrease term when requested).
    pub loss: Tensor,
}

impl ElossTerms {
    /// The entropies as plain numbers, in forward order.
    pub fn entropy_values(&self) -> Vec<f64> {
        self.entropies.iter().flatten().map(|h| h.double_value(&[])).collect()
    }
}

/// Computes the Entropy Loss from the compression network's layer outputs.
pub fn entropy_loss(blocks: &[Vec<Tensor>], estimator: Estimator, grouping: Grouping, decrease_weight: f64) -> ElossTerms {
    let entropies: Vec<Vec<Tensor>> = blocks.iter().map(|b| b.iter().map(|x| estimator.entropy(x)).collect()).collect();
    // on the layers' device (a model without layer outputs has no device: its 0 stays a CPU scalar)
    let device = blocks.iter().flatten().next().map_or(tch::Device::Cpu, Tensor::device); // cpu: no layer output to take a device from
    let flat: Vec<&Tensor> = entropies.iter().flatten().collect();
    let counts: Vec<u32> = blocks.iter().map(|b| b.len() as u32).collect();
    let mut loss = Tensor::zeros([], (Kind::Float, device));
    for group in grouping.layer_groups(&counts) {
        let h: Vec<&Tensor> = flat[group.start.min(flat.len())..group.end.min(flat.len())].to_vec();
        if h.len() < 3 {
            continue; // fewer than two ΔH: no variance
        }
        let hs = Tensor::stack(&h, 0);
        let dh = hs.narrow(0, 1, h.len() as i64 - 1) - hs.narrow(0, 0, h.len() as i64 - 1);
        loss = loss + dh.var(true);
        if decrease_weight > 0.0 {
            loss = loss + dh.relu().mean(Kind::Float) * decrease_weight;
        }
    }
    ElossTerms { entropies, loss }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// Layer outputs whose Gaussian entropies are exactly ½·C·ln(2πe s²) for scale s.
    fn layer(scale: f64, seed: i64) -> Tensor {
        tch::manual_seed(seed);
        Tensor::randn([1, 4, 16, 16], (Kind::Float, Device::Cpu)) * scale
    }

    #[test]
    fn steady_change_gives_zero_and_unsteady_change_its_variance() {
        let est = Estimator::Gaussian { ridge_rel: 0.0 };
        // the same noise scaled by e^{-j}: H drops by exactly C = 4 nats per layer
        let base = layer(1.0, 1);
        let steady: Vec<Tensor> = (0..4).map(|j| &base * (-(j as f64)).exp()).collect();
        let t = entropy_loss(&[steady], est, Grouping::PerBlock, 0.0);
        assert!(t.loss.double_value(&[]).abs() < 1e-6, "{}", t.loss.double_value(&[]));

        // scales 1, e^-1, e^-3: ΔH = -4, -8 → var (unbiased) = 8
        let unsteady = vec![base.shallow_clone(), &base * (-1f64).exp(), &base * (-3f64).exp()];
        let t = entropy_loss(&[unsteady], est, Grouping::PerBlock, 0.0);
        assert!((t.loss.double_value(&[]) - 8.0).abs() < 1e-3, "{}", t.loss.double_value(&[]));
        let h = t.entropy_values();
        assert!((h[0] - h[1] - 4.0).abs() < 1e-4 && (h[1] - h[2] - 8.0).abs() < 1e-4, "{h:?}");

        // blocks add up; a two-layer block has one ΔH and contributes nothing
        let short = vec![base.shallow_clone(), &base * 0.5];
        let again = vec![base.shallow_clone(), &base * (-1f64).exp(), &base * (-3f64).exp()];
        let t = entropy_loss(&[again, short], est, Grouping::PerBlock, 0.0);
        assert!((t.loss.double_value(&[]) - 8.0).abs() < 1e-3);
        // the decrease term only penalises increases
        let rising = vec![base.shallow_clone(), &base * 2.0, &base * 4.0];
        let t = entropy_loss(&[rising], est, Grouping::PerBlock, 1.0);
        assert!((t.loss.double_value(&[]) - 4.0 * 2f64.ln()).abs() < 1e-3, "{}", t.loss.double_value(&[]));
    }

    #[test]
    fn reference_grouping_crosses_the_block_boundary_and_skips_the_first_transition() {
        // two blocks of three layers (N = 6, h = 3); layer j scaled by e^{-a_j}
        // gives Gaussian H_j = H_0 − C·a_j with C = 4: entropies 0, −4, −8 | −20, −24, −28 (+ H_0)
        let est = Estimator::Gaussian { ridge_rel: 0.0 };
        let base = layer(1.0, 2);
        let a = [0.0f64, 1.0, 2.0, 5.0, 6.0, 7.0];
        let scaled: Vec<Tensor> = a.iter().map(|a| &base * (-a).exp()).collect();
        let blocks = vec![scaled[..3].iter().map(Tensor::shallow_clone).collect::<Vec<_>>(), scaled[3..].iter().map(Tensor::shallow_clone).collect()];
        // per block: ΔH = (−4, −4) and (−4, −4): both steady, loss 0
        let per_block = entropy_loss(&blocks, est, Grouping::PerBlock, 0.0).loss.double_value(&[]);
        assert!(per_block.abs() < 1e-3, "{per_block}");
        // reference: group A = layers 1..2 (one ΔH: adds 0), group B = layers 2..5:
        // ΔH = (−12, −4, −4), mean −20/3, unbiased variance (28.44 + 7.11 + 7.11)/2 = 64/3
        let reference = entropy_loss(&blocks, est, Grouping::Reference, 0.0).loss.double_value(&[]);
        assert!((reference - 64.0 / 3.0).abs() < 1e-2, "{reference}");
    }
}
