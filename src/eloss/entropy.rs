//! Entropy estimators for a layer output `x` of shape [B, C, H, W].
//!
//! **kNN** (the estimator of yhbcode000/Eloss-Interpretability, a
//! Kozachenko–Leonenko estimate with its constants dropped): for each batch
//! element the C channels are samples of dimension D = H·W; with d_k(c) the
//! Euclidean distance from channel c to its k-th nearest other channel,
//! k = max(1, C / 10), and H = ln(1 + Σ_b Σ_c d_k(b, c)): the sum runs over
//! the whole batch inside the log, as in the reference (so H depends on the
//! batch size; with B = 1 it is ln(1 + Σ_c d_k(c))).
//!
//! **Gaussian**: the B·H·W spatial positions are samples of a C-dimensional
//! vector; with Σ its sample covariance plus a ridge ε·I (ε = `ridge_rel` ×
//! trace(Σ)/C, so the estimate is scale-covariant and defined when
//! B·H·W ≤ C), H = ½ ln det(2πe Σ) in nats — the differential entropy of a
//! Gaussian with that covariance, an upper bound for any distribution with
//! it. O(N·C² + C³), no N×N distance matrix.

use std::str::FromStr;
use tch::{Kind, Tensor};

/// The ridge of the Gaussian estimator used by training and the monitor
/// unless told otherwise (relative to the mean channel variance).
pub const DEFAULT_RIDGE_REL: f64 = 1e-3;

/// Serialised as `{"kind": "knn"}` / `{"kind": "gaussian", "ridge_rel": 0.001}`
/// (the Eloss calibration file records which estimator it was made with).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Estimator {
    Knn,
    Gaussian { ridge_rel: f64 },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("unknown entropy estimator `{0}` (knn, gaussian or gaussian:RIDGE_REL with RIDGE_REL >= 0)")]
pub struct UnknownEstimator(pub String);

impl FromStr for Estimator {
    type Err = UnknownEstimator;
    /// `knn`, `gaussian` (ridge [`DEFAULT_RIDGE_REL`]) or `gaussian:1e-3`.
    fn from_str(s: &str) -> Result<Self, UnknownEstimator> {
        let bad = || UnknownEstimator(s.to_string());
        match s.trim().split_once(':') {
            None if s.trim() == "knn" => Ok(Estimator::Knn),
            None if s.trim() == "gaussian" => Ok(Estimator::Gaussian { ridge_rel: DEFAULT_RIDGE_REL }),
            Some(("gaussian", r)) => match r.trim().parse::<f64>() {
                Ok(ridge_rel) if ridge_rel.is_finite() && ridge_rel >= 0.0 => Ok(Estimator::Gaussian { ridge_rel }),
                _ => Err(bad()),
            },
            _ => Err(bad()),
        }
    }
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

/// The same estimates as plain numbers for inference (the Eloss monitor):
/// no autograd graph, the covariance as one f32 GEMM on the centred
/// [C, B·H·W] matrix (a contiguous view for batch size 1, no permuted copy)
/// and only the C×C result in f64; kNN distances from one Gram GEMM and the
/// k-th neighbour by `kthvalue` instead of a full sort. Agrees with
/// [`Estimator::entropy`] to f32 rounding (tested); about 1.5–2× cheaper on
/// the CPU (docs/eloss_monitor.md).
pub fn entropy_value(estimator: Estimator, x: &Tensor) -> f64 {
    tch::no_grad(|| match estimator {
        Estimator::Knn => knn_value(x),
        Estimator::Gaussian { ridge_rel } => gaussian_value(x, ridge_rel),
    })
}

fn knn_value(x: &Tensor) -> f64 {
    let (b, c, h, w) = x.size4().unwrap_or((0, 0, 0, 0));
    if b == 0 || c < 2 {
        return 0.0;
    }
    let k = (c / 10).max(1).min(c - 1);
    let samples = x.to_kind(Kind::Float).reshape([b, c, h * w]);
    // distances from the Gram matrix (one GEMM, as cdist's own matrix path,
    // without its augmented copies of the samples): d² = |a|² + |b|² − 2a·b
    let gram = samples.matmul(&samples.transpose(-1, -2));
    let sq = gram.diagonal(0, -2, -1);
    let d = (sq.unsqueeze(-1) + sq.unsqueeze(-2) - gram * 2.0).clamp_min(0.0).sqrt();
    // index k of the sorted row (0 = the channel itself) is the (k+1)-th smallest
    let (dk, _) = d.kthvalue(k + 1, -1, false);
    // per-element sums first, then the batch: for B = 1 exactly the single-frame value
    (dk.sum_dim_intlist([1i64].as_slice(), false, Kind::Double).sum(Kind::Double) + 1.0).log().double_value(&[])
}

fn gaussian_value(x: &Tensor, ridge_rel: f64) -> f64 {
    let (b, c, h, w) = x.size4().unwrap_or((0, 0, 0, 0));
    let n = b * h * w;
    if c == 0 || n < 2 {
        return 0.0;
    }
    let v = if b == 1 { x.to_kind(Kind::Float).reshape([c, n]) } else { x.to_kind(Kind::Float).permute([1, 0, 2, 3]).reshape([c, n]) };
    let centred = &v - v.mean_dim([1i64].as_slice(), true, Kind::Float);
    let cov = centred.matmul(&centred.transpose(0, 1)).to_kind(Kind::Double) / (n - 1) as f64;
    let ridge = cov.trace() / c as f64 * ridge_rel.max(0.0) + 1e-12;
    let reg = cov + Tensor::eye(c, (Kind::Double, x.device())) * ridge;
    let logdet = reg.linalg_cholesky(false).diagonal(0, 0, 1).log().sum(Kind::Double).double_value(&[]) * 2.0;
    let two_pi_e = 2.0 * std::f64::consts::PI * std::f64::consts::E;
    0.5 * (logdet + c as f64 * two_pi_e.ln())
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
    // the batch sum inside the log (the reference); summing each element's
    // channels first keeps B = 1 bit for bit the single-frame value
    (dk.sum_dim_intlist([1i64].as_slice(), false, Kind::Float).sum(Kind::Float) + 1.0).log()
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
        // the reference sums the batch inside the log: H = ln(1 + Σ_b Σ_c d_k), so
        // e^H − 1 adds up over batch elements (not H itself)
        let y = Tensor::randn([1, 40, 8, 8], (Kind::Float, Device::Cpu)) * 2.0;
        let pair = Tensor::cat(&[&x, &y], 0);
        let (hx, hy, hxy) = (h[1], knn_entropy(&y).double_value(&[]), knn_entropy(&pair).double_value(&[]));
        let want = (hx.exp() - 1.0 + hy.exp() - 1.0 + 1.0).ln();
        assert!((hxy - want).abs() < 1e-5, "{hxy} vs ln(1 + Σ) = {want}");
        assert!((entropy_value(Estimator::Knn, &pair) - want).abs() < 1e-4);
    }

