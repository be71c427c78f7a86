//! Classification with a fitted bank: log-likelihoods, Bayes posteriors
//! (priors, temperature, candidate subsets), top-k, batches.
//!
//! - log p(x | c) = −½ [ (x−μ_c)ᵀ Σ_c⁻¹ (x−μ_c) + log|Σ_c| + d log 2π ],
//!   the quadratic form as ‖z‖² with L_c z = x − μ_c;
//! - p(c | x) = exp(z_c − max z) / Σ_c' exp(z_c' − max z),
//!   z_c = log π_c + (log p(x | c) − max_c' log p(x | c')) / T.
//!
//! Subtracting the largest log-likelihood *before* dividing by T keeps tiny
//! temperatures finite, and subtracting max z makes gaps of 10⁴ exact 0 / 1
//! instead of 0/0. Queries are checked (dimension, finiteness) before use.

use super::{BankError, GaussianBank, Samples};

const LN_2PI: f64 = 1.837_877_066_409_345_5; // ln(2π)

/// A most-probable class as returned by [`GaussianBank::top_k`].
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub index: usize,
    pub name: String,
    pub probability: f64,
    pub log_likelihood: f64,
}

impl GaussianBank {
    /// log p(x | c) for every class.
    pub fn log_likelihoods<T: Copy + Into<f64>>(&self, x: &[T]) -> Result<Vec<f64>, BankError> {
        let all: Vec<usize> = (0..self.classes.len()).collect();
        self.log_likelihoods_of(&self.query(x)?, &all)
    }

    /// p(c | x) over every class; `priors` (one per class, ≥ 0, normalised
    /// here) default to uniform; `temperature` T > 0 divides the log-likelihoods.
    pub fn posterior<T: Copy + Into<f64>>(
        &self,
        x: &[T],
        priors: Option<&[f64]>,
        temperature: f64,
    ) -> Result<Vec<f64>, BankError> {
        bayes_posterior(&self.log_likelihoods(x)?, priors, temperature)
    }

    /// p(c | x) restricted to the named candidates (in their order); `priors`
    /// are then one per candidate.
    pub fn posterior_among<T: Copy + Into<f64>>(
        &self,
        x: &[T],
        candidates: &[&str],
        priors: Option<&[f64]>,
        temperature: f64,
    ) -> Result<Vec<f64>, BankError> {
        let indices = self.class_indices(candidates)?;
        let ll = self.log_likelihoods_of(&self.query(x)?, &indices)?;
        bayes_posterior(&ll, priors, temperature)
    }

    /// The k most probable classes, most probable first.
    pub fn top_k<T: Copy + Into<f64>>(
        &self,
        x: &[T],
        k: usize,
        priors: Option<&[f64]>,
        temperature: f64,
    ) -> Result<Vec<Prediction>, BankError> {
        let ll = self.log_likelihoods(x)?;
        let p = bayes_posterior(&ll, priors, temperature)?;
        Ok(top_k(&p, k)
            .into_iter()
            .map(|(index, probability)| Prediction {
                index,
                name: self.classes[index].name.clone(),
                probability,
                log_likelihood: ll[index],
            })
            .collect())
    }

    /// log p(x | c) for each query (rows of `queries`).
    pub fn log_likelihoods_batch(&self, queries: Samples<'_>) -> Result<Vec<Vec<f64>>, BankError> {
        let (rows, _, d) = queries.to_f64("queries", Some(self.dim))?;
        let all: Vec<usize> = (0..self.classes.len()).collect();
        rows.chunks_exact(d).map(|x| self.log_likelihoods_of(x, &all)).collect()
    }

    /// p(c | x) for each query (rows of `queries`).
    pub fn posterior_batch(
        &self,
        queries: Samples<'_>,
        priors: Option<&[f64]>,
        temperature: f64,
    ) -> Result<Vec<Vec<f64>>, BankError> {
        self.log_likelihoods_batch(queries)?
            .iter()
            .map(|ll| bayes_posterior(ll, priors, temperature))
            .collect()
    }

    pub(super) fn query<T: Copy + Into<f64>>(&self, x: &[T]) -> Result<Vec<f64>, BankError> {
        if x.len() != self.dim {
            return Err(BankError::DimensionMismatch {
                what: "query".into(),
                expected: self.dim,
                got: x.len(),
            });
        }
        let x: Vec<f64> = x.iter().map(|&v| v.into()).collect();
        if x.iter().any(|v| !v.is_finite()) {
            return Err(BankError::NonFinite("query".into()));
        }
        Ok(x)
    }

