//! Scoring many queries against every class at once (feature `torch`).
//!
//! [`GaussianBank::log_likelihoods_of`] solves L_c z = x − μ_c one query and
//! one class at a time: a matrix-vector forward substitution that streams
//! the whole d×d factor from memory for each pair (13 MB per class at
//! d = 1280 in f64), so its cost is memory traffic. [`BatchScorer`] puts
//! the N queries of a batch side by side as the columns of one right-hand
//! side, R_c = [x_1 − μ_c, …, x_N − μ_c], and solves L_c Z_c = R_c for all
//! classes in one batched triangular solve (LAPACK trsm through libtorch:
//! each factor is read once per batch, and the arithmetic runs as blocked
//! matrix products); m_c(x_n) = ‖column n of Z_c‖². Classes sharing one
//! factor (a Shared bank) stack their right-hand sides against it; a
//! diagonal factor is an element-wise division.
//!
//! The solve is the same forward substitution, only blocked, so f64 results
//! equal the per-query path up to summation order (relative 1e-12 in the
//! tests). `Kind::Float` halves the memory and doubles the SIMD width at
//! f32 precision: Mahalanobis distances to ~1e-5 relative at d = 1280
//! (measured in the tests), which moves log-likelihoods of size 10³–10⁴ by
//! ~0.01–0.1 — enough to shift a posterior whose classes are close, so f64
//! is the default and f32 is measured only (docs/benchmarks.md).
//!
//! tch tensors are `Send` but not `Sync`; the stacked factors sit behind a
//! mutex so a classifier stays shareable between threads (concurrent
//! batches take turns in the solve).

use super::gaussian::Factor;
use super::{BankError, GaussianBank};
use std::sync::Mutex;
use tch::{Kind, Tensor};

const LN_2PI: f64 = 1.837_877_066_409_345_5; // ln(2π)

struct Stacked {
    /// [F, d, d] lower factors; every factor serves `per_factor` classes.
    dense: Option<Tensor>,
    /// [F, per_factor, d] the means of the classes of each factor.
    dense_means: Option<Tensor>,
    /// [D, d] standard deviations and means of the diagonal classes.
    diag_sd: Option<Tensor>,
    diag_means: Option<Tensor>,
}

/// A bank's factors as tensors, for scoring batches of queries.
pub struct BatchScorer {
    dim: usize,
    kind: Kind,
    classes: usize,
    /// Bank class index of each row of the dense result, in stacking order.
    dense_order: Vec<usize>,
    diag_order: Vec<usize>,
    /// log|Σ_c| + d ln 2π per bank class.
    constants: Vec<f64>,
    stacked: Mutex<Stacked>,
}

impl std::fmt::Debug for BatchScorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchScorer").field("dim", &self.dim).field("kind", &self.kind).field("classes", &self.classes).finish()
    }
}

