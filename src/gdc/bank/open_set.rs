//! What a bank knows about its own reliability, learnt from held-out bank
//! images at bank-building time (issue 16): an "unknown" answer and a
//! calibrated temperature.
//!
//! # Cross-validation
//! [`GaussianBank::calibrate`] splits every class's embeddings into k folds
//! (embedding j of a class is in fold j mod k), fits a bank with the same
//! options on the other k−1 folds and scores each held-out embedding with it:
//! - its squared Mahalanobis distance to its own class,
//!   m_c(x) = (x−μ_c)ᵀ Σ_c⁻¹ (x−μ_c), kept per class, sorted;
//! - its log-likelihoods under every class, for the temperature.
//! A class whose training part of a fold is empty (a one-image class) is
//! left out of that fold's bank, and its held-out image is not scored.
//! The fold banks are fitted from (k−1)/k of the images, so their held-out
//! distances are a little larger than the final bank's on new images (the
//! thresholds below err on the side of answering a class), and they are a
//! little more over-confident than the final bank (the fitted temperature
//! errs on the soft side). The bias grows as n_c approaches d: on synthetic
//! classes with n = 40 in d = 24, 5 folds fitted T = 20.6 where T = 7.1 was
//! best for the final bank, 10 folds T = 11.3; hence 10 folds by default.
//!
//! # Open-set answer (split-conformal, per class)
//! With the n_c held-out distances of class c sorted, d₍₁₎ ≤ … ≤ d₍ₙ₎, and a
//! target false-rejection rate α, the class's threshold is the
//! k = ⌈(n_c+1)(1−α)⌉-th smallest, t_c(α) = d₍ₖ₎: a new image of class c
//! (exchangeable with the held-out ones) has m_c > t_c(α) with probability
//! ≤ α. When k > n_c (too few held-out images for that α, or α = 0) the
//! class cannot reject: t_c = ∞. A query is **unknown** when it is outside
//! every class considered, m_c(x) > t_c(α) for all c, and is then reported
//! with its nearest class (smallest m_c) and that class's distance √m_c.
//! A class without held-out distances (fitted from one image, added with
//! plain [`GaussianBank::add_class`], or every class of an uncalibrated
//! bank) cannot reject either, so a query near it is answered as before.
//! Classes added at run time through the classifier are calibrated on their
//! own embeddings ([`GaussianBank::add_class_calibrated`]).
//!
//! # Temperature
//! The temperature T of p(c | x) = softmax(log p(x | c) / T) is the one that
//! minimises the negative log-likelihood of the held-out predictions,
//! NLL(T) = Σ_x [ log Σ_c exp(ℓ_c(x)/T) − ℓ_true(x)/T ]. NLL is convex in
//! β = 1/T, hence unimodal in log T; a golden-section search over
//! log T ∈ [log 10⁻³, log 10⁶] finds it.

use super::{BankError, GaussianBank, Samples};

/// The label of a query outside every class.
pub const UNKNOWN_LABEL: &str = "unknown";
/// Default target false-rejection rate of `gdc.unknown_rate`.
pub const DEFAULT_UNKNOWN_RATE: f64 = 0.05;
/// Default number of cross-validation folds.
pub const DEFAULT_FOLDS: usize = 10;
/// Bounds of the fitted temperature.
pub const TEMPERATURE_RANGE: (f64, f64) = (1e-3, 1e6);

/// The bank's held-out statistics (one entry of `heldout` per class).
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    /// Fitted temperature (1 = plain Bayes).
    pub temperature: f64,
    /// Number of folds the held-out scores came from.
    pub folds: usize,
    /// Per class, its held-out squared Mahalanobis distances, ascending
    /// (empty: the class cannot reject).
    pub heldout_sq: Vec<Vec<f64>>,
}

/// What cross-validation measured while calibrating.
#[derive(Debug, Clone, PartialEq)]
pub struct CalibrationReport {
    pub temperature: f64,
    /// Held-out images scored (for the temperature).
    pub scored: usize,
    /// Fraction of them whose most likely class was their own.
    pub heldout_accuracy: f64,
    /// Mean held-out NLL at T = 1 and at the fitted T.
    pub nll_at_one: f64,
    pub nll_fitted: f64,
}

/// The open-set verdict for one query among some classes.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenSetVerdict {
    /// Bank index of the nearest class (smallest Mahalanobis distance).
    pub nearest: usize,
    /// √m of the nearest class.
    pub distance: f64,
    /// √t of the nearest class at the rate asked (∞ when it cannot reject).
    pub threshold: f64,
    /// Outside every class considered.
    pub unknown: bool,
}