    fn log_likelihoods_of(&self, x: &[f64], indices: &[usize]) -> Result<Vec<f64>, BankError> {
        if self.classes.is_empty() {
            return Err(BankError::Empty);
        }
        let constant = self.dim as f64 * LN_2PI;
        let mut scratch = vec![0.0; self.dim];
        indices
            .iter()
            .map(|&i| {
                let class = &self.classes[i];
                let factor = self
                    .factor(class)
                    .ok_or_else(|| BankError::Format(format!("class {:?} has no covariance factor", class.name)))?;
                let m = factor.mahalanobis_sq(x, &class.mean, &mut scratch);
                Ok(-0.5 * (m + factor.log_det() + constant))
            })
            .collect()
    }
}

/// Bayes' rule in log space: p_c ∝ π_c · exp(ℓ_c / T), by log-sum-exp.
///
/// `priors` (≥ 0, finite, not all 0) are normalised here; `None` is uniform.
/// T ∈ (0, ∞]; T = ∞ returns the priors. ℓ_c = −∞ is allowed (probability 0).
pub fn bayes_posterior(
    log_likelihoods: &[f64],
    priors: Option<&[f64]>,
    temperature: f64,
) -> Result<Vec<f64>, BankError> {
    let n = log_likelihoods.len();
    if n == 0 {
        return Err(BankError::Empty);
    }
    if !(temperature > 0.0) {
        return Err(BankError::InvalidParameter {
            name: "temperature",
            reason: format!("must be > 0, got {temperature}"),
        });
    }
    if log_likelihoods.iter().any(|l| l.is_nan() || *l == f64::INFINITY) {
        return Err(BankError::NonFinite("log-likelihoods".into()));
    }
    let log_priors: Vec<f64> = match priors {
        None => vec![0.0; n],
        Some(p) => {
            if p.len() != n {
                return Err(BankError::DimensionMismatch {
                    what: "priors".into(),
                    expected: n,
                    got: p.len(),
                });
            }
            if p.iter().any(|v| !(v.is_finite() && *v >= 0.0)) {
                return Err(BankError::InvalidParameter {
                    name: "priors",
                    reason: "must be finite and >= 0".into(),
                });
            }
            let sum: f64 = p.iter().sum();
            if !(sum > 0.0 && sum.is_finite()) {
                return Err(BankError::InvalidParameter {
                    name: "priors",
                    reason: format!("must have a positive finite sum, got {sum}"),
                });
            }
            p.iter().map(|v| (v / sum).ln()).collect()
        }
    };
    let max_ll = log_likelihoods.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if max_ll == f64::NEG_INFINITY {
        return Err(BankError::NonFinite("log-likelihood of every class".into()));
    }
    // Shift by the largest log-likelihood before dividing by T, so a tiny T
    // sends the others to −∞ instead of overflowing everything.
    let z: Vec<f64> = log_likelihoods
        .iter()
        .zip(&log_priors)
        .map(|(&l, &lp)| {
            let scaled = if temperature == f64::INFINITY {
                if l == f64::NEG_INFINITY {
                    f64::NEG_INFINITY
                } else {
                    0.0
                }
            } else {
                (l - max_ll) / temperature
            };
            lp + scaled
        })
        .collect();
    let max_z = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let weights: Vec<f64> = if max_z == f64::NEG_INFINITY {
        // Every class with a positive prior lost to T → 0 against a class the
        // priors exclude: the limit is one-hot on the most likely class among
        // those with a positive prior (ties share by prior).
        let best = log_likelihoods
            .iter()
            .zip(&log_priors)
            .filter(|(_, lp)| **lp > f64::NEG_INFINITY)
            .map(|(l, _)| *l)
            .fold(f64::NEG_INFINITY, f64::max);
        if best == f64::NEG_INFINITY {
            return Err(BankError::NonFinite(
                "log-likelihood of every class with a positive prior".into(),
            ));
        }
        log_likelihoods
            .iter()
            .zip(&log_priors)
            .map(|(&l, &lp)| if l == best { lp.exp() } else { 0.0 })
            .collect()
    } else {
        z.iter().map(|v| (v - max_z).exp()).collect()
    };
    let total: f64 = weights.iter().sum();
    Ok(weights.iter().map(|w| w / total).collect())
}

/// Indices and values of the k largest probabilities, largest first (ties:
/// lower index first).
pub fn top_k(probabilities: &[f64], k: usize) -> Vec<(usize, f64)> {
    let mut order: Vec<(usize, f64)> = probabilities.iter().copied().enumerate().collect();
    order.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    order.truncate(k);
    order
}
