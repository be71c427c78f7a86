//! Entropy estimators for a layer output `x` of shape [B, C, H, W].
//!
//! **kNN** (the estimator of yhbcode000/Eloss-Interpretability, a
//! Kozachenko–Leonenko estimate with its constants dropped): for each batch
//! element the C channels are samples of dimension D = H·W; with d_k(c) the
//! Euclidean distance from channel c to its k-th nearest other channel,
//! k = max(1, C / 10), H_b = ln(1 + Σ_c d_k(c)), and H = Σ_b H_b (so it
//! grows with the batch size, as in the reference).
//!
//! **Gaussian**: the B·H·W spatial positions are samples of a C-dimensional
//! vector; with Σ its sample covariance plus a ridge ε·I (ε = `ridge_rel` ×
//! trace(Σ)/C, so the estimate is scale-covariant and defined when
//! B·H·W ≤ C), H = ½ ln det(2πe Σ) in nats — the differential entropy of a
//! Gaussian with that covariance, an upper bound for any distribution with
//! it. O(N·C² + C³), no N×N distance matrix.

use tch::{Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Estimator {
    Knn,
    Gaussian { ridge_rel: f64 },
}

impl Estimator {
    pub fn name(&self) -> &'static str {
        match self {
            Estimator::Knn => "knn",
            Estimator::Gaussian { .. } => "gaussian",
        }
    }

    /// Scalar (0-d) entropy estimate of one layer output [B, C, H, W], differentiable.
    pub fn entropy(&self, x: &Tensor) -> Tensor {
        match *self {
            Estimator::Knn => knn_entropy(x),
            Estimator::Gaussian { ridge_rel } => gaussian_entropy(x, ridge_rel),
        }
    }
}

/// The reference repo's estimator (see the module docs).
pub fn knn_entropy(x: &Tensor) -> Tensor {
    let (b, c, h, w) = x.size4().unwrap_or((0, 0, 0, 0));
    if b == 0 || c < 2 {
        return Tensor::zeros([], (Kind::Float, x.device()));
    }
    let k = (c / 10).max(1).min(c - 1);
    let samples = x.to_kind(Kind::Float).reshape([b, c, h * w]);
    let d = Tensor::cdist(&samples, &samples, 2.0, None::<i64>); // [B, C, C]
    // the smallest distance of each row is the channel to itself (0): the k-th neighbour is at index k
    let (sorted, _) = d.sort(-1, false);
    let dk = sorted.narrow(-1, k, 1).squeeze_dim(-1); // [B, C]
    (dk.sum_dim_intlist([1i64].as_slice(), false, Kind::Float) + 1.0).log().sum(Kind::Float)
}