/// Checks a target false-rejection rate: finite, in [0, 1).
pub fn validate_unknown_rate(rate: f64) -> Result<(), BankError> {
    if rate.is_finite() && (0.0..1.0).contains(&rate) {
        Ok(())
    } else {
        Err(BankError::InvalidParameter { name: "unknown_rate", reason: format!("must be in [0, 1), got {rate}") })
    }
}

/// The ⌈(n+1)(1−α)⌉-th smallest of `sorted` (ascending), ∞ when that rank
/// exceeds n (or n = 0).
pub fn conformal_threshold(sorted: &[f64], rate: f64) -> f64 {
    let n = sorted.len();
    // the small epsilon keeps (n+1)(1−α) = integer from rounding up
    let rank = (((n + 1) as f64) * (1.0 - rate) - 1e-9).ceil().max(1.0) as usize;
    if n == 0 || rank > n {
        f64::INFINITY
    } else {
        sorted[rank - 1]
    }
}

/// Mean negative log-likelihood of the true classes at temperature T;
/// `records` are (true index, log-likelihoods), −∞ for absent classes.
pub fn heldout_nll(records: &[(usize, Vec<f64>)], temperature: f64) -> f64 {
    let mut total = 0.0;
    for (truth, ll) in records {
        let max = ll.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let lse: f64 = ll.iter().map(|l| ((l - max) / temperature).exp()).sum::<f64>().ln();
        total += lse - (ll[*truth] - max) / temperature;
    }
    total / records.len().max(1) as f64
}

/// The T in [`TEMPERATURE_RANGE`] minimising [`heldout_nll`] (1 without records).
pub fn fit_temperature(records: &[(usize, Vec<f64>)]) -> f64 {
    if records.is_empty() {
        return 1.0;
    }
    let f = |u: f64| heldout_nll(records, u.exp());
    let (mut a, mut b) = (TEMPERATURE_RANGE.0.ln(), TEMPERATURE_RANGE.1.ln());
    let g = (5f64.sqrt() - 1.0) / 2.0;
    let (mut c, mut d) = (b - g * (b - a), a + g * (b - a));
    let (mut fc, mut fd) = (f(c), f(d));
    for _ in 0..200 {
        if fc <= fd {
            (b, d, fd) = (d, c, fc);
            c = b - g * (b - a);
            fc = f(c);
        } else {
            (a, c, fc) = (c, d, fd);
            d = a + g * (b - a);
            fd = f(d);
        }
        if b - a < 1e-9 {
            break;
        }
    }
    ((a + b) / 2.0).exp()
}