    #[test]
    fn gaussian_estimator_matches_independent_scales() {
        // independent channels with standard deviations 0.5, 1, 3: H = Σ ½ ln(2πe σ²)
        tch::manual_seed(11);
        let sd = Tensor::from_slice(&[0.5f64, 1.0, 3.0]).view([1, 3, 1, 1]);
        let x = (Tensor::randn([4, 3, 32, 32], (Kind::Double, Device::Cpu)) * sd).to_kind(Kind::Float);
        let want: f64 = [0.5f64, 1.0, 3.0].iter().map(|s| 0.5 * (2.0 * std::f64::consts::PI * std::f64::consts::E * s * s).ln()).sum();
        // N = 4096: standard error of the log-det ≈ sqrt(2·3/4096) = 0.038, half in H
        let got = gaussian_entropy(&x, 0.0).double_value(&[]);
        assert!((got - want).abs() < 0.08, "estimate {got}, closed form {want}");
    }

    #[test]
    fn inference_values_match_the_differentiable_estimates() {
        tch::manual_seed(21);
        // post-ReLU-like layers, batch 1 and 2
        for shape in [[1i64, 32, 20, 24], [2, 16, 8, 8]] {
            let x = Tensor::randn(shape, (Kind::Float, Device::Cpu)).relu() * 3.0 + 0.1;
            for e in [Estimator::Knn, Estimator::Gaussian { ridge_rel: 1e-3 }] {
                let (a, b) = (e.entropy(&x).double_value(&[]), entropy_value(e, &x));
                assert!((a - b).abs() < 1e-4 * a.abs().max(1.0), "{} {shape:?}: {a} vs {b}", e.name());
            }
        }
        assert_eq!(entropy_value(Estimator::Knn, &Tensor::zeros([1, 1, 2, 2], (Kind::Float, Device::Cpu))), 0.0);
    }

    #[test]
    fn estimators_parse_and_serialise() {
        assert_eq!("knn".parse::<Estimator>().unwrap(), Estimator::Knn);
        assert_eq!("gaussian".parse::<Estimator>().unwrap(), Estimator::Gaussian { ridge_rel: DEFAULT_RIDGE_REL });
        assert_eq!("gaussian:0.01".parse::<Estimator>().unwrap(), Estimator::Gaussian { ridge_rel: 0.01 });
        for bad in ["", "knn:3", "gaussian:-1", "gaussian:nan", "kde"] {
            assert!(bad.parse::<Estimator>().is_err(), "{bad}");
        }
        let e = Estimator::Gaussian { ridge_rel: 0.002 };
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(json, r#"{"kind":"gaussian","ridge_rel":0.002}"#);
        assert_eq!(serde_json::from_str::<Estimator>(&json).unwrap(), e);
        assert_eq!(serde_json::from_str::<Estimator>(r#"{"kind":"knn"}"#).unwrap(), Estimator::Knn);
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
