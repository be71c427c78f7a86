//! The numerical kernel of the Gaussian bank: sample statistics, the
//! Cholesky factorisation and the triangular solve, all in `f64`.
//!
//! Matrices are dense, row-major `Vec<f64>` of `d * d` entries; only the
//! lower triangle of a symmetric matrix is ever read or written (the upper
//! triangle of a factor is kept at exactly 0.0 so that the file format can
//! store it verbatim and a loader can check it).
//!
//! - mean:      μ = (1/n) Σ_k x_k
//! - scatter:   W = Σ_k (x_k - μ)(x_k - μ)ᵀ        (two-pass: centred first, for accuracy)
//! - Cholesky:  A = L Lᵀ, L lower triangular with L_ii > 0 (Cholesky–Banachiewicz,
//!              row by row, so every inner product runs over two contiguous rows)
//! - log|A|   = 2 Σ_i log L_ii
//! - Mahalanobis: (x-μ)ᵀ A⁻¹ (x-μ) = ‖z‖² with L z = x - μ (forward substitution;
//!              never an explicit inverse, which would square the condition number's effect)
//!
//! We do this by hand instead of pulling in a linear-algebra crate: the three
//! kernels are a few lines each, we need them only in f64 and dense, and
//! owning them keeps the error reporting (which pivot failed) in our hands.

/// A covariance Σ kept as its Cholesky factor, with log|Σ| cached.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Factor {
    /// Σ = L Lᵀ; `l` is d×d row-major, strictly-upper entries exactly 0.
    Dense { dim: usize, l: Vec<f64>, log_det: f64 },
    /// Σ = diag(sd²); `sd` holds the d standard deviations (the diagonal of L).
    Diagonal { sd: Vec<f64>, log_det: f64 },
}

/// Why a factorisation or a stored factor was refused.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FactorError {
    /// The pivot at `index` was not strictly positive (or not finite).
    NotPositiveDefinite { index: usize, pivot: f64 },
    /// A stored factor has a non-zero entry above the diagonal.
    NotLowerTriangular { row: usize, col: usize },
    /// A stored factor has a non-finite entry.
    NonFinite,
    /// The number of entries does not match d×d (or d).
    Shape,
}

impl Factor {
    pub(crate) fn log_det(&self) -> f64 {
        match self {
            Factor::Dense { log_det, .. } | Factor::Diagonal { log_det, .. } => *log_det,
        }
    }

    /// Factor a symmetric positive-definite matrix (only its lower triangle is read).
    pub(crate) fn cholesky(dim: usize, a: &[f64]) -> Result<Factor, FactorError> {
        if a.len() != dim * dim {
            return Err(FactorError::Shape);
        }
        let mut l = vec![0.0; dim * dim];
        for i in 0..dim {
            for j in 0..=i {
                let (row_i, row_j) = (&l[i * dim..i * dim + j], &l[j * dim..j * dim + j]);
                let s = a[i * dim + j] - dot(row_i, row_j);
                if i == j {
                    // `!(s > 0)` also catches NaN: a NaN pivot must not slip through as "positive".
                    if !(s > 0.0) || !s.is_finite() {
                        return Err(FactorError::NotPositiveDefinite { index: i, pivot: s });
                    }
                    l[i * dim + i] = s.sqrt();
                } else {
                    l[i * dim + j] = s / l[j * dim + j];
                }
            }
        }
        Ok(Factor::from_dense_unchecked(dim, l))
    }

    /// Factor a diagonal covariance given its d variances.
    pub(crate) fn diagonal(variances: &[f64]) -> Result<Factor, FactorError> {
        let mut sd = Vec::with_capacity(variances.len());
        for (index, &v) in variances.iter().enumerate() {
            if !(v > 0.0) || !v.is_finite() {
                return Err(FactorError::NotPositiveDefinite { index, pivot: v });
            }
            sd.push(v.sqrt());
        }
        Ok(Factor::from_diagonal_unchecked(sd))
    }

    /// Accept a stored dense factor after checking what Cholesky guarantees:
    /// finite, lower triangular, strictly positive diagonal.
    pub(crate) fn from_dense(dim: usize, l: Vec<f64>) -> Result<Factor, FactorError> {
        if l.len() != dim * dim {
            return Err(FactorError::Shape);
        }
        if l.iter().any(|v| !v.is_finite()) {
            return Err(FactorError::NonFinite);
        }
        for row in 0..dim {
            for col in row + 1..dim {
                if l[row * dim + col] != 0.0 {
                    return Err(FactorError::NotLowerTriangular { row, col });
                }
            }
            let pivot = l[row * dim + row];
            if !(pivot > 0.0) {
                return Err(FactorError::NotPositiveDefinite { index: row, pivot });
            }
        }
        Ok(Factor::from_dense_unchecked(dim, l))
    }

    /// Accept stored standard deviations after checking they are finite and positive.
    pub(crate) fn from_diagonal(sd: Vec<f64>) -> Result<Factor, FactorError> {
        if sd.iter().any(|v| !v.is_finite()) {
            return Err(FactorError::NonFinite);
        }
        if let Some((index, &pivot)) = sd.iter().enumerate().find(|(_, v)| !(**v > 0.0)) {
            return Err(FactorError::NotPositiveDefinite { index, pivot });
        }
        Ok(Factor::from_diagonal_unchecked(sd))
    }

