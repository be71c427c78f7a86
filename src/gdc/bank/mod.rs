//! The Gaussian class bank of GDC (Gaussian Diffusion Classifiers, arXiv
//! 2412.12594): one Gaussian per class over image embeddings, and Bayes'
//! rule over them.
//!
//! # Model
//! Class c has n_c embeddings x_k ∈ ℝᵈ (f32 or f64 in, f64 throughout):
//!
//! - mean           μ_c = (1/n_c) Σ_k x_k
//! - sample cov.    S_c = (1/(n_c−1)) Σ_k (x_k−μ_c)(x_k−μ_c)ᵀ        (unbiased)
//! - ridge          ε_c = ridge_rel · tr(S_c)/d                         (relative: scale-invariant)
//! - covariance     Σ_c = S_c + ε_c I, kept as its Cholesky factor L_c (Σ_c = L_c L_cᵀ)
//!                  and log|Σ_c| = 2 Σ_i log (L_c)_ii
//!
//! [`CovarianceKind`] picks the covariance model:
//! - `Full` (QDA, the paper's): Σ_c as above, one factor per class;
//! - `Diagonal`: only the diagonal of S_c, ε_c = ridge_rel · mean_j (S_c)_jj;
//! - `Shared` (LDA): one pooled within-class covariance for every class,
//!   S_w = Σ_c (n_c−1) S_c / Σ_c (n_c−1), plus ridge_rel · tr(S_w)/d, one factor.
//!
//! # Classification
//! - log p(x | c) = −½ [ (x−μ_c)ᵀ Σ_c⁻¹ (x−μ_c) + log|Σ_c| + d log 2π ],
//!   the quadratic form as ‖z‖² with L_c z = x − μ_c (forward substitution,
//!   never an explicit inverse);
//! - posterior p(c | x) = softmax_c( log π_c + log p(x | c) / T ), with priors
//!   π (uniform when absent) and temperature T (T = 1 is plain Bayes; T → ∞
//!   gives the priors, T → 0 one-hot on the most likely class); computed by
//!   log-sum-exp, so log-likelihood gaps of 10⁴ and more are exact 0 / 1.
//!
//! # Defaults and degenerate classes
//! - `ridge_rel` = [`DEFAULT_RIDGE_REL`] = 1e-3. Since λ_max(S) ≤ tr(S), the
//!   condition number of Σ is at most 1 + d/ridge_rel (3.8·10⁵ at d = 384), so
//!   Cholesky and the solve keep ≥ 10 of f64's 16 digits even when S is
//!   singular (n ≤ d: with 240 DINOv2 samples in d = 384 it always is). It
//!   moves each well-estimated direction (eigenvalue ≳ the average tr(S)/d)
//!   by ≤ 0.1 %, and is the whole variance of the null-space directions. The
//!   paper does not state its ε; when n ≤ d the null-space weight 1/ε shapes
//!   the classifier, so tune ridge_rel (1e-3 … 1e-1) on held-out data.
//! - One-shot classes (n_c = 1) and degenerate ones (all samples equal,
//!   tr(S_c) = 0) have no spread to estimate; they get Σ_c = v I with v, in
//!   order: [`FitOptions::one_shot_variance`] if set; else the pooled
//!   per-dimension variance of the classes that have a spread,
//!   v = Σ (n_c−1) tr(S_c)/d / Σ (n_c−1) (a typical class's spread); else
//!   (every class one-shot) the spread of the class means around their
//!   average, v = Σ_c ‖μ_c − μ̄‖² / (d (C−1)) (between-class spread: too wide,
//!   so the posteriors err on the soft side); else (a single one-shot class)
//!   an error. With every class one-shot they all share v I, so GDC becomes a
//!   nearest-mean classifier with posterior softmax(−‖x−μ_c‖² / 2v).
//!
//! # Incremental updates
//! `add_class` fits only the new class for Full/Diagonal (the others are
//! untouched, so the result equals fitting all at once; a one-shot class's v
//! is taken from the bank as it is when the class is added). For Shared the
//! bank keeps the pooled scatter Σ_c Σ_k (x_k−μ_c)(x_k−μ_c)ᵀ and its degrees
//! of freedom, adds the new class's and refactors the shared covariance.
//! `remove_class` on a Shared bank drops the mean only: the pooled covariance
//! keeps the removed class's contribution (its scatter is not stored); refit
//! from the embeddings if that matters.
//!
//! Layout: this file (types, fitting, incremental updates, file entry
//! points), `gaussian.rs` (Cholesky, solves, sample statistics),
//! `classify.rs` (likelihoods, posteriors, top-k), `samples.rs` (input
//! embeddings checked into f64 matrices), `options.rs` (covariance kind,
//! fit options, embedding spec, creation info), `file.rs` (the
//! safetensors format, also described in docs/gdc_bank.md), `tests.rs`.