impl GaussianBank {
    /// The scorer of this bank's classes in `kind` (`Kind::Double` or
    /// `Kind::Float`). A snapshot: rebuild it after the bank changes.
    pub fn batch_scorer(&self, kind: Kind) -> Result<BatchScorer, BankError> {
        if !matches!(kind, Kind::Double | Kind::Float) {
            return Err(BankError::InvalidParameter { name: "kind", reason: format!("{kind:?}: expected Double or Float") });
        }
        let d = self.dim as i64;
        // group the classes by the factor they use (their own, or the shared one)
        let mut groups: Vec<(&Factor, Vec<usize>)> = Vec::new();
        let mut diag_order = Vec::new();
        let mut constants = Vec::with_capacity(self.classes.len());
        for (c, class) in self.classes.iter().enumerate() {
            let factor = self.factor(class).ok_or_else(|| BankError::Format(format!("class {:?} has no covariance factor", class.name)))?;
            constants.push(factor.log_det() + self.dim as f64 * LN_2PI);
            match factor {
                Factor::Diagonal { .. } => diag_order.push(c),
                Factor::Dense { .. } => match groups.iter_mut().find(|(f, _)| std::ptr::eq(*f, factor)) {
                    Some((_, members)) => members.push(c),
                    None => groups.push((factor, vec![c])),
                },
            }
        }
        let per_factor = groups.first().map_or(0, |(_, m)| m.len());
        if groups.iter().any(|(_, m)| m.len() != per_factor) {
            // Full banks have one class per factor and Shared banks one factor for all
            return Err(BankError::Format("classes share dense factors unevenly".into()));
        }
        let mean_rows = |idx: &[usize]| -> Vec<f64> { idx.iter().flat_map(|&c| self.classes[c].mean.iter().copied()).collect() };
        let to_kind = |t: Tensor| t.to_kind(kind);
        let (dense, dense_means, dense_order) = if groups.is_empty() {
            (None, None, Vec::new())
        } else {
            let f = groups.len() as i64;
            let factors: Vec<f64> = groups.iter().flat_map(|(fac, _)| fac.entries().iter().copied()).collect();
            let order: Vec<usize> = groups.iter().flat_map(|(_, m)| m.iter().copied()).collect();
            let means = Tensor::from_slice(&mean_rows(&order)).view([f, per_factor as i64, d]);
            (Some(to_kind(Tensor::from_slice(&factors).view([f, d, d]))), Some(to_kind(means)), order)
        };
        let (diag_sd, diag_means) = if diag_order.is_empty() {
            (None, None)
        } else {
            let sd: Vec<f64> = diag_order.iter().flat_map(|&c| self.factor(&self.classes[c]).map_or(&[][..], Factor::entries).iter().copied()).collect();
            let n = diag_order.len() as i64;
            (Some(to_kind(Tensor::from_slice(&sd).view([n, d]))), Some(to_kind(Tensor::from_slice(&mean_rows(&diag_order)).view([n, d]))))
        };
        Ok(BatchScorer {
            dim: self.dim,
            kind,
            classes: self.classes.len(),
            dense_order,
            diag_order,
            constants,
            stacked: Mutex::new(Stacked { dense, dense_means, diag_sd, diag_means }),
        })
    }
}