/// Gaussian differential entropy of the per-position channel vectors (see the module docs).
pub fn gaussian_entropy(x: &Tensor, ridge_rel: f64) -> Tensor {
    let (b, c, h, w) = x.size4().unwrap_or((0, 0, 0, 0));
    let n = b * h * w;
    if c == 0 || n < 2 {
        return Tensor::zeros([], (Kind::Float, x.device()));
    }
    let v = x.to_kind(Kind::Double).permute([0, 2, 3, 1]).reshape([n, c]);
    let centred = &v - v.mean_dim([0i64].as_slice(), true, Kind::Double);
    let cov = centred.transpose(0, 1).matmul(&centred) / (n - 1) as f64;
    let ridge = cov.trace() / c as f64 * ridge_rel.max(0.0) + 1e-12;
    let eye = Tensor::eye(c, (Kind::Double, x.device()));
    let reg = cov + eye * ridge;
    let logdet = reg.linalg_cholesky(false).diagonal(0, 0, 1).log().sum(Kind::Double) * 2.0;
    let two_pi_e = 2.0 * std::f64::consts::PI * std::f64::consts::E;
    ((logdet + c as f64 * two_pi_e.ln()) * 0.5).to_kind(Kind::Float)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn closed_form(cov: &[[f64; 3]; 3]) -> f64 {
        let [[a, b, c], [d, e, f], [g, h, i]] = *cov;
        let det = a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g);
        0.5 * ((2.0 * std::f64::consts::PI * std::f64::consts::E).powi(3) * det).ln()
    }

    #[test]
    fn gaussian_estimator_matches_the_closed_form_within_sampling_error() {
        tch::manual_seed(7);
        // Σ = L Lᵀ with a correlated L; N = 2·64·64 = 8192 samples
        let l = Tensor::from_slice(&[1.0f64, 0.0, 0.0, 0.5, 2.0, 0.0, -0.3, 0.4, 0.7]).view([3, 3]);
        let z = Tensor::randn([8192, 3], (Kind::Double, Device::Cpu));
        let samples = z.matmul(&l.transpose(0, 1)); // rows ~ N(0, L Lᵀ)
        let x = samples.view([2, 64, 64, 3]).permute([0, 3, 1, 2]).to_kind(Kind::Float);
        let got = gaussian_entropy(&x, 0.0).double_value(&[]);
        let lv: Vec<f64> = Vec::try_from(l.flatten(0, -1)).unwrap();
        let mut cov = [[0.0; 3]; 3];
        for (r, row) in cov.iter_mut().enumerate() {
            for (c, v) in row.iter_mut().enumerate() {
                *v = (0..3).map(|k| lv[r * 3 + k] * lv[c * 3 + k]).sum();
            }
        }
        let want = closed_form(&cov);
        // the log-det of a sample covariance has standard error ≈ sqrt(2C/N) = 0.027 for C=3, N=8192;
        // half of it in H: allow 4 standard errors
        assert!((got - want).abs() < 0.06, "estimate {got}, closed form {want}");
        // scaling by s adds C·ln s exactly (scale covariance, ridge relative to trace)
        let scaled = gaussian_entropy(&(&x * 3.0), 1e-3).double_value(&[]);
        let base = gaussian_entropy(&x, 1e-3).double_value(&[]);
        assert!((scaled - base - 3.0 * 3f64.ln()).abs() < 1e-3, "{scaled} vs {base}");
    }

    #[test]
    fn gaussian_estimator_handles_fewer_samples_than_channels() {
        let x = Tensor::randn([1, 64, 2, 3], (Kind::Float, Device::Cpu));
        let h = gaussian_entropy(&x, 1e-3).double_value(&[]);
        assert!(h.is_finite());
        assert_eq!(gaussian_entropy(&Tensor::zeros([1, 4, 1, 1], (Kind::Float, Device::Cpu)), 1e-3).double_value(&[]), 0.0);
    }

    #[test]
    fn knn_estimator_grows_with_spread_and_batch() {
        tch::manual_seed(3);
        let x = Tensor::randn([1, 40, 8, 8], (Kind::Float, Device::Cpu));
        let h: Vec<f64> = [0.5, 1.0, 2.0, 4.0].iter().map(|s| knn_entropy(&(&x * *s)).double_value(&[])).collect();
        assert!(h.windows(2).all(|w| w[1] > w[0]), "{h:?}");
        // hand check for C = 2 (k = 1): distance between the two channels
        let two = Tensor::from_slice(&[0.0f32, 0.0, 3.0, 4.0]).view([1, 2, 1, 2]);
        assert!((knn_entropy(&two).double_value(&[]) - (1.0f64 + 10.0).ln()).abs() < 1e-6);
        // batch elements add up, as in the reference
        let pair = Tensor::cat(&[&x, &x], 0);
        assert!((knn_entropy(&pair).double_value(&[]) - 2.0 * h[1]).abs() < 1e-4);
    }

    #[test]
    fn estimators_are_differentiable() {
        let x = Tensor::randn([1, 20, 4, 4], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        for e in [Estimator::Knn, Estimator::Gaussian { ridge_rel: 1e-3 }] {
            let h = e.entropy(&x);
            let g = Tensor::run_backward(&[&h], &[&x], false, false);
            assert!(g[0].abs().sum(Kind::Float).double_value(&[]) > 0.0, "{}", e.name());
        }
    }
}