    /// σ·I as a dense factor (one-shot classes in a Full bank).
    pub(crate) fn isotropic_dense(dim: usize, variance: f64) -> Result<Factor, FactorError> {
        let mut a = vec![0.0; dim * dim];
        for i in 0..dim {
            a[i * dim + i] = variance;
        }
        Factor::cholesky(dim, &a)
    }

    fn from_dense_unchecked(dim: usize, l: Vec<f64>) -> Factor {
        let log_det = 2.0 * (0..dim).map(|i| l[i * dim + i].ln()).sum::<f64>();
        Factor::Dense { dim, l, log_det }
    }

    fn from_diagonal_unchecked(sd: Vec<f64>) -> Factor {
        let log_det = 2.0 * sd.iter().map(|s| s.ln()).sum::<f64>();
        Factor::Diagonal { sd, log_det }
    }

    /// (x-μ)ᵀ Σ⁻¹ (x-μ) by forward substitution L z = x - μ, returning ‖z‖².
    /// `scratch` (length d) avoids an allocation per class per query.
    pub(crate) fn mahalanobis_sq(&self, x: &[f64], mean: &[f64], scratch: &mut [f64]) -> f64 {
        match self {
            Factor::Dense { dim, l, .. } => {
                let d = *dim;
                let mut sum = 0.0;
                for i in 0..d {
                    let row = &l[i * d..i * d + i];
                    let zi = (x[i] - mean[i] - dot(row, &scratch[..i])) / l[i * d + i];
                    scratch[i] = zi;
                    sum += zi * zi;
                }
                sum
            }
            Factor::Diagonal { sd, .. } => sd
                .iter()
                .zip(x)
                .zip(mean)
                .map(|((s, xi), mi)| ((xi - mi) / s).powi(2))
                .sum(),
        }
    }

    /// Σ = L Lᵀ as a dense d×d matrix (for inspection and tests).
    pub(crate) fn covariance(&self, dim: usize) -> Vec<f64> {
        let mut out = vec![0.0; dim * dim];
        match self {
            Factor::Dense { l, .. } => {
                for i in 0..dim {
                    for j in 0..=i {
                        let k = j + 1; // L_ik L_jk vanishes for k > j
                        let v = dot(&l[i * dim..i * dim + k], &l[j * dim..j * dim + k]);
                        out[i * dim + j] = v;
                        out[j * dim + i] = v;
                    }
                }
            }
            Factor::Diagonal { sd, .. } => {
                for (i, s) in sd.iter().enumerate() {
                    out[i * dim + i] = s * s;
                }
            }
        }
        out
    }

    /// The raw factor entries as stored in the file: d×d for dense, d for diagonal.
    pub(crate) fn entries(&self) -> &[f64] {
        match self {
            Factor::Dense { l, .. } => l,
            Factor::Diagonal { sd, .. } => sd,
        }
    }
}

pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    // Four independent accumulators let the compiler pipeline the adds, and
    // chunks_exact drops the bounds checks; the summation order is fixed, so
    // results are deterministic run to run.
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    let mut acc = [0.0f64; 4];
    for (x, y) in ca.zip(cb) {
        acc[0] += x[0] * y[0];
        acc[1] += x[1] * y[1];
        acc[2] += x[2] * y[2];
        acc[3] += x[3] * y[3];
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// Mean of the rows of an n×d row-major matrix (n ≥ 1).
pub(crate) fn mean(rows: &[f64], n: usize, dim: usize) -> Vec<f64> {
    let mut m = vec![0.0; dim];
    for row in rows.chunks_exact(dim) {
        for (acc, v) in m.iter_mut().zip(row) {
            *acc += v;
        }
    }
    let inv = 1.0 / n as f64;
    m.iter_mut().for_each(|v| *v *= inv);
    m
}

/// Lower triangle of the scatter W = Σ_k (x_k-μ)(x_k-μ)ᵀ (upper left at 0).
/// Built from rank-one updates so each sample row is read once.
pub(crate) fn scatter_lower(rows: &[f64], mean: &[f64], dim: usize) -> Vec<f64> {
    let mut w = vec![0.0; dim * dim];
    let mut c = vec![0.0; dim];
    for row in rows.chunks_exact(dim) {
        for ((ci, xi), mi) in c.iter_mut().zip(row).zip(mean) {
            *ci = xi - mi;
        }
        for i in 0..dim {
            let ci = c[i];
            let w_row = &mut w[i * dim..i * dim + i + 1];
            for (wij, cj) in w_row.iter_mut().zip(&c[..=i]) {
                *wij += ci * cj;
            }
        }
    }
    w
}

/// Per-dimension sums of squared deviations Σ_k (x_kj - μ_j)² (the scatter's diagonal).
pub(crate) fn scatter_diagonal(rows: &[f64], mean: &[f64], dim: usize) -> Vec<f64> {
    let mut s = vec![0.0; dim];
    for row in rows.chunks_exact(dim) {
        for ((acc, xi), mi) in s.iter_mut().zip(row).zip(mean) {
            *acc += (xi - mi) * (xi - mi);
        }
    }
    s
}

pub(crate) fn trace(dim: usize, a: &[f64]) -> f64 {
    (0..dim).map(|i| a[i * dim + i]).sum()
}