#[cfg(feature = "torch")]
mod batched;
mod classify;
mod file;
mod gaussian;
mod open_set;
mod options;
mod samples;
mod size;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod size_tests;
#[cfg(test)]
mod open_set_tests;

use std::path::PathBuf;

#[cfg(feature = "torch")]
pub use batched::BatchScorer;
pub use classify::{bayes_posterior, top_k, Prediction};
pub use file::{FORMAT_VERSION, METADATA_KEY};
pub use open_set::{
    conformal_threshold, fit_temperature, heldout_nll, validate_unknown_rate, Calibration, CalibrationReport, OpenSetVerdict,
    DEFAULT_FOLDS, DEFAULT_UNKNOWN_RATE, UNKNOWN_LABEL,
};
use gaussian::{Factor, FactorError};
pub use options::{CovarianceKind, CreationInfo, EmbeddingSpec, FitOptions};
pub use samples::Samples;
pub use size::{bank_bytes, MAX_BANK_BYTES, MAX_CLASSES};
use size::check_size;

/// Default relative ridge: ε = 1e-3 · tr(S)/d (see the module docs for why).
pub const DEFAULT_RIDGE_REL: f64 = 1e-3;

/// Relative ridge of banks fitted from camera crops (`eloss gdc bank`, the
/// demo's bank), with shared covariance: on simulated crops (EfficientNet-Lite0,
/// 100 per class) it answered 94.6 % of val crops right with 1.8 % unknown
/// (96.3 % of the answered ones) and ECE 0.020, against 91.8 %, 0.7 % and
/// 0.032 at 1e-3 (docs/gdc_bank.md, "Choices that transfer").
pub const IMAGE_BANK_RIDGE_REL: f64 = 0.1;