impl GaussianBank {
    /// Cross-validates the bank on the embeddings it was fitted from (the
    /// same classes, in the bank's order) and stores the held-out distances
    /// and the fitted temperature (module docs). `folds` ≥ 2.
    pub fn calibrate(&mut self, classes: &[(&str, Samples<'_>)], folds: usize) -> Result<CalibrationReport, BankError> {
        self.calibrate_grouped(classes, folds, 1)
    }

    /// [`Self::calibrate`] for classes whose embeddings come in runs of
    /// `group` made from one image (the image and its augmented copies,
    /// [`crate::gdc::augment`]): run r (embeddings r·group … r·group+group−1)
    /// is in fold r mod k, so no copy of a held-out image is in the bank
    /// that scores it. Every member of a held-out run gives a held-out
    /// distance (the thresholds then accept what the copies vary); only the
    /// run's first member, the image itself, is scored for the temperature,
    /// which is meant for queries like it, not like its blurred and
    /// jittered copies. `group` = 1 is [`Self::calibrate`].
    pub fn calibrate_grouped(&mut self, classes: &[(&str, Samples<'_>)], folds: usize, group: usize) -> Result<CalibrationReport, BankError> {
        if group == 0 {
            return Err(BankError::InvalidParameter { name: "group", reason: "must be >= 1".into() });
        }
        let fold_of = |j: usize| (j / group) % folds;
        if folds < 2 {
            return Err(BankError::InvalidParameter { name: "folds", reason: format!("must be >= 2, got {folds}") });
        }
        let names: Vec<&str> = classes.iter().map(|(n, _)| *n).collect();
        if names != self.class_names() {
            return Err(BankError::InvalidParameter {
                name: "classes",
                reason: "calibration needs the bank's own classes, in the bank's order".into(),
            });
        }
        let d = self.dim;
        let data: Vec<(Vec<f64>, usize)> = classes
            .iter()
            .map(|(name, s)| s.to_f64(&format!("class {name:?}"), Some(d)).map(|(rows, n, _)| (rows, n)))
            .collect::<Result<_, _>>()?;
        let mut heldout_sq = vec![Vec::new(); classes.len()];
        let mut records = Vec::new();
        for fold in 0..folds {
            let train: Vec<Vec<f64>> = data
                .iter()
                .map(|(rows, _)| rows.chunks_exact(d).enumerate().filter(|(j, _)| fold_of(*j) != fold).flat_map(|(_, r)| r.iter().copied()).collect())
                .collect();
            let present: Vec<usize> = (0..classes.len()).filter(|&c| !train[c].is_empty()).collect();
            let fold_classes: Vec<(&str, Samples<'_>)> =
                present.iter().map(|&c| (names[c], Samples::MatrixF64 { data: &train[c], dim: d })).collect();
            if fold_classes.is_empty() {
                continue;
            }
            let fold_bank = GaussianBank::fit(self.spec.clone(), &fold_classes, self.options)?;
            for (k, &c) in present.iter().enumerate() {
                for (j, x) in data[c].0.chunks_exact(d).enumerate().filter(|(j, _)| fold_of(*j) == fold) {
                    let m = fold_bank.mahalanobis_sq_of(x, &[k])?[0];
                    heldout_sq[c].push(m);
                    if j % group != 0 {
                        continue; // an augmented copy: a threshold sample, not a query the temperature is for
                    }
                    let ll_fold = fold_bank.log_likelihoods(x)?;
                    let mut ll = vec![f64::NEG_INFINITY; classes.len()];
                    present.iter().zip(&ll_fold).for_each(|(&i, &l)| ll[i] = l);
                    records.push((c, ll));
                }
            }
        }
        heldout_sq.iter_mut().for_each(|v| v.sort_by(f64::total_cmp));
        let temperature = fit_temperature(&records);
        let correct = records
            .iter()
            .filter(|(t, ll)| ll.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i) == Some(*t))
            .count();
        let report = CalibrationReport {
            temperature,
            scored: records.len(),
            heldout_accuracy: correct as f64 / records.len().max(1) as f64,
            nll_at_one: heldout_nll(&records, 1.0),
            nll_fitted: heldout_nll(&records, temperature),
        };
        self.calibration = Some(Calibration { temperature, folds, heldout_sq });
        Ok(report)
    }

    /// Adds a class (as [`Self::add_class`]) with its own held-out
    /// distances, so that it can answer `unknown` like the classes calibrated
    /// with the bank: its embeddings are split into `folds` folds (embedding
    /// j in fold j mod k); for each fold, a copy of the bank with the class
    /// fitted from the other folds scores the held-out fold's distances to
    /// it. The temperature is left as fitted. An empty bank without
    /// calibration (the zero-shot start of `~/add_classes`) becomes
    /// calibrated with T = 1 (what it used before) and this class's
    /// distances. A non-empty bank without calibration (a version-1 file), or
    /// a class with fewer than 2 embeddings, gets the class without held-out
    /// distances (it cannot reject). Returns how many distances were kept.
    pub fn add_class_calibrated(&mut self, name: &str, samples: Samples<'_>, folds: usize) -> Result<usize, BankError> {
        if folds < 2 {
            return Err(BankError::InvalidParameter { name: "folds", reason: format!("must be >= 2, got {folds}") });
        }
        let fresh = self.calibration.is_none() && self.classes.is_empty();
        if self.calibration.is_none() && !fresh {
            return self.add_class(name, samples).map(|()| 0);
        }
        let (rows, n, d) = samples.to_f64(&format!("class {name:?}"), (self.dim > 0).then_some(self.dim))?;
        let mut heldout = Vec::with_capacity(n);
        if n >= 2 {
            let folds = folds.min(n);
            for fold in 0..folds {
                let train: Vec<f64> = rows.chunks_exact(d).enumerate().filter(|(j, _)| j % folds != fold).flat_map(|(_, r)| r.iter().copied()).collect();
                let mut fold_bank = self.clone();
                fold_bank.add_class(name, Samples::MatrixF64 { data: &train, dim: d })?;
                let index = fold_bank.classes.len() - 1;
                for x in rows.chunks_exact(d).skip(fold).step_by(folds) {
                    heldout.push(fold_bank.mahalanobis_sq_of(x, &[index])?[0]);
                }
            }
        }
        self.add_class(name, Samples::MatrixF64 { data: &rows, dim: d })?;
        heldout.sort_by(f64::total_cmp);
        let kept = heldout.len();
        match &mut self.calibration {
            Some(c) => {
                if let Some(last) = c.heldout_sq.last_mut() {
                    *last = heldout;
                }
            }
            None => self.calibration = Some(Calibration { temperature: 1.0, folds, heldout_sq: vec![heldout] }),
        }
        Ok(kept)
    }

    /// Fit and calibrate in one step ([`Self::fit`], then [`Self::calibrate`]).
    pub fn fit_calibrated(
        spec: super::EmbeddingSpec,
        classes: &[(&str, Samples<'_>)],
        options: impl Into<super::FitOptions>,
        folds: usize,
    ) -> Result<(GaussianBank, CalibrationReport), BankError> {
        let mut bank = GaussianBank::fit(spec, classes, options)?;
        let report = bank.calibrate(classes, folds)?;
        Ok((bank, report))
    }

    /// The held-out statistics, if the bank was calibrated.
    pub fn calibration(&self) -> Option<&Calibration> {
        self.calibration.as_ref()
    }

    /// The fitted temperature, if the bank was calibrated.
    pub fn fitted_temperature(&self) -> Option<f64> {
        self.calibration.as_ref().map(|c| c.temperature)
    }

    /// √t_c(α) of one class (∞ when it cannot reject, `None` for a bad index).
    pub fn unknown_threshold(&self, class: usize, rate: f64) -> Option<f64> {
        (class < self.classes.len()).then(|| {
            let sorted = self.calibration.as_ref().and_then(|c| c.heldout_sq.get(class)).map_or(&[][..], Vec::as_slice);
            conformal_threshold(sorted, rate).sqrt()
        })
    }

    /// The open-set verdict for `x` among the classes `indices` (module docs).
    pub fn open_set<T: Copy + Into<f64>>(&self, x: &[T], indices: &[usize], rate: f64) -> Result<OpenSetVerdict, BankError> {
        validate_unknown_rate(rate)?;
        if indices.is_empty() {
            return Err(BankError::Empty);
        }
        let m = self.mahalanobis_sq_of(&self.query(x)?, indices)?;
        self.open_set_from_sq(&m, indices, rate)
    }

    /// The open-set verdict from a query's squared Mahalanobis distances
    /// `m` to the classes `indices` (one each; e.g. from a [`super::BatchScorer`]).
    pub fn open_set_from_sq(&self, m: &[f64], indices: &[usize], rate: f64) -> Result<OpenSetVerdict, BankError> {
        validate_unknown_rate(rate)?;
        if indices.is_empty() {
            return Err(BankError::Empty);
        }
        if m.len() != indices.len() {
            return Err(BankError::DimensionMismatch { what: "distances".into(), expected: indices.len(), got: m.len() });
        }
        let (k, &nearest_sq) = m.iter().enumerate().min_by(|a, b| a.1.total_cmp(b.1)).ok_or(BankError::Empty)?;
        let unknown = indices.iter().zip(m).all(|(&c, &mc)| self.unknown_threshold(c, rate).is_some_and(|t| mc.sqrt() > t));
        Ok(OpenSetVerdict {
            nearest: indices[k],
            distance: nearest_sq.sqrt(),
            threshold: self.unknown_threshold(indices[k], rate).unwrap_or(f64::INFINITY),
            unknown,
        })
    }

    /// Squared Mahalanobis distances of a query to the classes `indices`
    /// (one query, one class at a time, f64).
    pub fn mahalanobis_sq<T: Copy + Into<f64>>(&self, x: &[T], indices: &[usize]) -> Result<Vec<f64>, BankError> {
        self.mahalanobis_sq_of(&self.query(x)?, indices)
    }

    /// Squared Mahalanobis distances of a checked query to the classes `indices`.
    pub(super) fn mahalanobis_sq_of(&self, x: &[f64], indices: &[usize]) -> Result<Vec<f64>, BankError> {
        let mut scratch = vec![0.0; self.dim];
        indices
            .iter()
            .map(|&i| {
                let class = self.classes.get(i).ok_or(BankError::Empty)?;
                let factor = self
                    .factor(class)
                    .ok_or_else(|| BankError::Format(format!("class {:?} has no covariance factor", class.name)))?;
                Ok(factor.mahalanobis_sq(x, &class.mean, &mut scratch))
            })
            .collect()
    }
}