impl BatchScorer {
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Squared Mahalanobis distance of each query (the rows of `queries`,
    /// N·d values) to each bank class: N rows of one value per class.
    pub fn mahalanobis_sq(&self, queries: &[f32]) -> Result<Vec<Vec<f64>>, BankError> {
        if self.classes == 0 {
            return Err(BankError::Empty);
        }
        if self.dim == 0 || queries.len() % self.dim != 0 {
            return Err(BankError::DimensionMismatch { what: "queries (rows of d values)".into(), expected: self.dim, got: queries.len() });
        }
        if queries.iter().any(|v| !v.is_finite()) {
            return Err(BankError::NonFinite("query".into()));
        }
        let (n, d) = ((queries.len() / self.dim) as i64, self.dim as i64);
        let mut out = vec![vec![0.0; self.classes]; n as usize];
        if n == 0 {
            return Ok(out);
        }
        let x = Tensor::from_slice(queries).view([n, d]).to_kind(self.kind);
        let stacked = self.stacked.lock().unwrap_or_else(|p| p.into_inner());
        let mut fill = |order: &[usize], m: Tensor| -> Result<(), BankError> {
            // m: [classes of `order`, N]
            let m: Vec<f64> = Vec::try_from(m.to_kind(Kind::Double).contiguous().view([-1])).map_err(|e: tch::TchError| BankError::Format(e.to_string()))?;
            for (k, &c) in order.iter().enumerate() {
                for (q, row) in out.iter_mut().enumerate() {
                    row[c] = m[k * n as usize + q];
                }
            }
            Ok(())
        };
        tch::no_grad(|| -> Result<(), BankError> {
            if let (Some(l), Some(means)) = (&stacked.dense, &stacked.dense_means) {
                let (f, k) = (means.size()[0], means.size()[1]);
                // R[f] = columns x_n − μ_c for the k classes of factor f: [F, d, k·N]
                let r = (x.view([1, 1, n, d]) - means.view([f, k, 1, d])).view([f, k * n, d]).transpose(1, 2);
                let z = l.linalg_solve_triangular(&r, false, true, false);
                fill(&self.dense_order, z.square().sum_dim_intlist([1i64].as_slice(), false, self.kind).view([f * k, n]))?;
            }
            if let (Some(sd), Some(means)) = (&stacked.diag_sd, &stacked.diag_means) {
                let c = sd.size()[0];
                let z = (x.view([1, n, d]) - means.view([c, 1, d])) / sd.view([c, 1, d]);
                fill(&self.diag_order, z.square().sum_dim_intlist([2i64].as_slice(), false, self.kind))?;
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// log p(x | c) of each query for each bank class, from its distances.
    pub fn log_likelihoods_from_sq(&self, m: &[f64]) -> Vec<f64> {
        m.iter().zip(&self.constants).map(|(m, k)| -0.5 * (m + k)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{CovarianceKind, EmbeddingSpec, FitOptions, Samples};
    use super::*;

    /// Classes of `n` embeddings in `d` dimensions with correlated spread
    /// (deterministic), plus a one-shot class.
    fn bank(kind: CovarianceKind, d: usize, n: usize) -> GaussianBank {
        let value = |c: usize, s: usize, j: usize| {
            let h = ((c * 7919 + s * 104_729 + j * 15_485_863) as u32).wrapping_mul(2_654_435_761);
            (h >> 8) as f32 / 16_777_216.0 + 0.3 * (((s * 3 + j) % 5) as f32) + c as f32 * 0.2
        };
        let classes: Vec<Vec<Vec<f32>>> = (0..4).map(|c| (0..n).map(|s| (0..d).map(|j| value(c, s, j)).collect()).collect()).collect();
        let one_shot = vec![(0..d).map(|j| value(9, 0, j)).collect::<Vec<f32>>()];
        let mut named: Vec<(String, Samples)> = classes.iter().enumerate().map(|(c, rows)| (format!("c{c}"), Samples::from(rows))).collect();
        named.push(("one".into(), Samples::from(&one_shot)));
        let refs: Vec<(&str, Samples)> = named.iter().map(|(n, s)| (n.as_str(), *s)).collect();
        GaussianBank::fit(EmbeddingSpec::new("test", "test"), &refs, FitOptions::from(kind)).unwrap()
    }

    fn queries(d: usize, n: usize) -> Vec<f32> {
        (0..n * d).map(|i| ((i as u32).wrapping_mul(2_246_822_519) >> 9) as f32 / 8_388_608.0 + 0.2 * (i % 3) as f32).collect()
    }

    /// The batched f64 scores equal the per-query path; f32 within its precision.
    #[test]
    fn batched_scores_equal_the_per_query_path() {
        let (d, n) = (48, 7);
        for kind in [CovarianceKind::Full { ridge_rel: 1e-3 }, CovarianceKind::Shared { ridge_rel: 1e-3 }, CovarianceKind::Diagonal { ridge_rel: 1e-3 }] {
            let bank = bank(kind, d, 30);
            let qs = queries(d, n);
            let all: Vec<usize> = (0..bank.len()).collect();
            for (tensor_kind, rtol) in [(Kind::Double, 1e-12), (Kind::Float, 1e-4)] {
                let scorer = bank.batch_scorer(tensor_kind).unwrap();
                let m = scorer.mahalanobis_sq(&qs).unwrap();
                assert_eq!(m.len(), n);
                for (q, row) in qs.chunks(d).zip(&m) {
                    let want = bank.mahalanobis_sq_of(&bank.query(q).unwrap(), &all).unwrap();
                    for (c, (got, want)) in row.iter().zip(&want).enumerate() {
                        assert!((got - want).abs() <= rtol * want.abs(), "{kind:?} {tensor_kind:?} class {c}: {got} vs {want}");
                    }
                    if tensor_kind == Kind::Double {
                        let ll = scorer.log_likelihoods_from_sq(row);
                        for (got, want) in ll.iter().zip(bank.log_likelihoods(q).unwrap()) {
                            assert!((got - want).abs() <= 1e-12 * want.abs(), "{kind:?}: log-likelihood {got} vs {want}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn bad_queries_are_errors() {
        let scorer = bank(CovarianceKind::Full { ridge_rel: 1e-3 }, 8, 12).batch_scorer(Kind::Double).unwrap();
        assert!(matches!(scorer.mahalanobis_sq(&[0.0; 9]), Err(BankError::DimensionMismatch { .. })));
        let mut q = vec![0.0f32; 16];
        q[3] = f32::NAN;
        assert!(matches!(scorer.mahalanobis_sq(&q), Err(BankError::NonFinite(_))));
        assert!(scorer.mahalanobis_sq(&[]).unwrap().is_empty());
        assert!(bank(CovarianceKind::Full { ridge_rel: 1e-3 }, 8, 12).batch_scorer(Kind::Int).is_err());
    }
}