/// Everything that can go wrong with a bank. File errors say which file.
#[derive(Debug, thiserror::Error)]
pub enum BankError {
    #[error("the bank has no classes")]
    Empty,
    #[error("class names must not be empty")]
    EmptyName,
    #[error("duplicate class name {0:?}")]
    DuplicateClass(String),
    #[error("unknown class names {unknown:?} (the bank has {available})")]
    UnknownClasses { unknown: Vec<String>, available: String },
    #[error("{0}: no embeddings")]
    NoSamples(String),
    #[error("{what}: dimension {got}, expected {expected}")]
    DimensionMismatch { what: String, expected: usize, got: usize },
    #[error("{0}: contains a non-finite value")]
    NonFinite(String),
    #[error("invalid {name}: {reason}")]
    InvalidParameter { name: &'static str, reason: String },
    #[error("covariance of {class:?} is not positive definite (pivot {index} = {pivot:e}); use ridge_rel > 0")]
    NotPositiveDefinite { class: String, index: usize, pivot: f64 },
    #[error("class {0:?} has a single embedding (or no spread) and nothing to borrow a variance from: set FitOptions::one_shot_variance")]
    NoSpreadEstimate(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the bank would hold {classes} classes; at most {MAX_CLASSES}")]
    TooManyClasses { classes: usize },
    #[error("the bank would need {bytes} bytes ({classes} classes of dimension {dim}); at most {MAX_BANK_BYTES}")]
    OverBudget { bytes: u64, classes: usize, dim: usize },
    /// A file that was read but is not a valid bank: the parse error, with the file.
    #[error("{path}: {source}")]
    File { path: PathBuf, source: Box<BankError> },
    #[error("not a readable safetensors file: {0}")]
    SafeTensors(#[from] safetensors::SafeTensorError),
    #[error("invalid bank file: {0}")]
    Format(String),
    #[error("bank file format version {found} is not supported (this build reads version {supported})")]
    UnsupportedVersion { found: u32, supported: u32 },
    #[error("the bank was built for backbone {found:?}, but the embeddings come from {expected:?}")]
    BackboneMismatch { expected: String, found: String },
    #[error("the bank was built with embedding recipe {found:?}, but the embeddings use {expected:?}")]
    RecipeMismatch { expected: String, found: String },
}

/// One class: its name, sample count, prompts, mean and covariance factor.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassGaussian {
    name: String,
    count: usize,
    prompts: Vec<String>,
    mean: Vec<f64>,
    /// tr(S_c)/d before the ridge; 0 for one-shot or degenerate classes.
    /// Kept to pool a variance for later one-shot classes.
    sample_var: f64,
    /// `None` in a Shared bank (the bank's shared factor applies).
    factor: Option<Factor>,
}

impl ClassGaussian {
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Number of embeddings the class was fitted from.
    pub fn count(&self) -> usize {
        self.count
    }
    /// The text prompts its reference images were generated from (may be empty).
    pub fn prompts(&self) -> &[String] {
        &self.prompts
    }
    pub fn mean(&self) -> &[f64] {
        &self.mean
    }
    /// Average per-dimension sample variance tr(S_c)/d, before the ridge
    /// (0 when the class had one sample or no spread).
    pub fn sample_variance(&self) -> f64 {
        self.sample_var
    }
}

/// The pooled within-class statistics of a Shared (LDA) bank.
#[derive(Debug, Clone, PartialEq)]
struct SharedCovariance {
    /// Lower triangle of Σ_c Σ_k (x_k−μ_c)(x_k−μ_c)ᵀ, d×d row-major.
    scatter: Vec<f64>,
    /// Σ_c (n_c − 1).
    dof: usize,
    factor: Factor,
}

/// Per-class statistics computed from embeddings, before the covariance is built.
struct ClassStats {
    name: String,
    count: usize,
    mean: Vec<f64>,
    /// Lower-triangular scatter (Full/Shared) or its diagonal (Diagonal).
    scatter: Vec<f64>,
    /// tr(S)/d, 0 when n = 1.
    sample_var: f64,
}

/// A bank of class Gaussians over one embedding space.
#[derive(Debug, Clone, PartialEq)]
pub struct GaussianBank {
    spec: EmbeddingSpec,
    options: FitOptions,
    dim: usize,
    classes: Vec<ClassGaussian>,
    shared: Option<SharedCovariance>,
    created: CreationInfo,
    /// Held-out distances and temperature (`open_set.rs`); `None` for banks
    /// fitted without [`Self::calibrate`] and files written before it.
    calibration: Option<Calibration>,
}

impl GaussianBank {
    /// Fit one Gaussian per class. Names must be unique and non-empty; every
    /// class needs at least one embedding and all must share one dimension.
    pub fn fit(
        spec: EmbeddingSpec,
        classes: &[(&str, Samples<'_>)],
        options: impl Into<FitOptions>,
    ) -> Result<GaussianBank, BankError> {
        let options = options.into();
        options.validate()?;
        check_size(options.kind, classes.len(), classes.first().map_or(0, |(_, s)| s.dim()))?;
        let mut dim = None;
        let mut stats = Vec::with_capacity(classes.len());
        for (name, samples) in classes {
            let s = class_stats(name, samples, dim, options.kind)?;
            dim = Some(s.mean.len());
            if stats.iter().any(|o: &ClassStats| o.name == s.name) {
                return Err(BankError::DuplicateClass(s.name));
            }
            stats.push(s);
        }
        let dim = dim.ok_or(BankError::Empty)?;
        let mut bank = GaussianBank {
            spec,
            options,
            dim,
            classes: Vec::new(),
            shared: None,
            created: CreationInfo::now(),
            calibration: None,
        };
        bank.insert(stats)?;
        Ok(bank)
    }

    /// A bank with no classes yet, filled by [`Self::add_class`] (zero-shot
    /// classes generated at run time); the first class sets the dimension.
    pub fn empty(spec: EmbeddingSpec, options: impl Into<FitOptions>) -> Result<GaussianBank, BankError> {
        let options = options.into();
        options.validate()?;
        Ok(GaussianBank { spec, options, dim: 0, classes: Vec::new(), shared: None, created: CreationInfo::now(), calibration: None })
    }

    /// Fit and append a class without touching the others (Shared: the pooled
    /// covariance is updated and refactored). Duplicate names are refused.
    pub fn add_class(&mut self, name: &str, samples: Samples<'_>) -> Result<(), BankError> {
        if self.class_index(name).is_some() {
            return Err(BankError::DuplicateClass(name.to_string()));
        }
        let first = self.dim == 0;
        // the caps come before the d x d scatter is computed
        check_size(self.options.kind, self.classes.len() + 1, if first { samples.dim() } else { self.dim })?;
        let stats = class_stats(name, &samples, (!first).then_some(self.dim), self.options.kind)?;
        if first {
            self.dim = stats.mean.len();
        }
        let result = self.insert(vec![stats]);
        if result.is_err() && first {
            self.dim = 0;
        }
        result
    }

    /// Remove a class and return it. Shared: the pooled covariance keeps the
    /// removed class's contribution (see the module docs).
    pub fn remove_class(&mut self, name: &str) -> Result<ClassGaussian, BankError> {
        let index = self.require(name)?;
        if let Some(c) = &mut self.calibration {
            c.heldout_sq.remove(index);
        }
        Ok(self.classes.remove(index))
    }

    /// Set the prompts recorded for a class.
    pub fn set_prompts(&mut self, name: &str, prompts: Vec<String>) -> Result<(), BankError> {
        let index = self.require(name)?;
        self.classes[index].prompts = prompts;
        Ok(())
    }

    /// Add fitted statistics: the single place where covariances are built,
    /// so `fit` and `add_class` give identical results. On error the bank is
    /// left as it was.
    fn insert(&mut self, stats: Vec<ClassStats>) -> Result<(), BankError> {
        check_size(self.options.kind, self.classes.len() + stats.len(), self.dim)?;
        let factors = match self.options.kind {
            CovarianceKind::Shared { ridge_rel } => {
                self.shared = Some(self.pooled_with(&stats, ridge_rel)?);
                vec![None; stats.len()]
            }
            CovarianceKind::Full { ridge_rel } | CovarianceKind::Diagonal { ridge_rel } => {
                let mut one_shot = None; // computed once, and only if some class needs it
                let mut factors = Vec::with_capacity(stats.len());
                for s in &stats {
                    factors.push(Some(self.class_factor(s, &stats, ridge_rel, &mut one_shot)?));
                }
                factors
            }
        };
        for (s, factor) in stats.into_iter().zip(factors) {
            self.classes.push(ClassGaussian {
                name: s.name,
                count: s.count,
                prompts: Vec::new(),
                mean: s.mean,
                sample_var: s.sample_var,
                factor,
            });
            // a class added after calibration has no held-out distances (it cannot
            // reject) until add_class_calibrated sets them
            if let Some(c) = &mut self.calibration {
                c.heldout_sq.push(Vec::new());
            }
        }
        Ok(())
    }

    /// Σ_c = S_c + ε_c I (Full) or its diagonal (Diagonal); v I without spread.
    fn class_factor(
        &self,
        s: &ClassStats,
        new: &[ClassStats],
        ridge_rel: f64,
        one_shot: &mut Option<Option<f64>>,
    ) -> Result<Factor, BankError> {
        let d = self.dim;
        let diagonal = matches!(self.options.kind, CovarianceKind::Diagonal { .. });
        let factor = if s.sample_var > 0.0 {
            let dof = (s.count - 1) as f64;
            let mut cov: Vec<f64> = s.scatter.iter().map(|v| v / dof).collect();
            let eps = ridge_rel * s.sample_var; // = ridge_rel · tr(S)/d
            if diagonal {
                cov.iter_mut().for_each(|v| *v += eps);
                Factor::diagonal(&cov)
            } else {
                add_diagonal(d, &mut cov, eps);
                Factor::cholesky(d, &cov)
            }
        } else {
            let v = one_shot
                .get_or_insert_with(|| self.fallback_variance(new))
                .ok_or_else(|| BankError::NoSpreadEstimate(s.name.clone()))?;
            if diagonal {
                Factor::diagonal(&vec![v; d])
            } else {
                Factor::isotropic_dense(d, v)
            }
        };
        factor.map_err(|e| pd_error(&s.name, e))
    }

    /// The pooled scatter and degrees of freedom with `new` added, and the
    /// factor of S_w + ridge_rel·tr(S_w)/d·I (v I when no class has spread).
    fn pooled_with(&self, new: &[ClassStats], ridge_rel: f64) -> Result<SharedCovariance, BankError> {
        let d = self.dim;
        let (mut scatter, mut dof) = match &self.shared {
            Some(s) => (s.scatter.clone(), s.dof),
            None => (vec![0.0; d * d], 0),
        };
        for s in new {
            scatter.iter_mut().zip(&s.scatter).for_each(|(acc, v)| *acc += v);
            dof += s.count - 1;
        }
        let tr = gaussian::trace(d, &scatter);
        let factor = if dof > 0 && tr > 0.0 {
            let mut cov: Vec<f64> = scatter.iter().map(|v| v / dof as f64).collect();
            add_diagonal(d, &mut cov, ridge_rel * tr / dof as f64 / d as f64);
            Factor::cholesky(d, &cov)
        } else {
            let name = new.first().map(|s| s.name.clone()).unwrap_or_default();
            let v = self.fallback_variance(new).ok_or(BankError::NoSpreadEstimate(name))?;
            Factor::isotropic_dense(d, v)
        };
        let factor = factor.map_err(|e| pd_error("shared covariance", e))?;
        Ok(SharedCovariance { scatter, dof, factor })
    }

    /// v for Σ = v I of classes without spread (module docs: option, pooled
    /// within-class variance, between-class spread of the means, else none).
    fn fallback_variance(&self, new: &[ClassStats]) -> Option<f64> {
        if let Some(v) = self.options.one_shot_variance {
            return Some(v);
        }
        let existing = self.classes.iter().map(|c| (c.count, c.sample_var, c.mean.as_slice()));
        let all: Vec<(usize, f64, &[f64])> = existing
            .chain(new.iter().map(|s| (s.count, s.sample_var, s.mean.as_slice())))
            .collect();
        let (mut num, mut den) = (0.0, 0.0);
        for &(count, var, _) in &all {
            if var > 0.0 {
                num += (count - 1) as f64 * var;
                den += (count - 1) as f64;
            }
        }
        if den > 0.0 {
            return Some(num / den);
        }
        if all.len() >= 2 {
            let d = self.dim;
            let grand = gaussian::mean(
                &all.iter().flat_map(|a| a.2.iter().copied()).collect::<Vec<_>>(),
                all.len(),
                d,
            );
            let ss: f64 = all
                .iter()
                .map(|a| a.2.iter().zip(&grand).map(|(m, g)| (m - g) * (m - g)).sum::<f64>())
                .sum();
            let v = ss / (d as f64 * (all.len() - 1) as f64);
            if v > 0.0 && v.is_finite() {
                return Some(v);
            }
        }
        None
    }

    /// Read a bank; see docs/gdc_bank.md for the format.
    pub fn load(path: impl AsRef<std::path::Path>) -> Result<GaussianBank, BankError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| BankError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        file::from_bytes(&bytes).map_err(|e| BankError::File { path: path.to_path_buf(), source: Box::new(e) })
    }

    /// Read a bank and refuse it unless it was built for this backbone and recipe.
    pub fn load_expecting(
        path: impl AsRef<std::path::Path>,
        backbone: &str,
        recipe: &str,
    ) -> Result<GaussianBank, BankError> {
        let bank = GaussianBank::load(path)?;
        bank.check_spec(backbone, recipe)?;
        Ok(bank)
    }

    /// Error unless the bank was built for this backbone and recipe.
    pub fn check_spec(&self, backbone: &str, recipe: &str) -> Result<(), BankError> {
        if self.spec.backbone != backbone {
            return Err(BankError::BackboneMismatch {
                expected: backbone.into(),
                found: self.spec.backbone.clone(),
            });
        }
        if self.spec.recipe != recipe {
            return Err(BankError::RecipeMismatch {
                expected: recipe.into(),
                found: self.spec.recipe.clone(),
            });
        }
        Ok(())
    }

    /// Write the bank durably ([`crate::atomic_file`]: a temporary sibling,
    /// fsync, rename, fsync of the directory), so a crash or a power loss
    /// leaves the previous bank or the new one; a failure removes the
    /// temporary file.
    pub fn save(&self, path: impl AsRef<std::path::Path>) -> Result<(), BankError> {
        let path = path.as_ref();
        let bytes = file::to_bytes(self)?;
        crate::atomic_file::write(path, &bytes).map_err(|source| BankError::Io { path: path.to_path_buf(), source })
    }

    /// The file's bytes (what `save` writes).
    pub fn to_bytes(&self) -> Result<Vec<u8>, BankError> {
        file::to_bytes(self)
    }

    /// Parse a bank from a file's bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<GaussianBank, BankError> {
        file::from_bytes(bytes)
    }

    pub fn spec(&self) -> &EmbeddingSpec {
        &self.spec
    }
    pub fn kind(&self) -> CovarianceKind {
        self.options.kind
    }
    pub fn options(&self) -> FitOptions {
        self.options
    }
    pub fn created(&self) -> &CreationInfo {
        &self.created
    }
    pub fn set_created(&mut self, created: CreationInfo) {
        self.created = created;
    }
    /// Embedding dimension d.
    /// Bytes of the means and covariance factors (what [`MAX_BANK_BYTES`] bounds).
    pub fn bytes(&self) -> u64 {
        bank_bytes(self.options.kind, self.classes.len(), self.dim)
    }

    pub fn dim(&self) -> usize {
        self.dim
    }
    pub fn len(&self) -> usize {
        self.classes.len()
    }
    pub fn is_empty(&self) -> bool {
        self.classes.is_empty()
    }
    pub fn classes(&self) -> &[ClassGaussian] {
        &self.classes
    }
    pub fn class_names(&self) -> Vec<&str> {
        self.classes.iter().map(|c| c.name.as_str()).collect()
    }
    pub fn class_index(&self, name: &str) -> Option<usize> {
        self.classes.iter().position(|c| c.name == name)
    }

    /// Indices of the named classes, in the given order; every unknown name
    /// is listed in the error, and a repeated name is refused.
    pub fn class_indices(&self, names: &[&str]) -> Result<Vec<usize>, BankError> {
        let mut out = Vec::with_capacity(names.len());
        let mut unknown = Vec::new();
        for (i, name) in names.iter().enumerate() {
            match self.class_index(name) {
                Some(_) if names[..i].contains(name) => return Err(BankError::DuplicateClass(name.to_string())),
                Some(index) => out.push(index),
                None => unknown.push(name.to_string()),
            }
        }
        if !unknown.is_empty() {
            return Err(BankError::UnknownClasses {
                unknown,
                available: self.available_preview(),
            });
        }
        Ok(out)
    }

    fn available_preview(&self) -> String {
        const SHOWN: usize = 20;
        let names: Vec<&str> = self.classes.iter().take(SHOWN).map(|c| c.name.as_str()).collect();
        let more = self.classes.len().saturating_sub(SHOWN);
        let tail = if more > 0 {
            format!(", … {more} more")
        } else {
            String::new()
        };
        format!("{} classes: {}{tail}", self.classes.len(), names.join(", "))
    }

    /// Σ_c (including the ridge) as a dense d×d row-major matrix.
    pub fn covariance(&self, class: usize) -> Option<Vec<f64>> {
        Some(self.factor(self.classes.get(class)?)?.covariance(self.dim))
    }

    /// log|Σ_c|.
    pub fn log_det_covariance(&self, class: usize) -> Option<f64> {
        Some(self.factor(self.classes.get(class)?)?.log_det())
    }

    /// The class's own factor, or the shared one in a Shared bank. `insert`
    /// and the file reader always provide one of the two, so `None` would be
    /// a bug; callers turn it into an error rather than a panic.
    fn factor<'a>(&'a self, class: &'a ClassGaussian) -> Option<&'a Factor> {
        class.factor.as_ref().or(self.shared.as_ref().map(|s| &s.factor))
    }

    /// The index of a class, or `UnknownClasses` naming it.
    fn require(&self, name: &str) -> Result<usize, BankError> {
        self.class_index(name).ok_or_else(|| BankError::UnknownClasses {
            unknown: vec![name.to_string()],
            available: self.available_preview(),
        })
    }
}

fn add_diagonal(dim: usize, a: &mut [f64], eps: f64) {
    for i in 0..dim {
        a[i * dim + i] += eps;
    }
}

fn pd_error(class: &str, e: FactorError) -> BankError {
    match e {
        FactorError::NotPositiveDefinite { index, pivot } => BankError::NotPositiveDefinite {
            class: class.to_string(),
            index,
            pivot,
        },
        other => BankError::Format(format!("{class}: covariance factor {other:?}")),
    }
}

/// Mean, scatter and tr(S)/d of one class's embeddings.
fn class_stats(
    name: &str,
    samples: &Samples<'_>,
    dim: Option<usize>,
    kind: CovarianceKind,
) -> Result<ClassStats, BankError> {
    if name.is_empty() {
        return Err(BankError::EmptyName);
    }
    let (rows, n, d) = samples.to_f64(&format!("class {name:?}"), dim)?;
    let mean = gaussian::mean(&rows, n, d);
    let scatter = match kind {
        CovarianceKind::Diagonal { .. } => gaussian::scatter_diagonal(&rows, &mean, d),
        _ => gaussian::scatter_lower(&rows, &mean, d),
    };
    let trace = match kind {
        CovarianceKind::Diagonal { .. } => scatter.iter().sum(),
        _ => gaussian::trace(d, &scatter),
    };
    let sample_var = if n > 1 { trace / (n - 1) as f64 / d as f64 } else { 0.0 };
    if !sample_var.is_finite() {
        // Finite embeddings near f64::MAX can still overflow their squares.
        return Err(BankError::NonFinite(format!("class {name:?} covariance")));
    }
    Ok(ClassStats {
        name: name.to_string(),
        count: n,
        mean,
        scatter,
        sample_var,
    })
}
