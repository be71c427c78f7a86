//! Small numerical helpers in plain f64, free of libtorch: the Eloss
//! monitor's profile has a dozen or two layers, so a hand-written Cholesky
//! beats a tensor round trip; AUROC and quantiles serve the GDC evaluation
//! too (which the core library builds without the `torch` feature).

/// Mean and unbiased covariance (row-major, d×d) of `rows` (each of length d).
pub fn mean_cov(rows: &[Vec<f64>]) -> (Vec<f64>, Vec<f64>) {
    let d = rows.first().map_or(0, Vec::len);
    let n = rows.len().max(1) as f64;
    let mut mean = vec![0.0; d];
    for r in rows {
        for (m, v) in mean.iter_mut().zip(r) {
            *m += v / n;
        }
    }
    let mut cov = vec![0.0; d * d];
    let denom = (rows.len() as f64 - 1.0).max(1.0);
    for r in rows {
        for i in 0..d {
            let di = r[i] - mean[i];
            for j in 0..=i {
                cov[i * d + j] += di * (r[j] - mean[j]) / denom;
            }
        }
    }
    for i in 0..d {
        for j in 0..i {
            cov[j * d + i] = cov[i * d + j];
        }
    }
    (mean, cov)
}

/// Lower Cholesky factor of a symmetric positive-definite d×d matrix; `None`
/// when it is not (numerically) positive definite.
pub fn cholesky(d: usize, a: &[f64]) -> Option<Vec<f64>> {
    let mut l = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..=i {
            let s: f64 = a[i * d + j] - (0..j).map(|k| l[i * d + k] * l[j * d + k]).sum::<f64>();
            if i == j {
                if !(s > 0.0 && s.is_finite()) {
                    return None;
                }
                l[i * d + i] = s.sqrt();
            } else {
                l[i * d + j] = s / l[j * d + j];
            }
        }
    }
    Some(l)
}

/// ‖L⁻¹ v‖ (forward substitution): the Mahalanobis norm of v for Σ = L Lᵀ.
pub fn mahalanobis(d: usize, l: &[f64], v: &[f64]) -> f64 {
    let mut y = vec![0.0; d];
    for i in 0..d {
        let s: f64 = v[i] - (0..i).map(|k| l[i * d + k] * y[k]).sum::<f64>();
        y[i] = s / l[i * d + i];
    }
    y.iter().map(|v| v * v).sum::<f64>().sqrt()
}

/// Linear-interpolated quantile q ∈ [0, 1] of `sorted` (ascending, non-empty).
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Sorted copy with NaNs dropped.
pub fn sorted(values: &[f64]) -> Vec<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    v.sort_by(f64::total_cmp);
    v
}

pub fn median(values: &[f64]) -> f64 {
    quantile_sorted(&sorted(values), 0.5)
}

/// Mean and (unbiased) standard deviation.
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    if values.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, var.sqrt())
}

/// Area under the ROC curve of `positive` scores against `negative` ones:
/// P(pos > neg) + ½ P(pos = neg) (Mann–Whitney), NaN when either is empty.
pub fn auroc(negative: &[f64], positive: &[f64]) -> f64 {
    if negative.is_empty() || positive.is_empty() {
        return f64::NAN;
    }
    let neg = sorted(negative);
    let mut wins = 0.0;
    for &p in positive {
        let below = neg.partition_point(|&n| n < p);
        let equal = neg.partition_point(|&n| n <= p) - below;
        wins += below as f64 + 0.5 * equal as f64;
    }
    wins / (neg.len() as f64 * positive.len() as f64)
}

/// Wilson–Hilferty: a χ²_k value mapped to an approximately standard normal
/// z, so a Mahalanobis distance reads on the same scale as a z-score
/// whatever the number of layers.
pub fn chi2_to_z(x: f64, k: usize) -> f64 {
    let k = k.max(1) as f64;
    let a = 2.0 / (9.0 * k);
    ((x.max(0.0) / k).cbrt() - (1.0 - a)) / a.sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cholesky_and_mahalanobis_by_hand() {
        // Σ = [[4, 2], [2, 3]] = L Lᵀ with L = [[2, 0], [1, √2]]
        let l = cholesky(2, &[4.0, 2.0, 2.0, 3.0]).unwrap();
        assert!((l[0] - 2.0).abs() < 1e-12 && (l[2] - 1.0).abs() < 1e-12 && (l[3] - 2f64.sqrt()).abs() < 1e-12);
        // vᵀ Σ⁻¹ v for v = (1, 1): Σ⁻¹ = [[3, −2], [−2, 4]] / 8 → 3/8
        assert!((mahalanobis(2, &l, &[1.0, 1.0]).powi(2) - 3.0 / 8.0).abs() < 1e-12);
        assert!(cholesky(2, &[1.0, 2.0, 2.0, 1.0]).is_none());
    }

    #[test]
    fn moments_quantiles_auroc() {
        let (m, c) = mean_cov(&[vec![1.0, 2.0], vec![3.0, 6.0]]);
        assert_eq!(m, [2.0, 4.0]);
        assert_eq!(c, [2.0, 4.0, 4.0, 8.0]);
        assert_eq!(median(&[3.0, 1.0, 2.0, f64::NAN]), 2.0);
        assert_eq!(quantile_sorted(&[0.0, 10.0], 0.25), 2.5);
        assert_eq!(auroc(&[1.0, 2.0], &[3.0, 4.0]), 1.0);
        assert_eq!(auroc(&[3.0, 4.0], &[1.0, 2.0]), 0.0);
        assert_eq!(auroc(&[1.0, 2.0], &[2.0]), 0.75);
        // the median of χ²_16 (≈ 15.34) maps near z = 0, its 97.7 % point (≈ 29.2) near z = 2
        assert!(chi2_to_z(15.34, 16).abs() < 0.05);
        assert!((chi2_to_z(29.2, 16) - 2.0).abs() < 0.1);
    }
}
