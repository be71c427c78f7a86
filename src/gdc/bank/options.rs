//! What a bank is fitted with and records about itself: the covariance
//! model, the fitting options, the embedding it lives in and who made it.

use super::{BankError, DEFAULT_RIDGE_REL};
use serde::{Deserialize, Serialize};

/// The covariance model of every class in a bank.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CovarianceKind {
    /// Per-class full covariance (QDA, the paper's): S_c + ridge_rel·tr(S_c)/d · I.
    Full { ridge_rel: f64 },
    /// Per-class diagonal covariance: diag(S_c) + ridge_rel·mean(diag S_c) · I.
    Diagonal { ridge_rel: f64 },
    /// One pooled within-class covariance (LDA): S_w + ridge_rel·tr(S_w)/d · I.
    Shared { ridge_rel: f64 },
}

impl Default for CovarianceKind {
    fn default() -> Self {
        CovarianceKind::Full {
            ridge_rel: DEFAULT_RIDGE_REL,
        }
    }
}

impl CovarianceKind {
    pub fn ridge_rel(&self) -> f64 {
        match *self {
            CovarianceKind::Full { ridge_rel }
            | CovarianceKind::Diagonal { ridge_rel }
            | CovarianceKind::Shared { ridge_rel } => ridge_rel,
        }
    }

    /// The name used in the file's metadata.
    pub fn name(&self) -> &'static str {
        match self {
            CovarianceKind::Full { .. } => "full",
            CovarianceKind::Diagonal { .. } => "diagonal",
            CovarianceKind::Shared { .. } => "shared",
        }
    }

    pub(super) fn from_name(name: &str, ridge_rel: f64) -> Option<CovarianceKind> {
        match name {
            "full" => Some(CovarianceKind::Full { ridge_rel }),
            "diagonal" => Some(CovarianceKind::Diagonal { ridge_rel }),
            "shared" => Some(CovarianceKind::Shared { ridge_rel }),
            _ => None,
        }
    }
}

/// Fitting options: the covariance model and the one-shot variance override.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FitOptions {
    pub kind: CovarianceKind,
    /// v in Σ = v I for classes with one sample (or zero spread). `None`:
    /// estimate it from the other classes (see the module docs).
    pub one_shot_variance: Option<f64>,
}

impl From<CovarianceKind> for FitOptions {
    fn from(kind: CovarianceKind) -> Self {
        FitOptions {
            kind,
            one_shot_variance: None,
        }
    }
}

impl FitOptions {
    pub(super) fn validate(&self) -> Result<(), BankError> {
        let r = self.kind.ridge_rel();
        if !(r.is_finite() && r >= 0.0) {
            return Err(BankError::InvalidParameter {
                name: "ridge_rel",
                reason: format!("must be finite and >= 0, got {r}"),
            });
        }
        if let Some(v) = self.one_shot_variance {
            if !(v.is_finite() && v > 0.0) {
                return Err(BankError::InvalidParameter {
                    name: "one_shot_variance",
                    reason: format!("must be finite and > 0, got {v}"),
                });
            }
        }
        Ok(())
    }
}

/// Which embedding the bank's Gaussians live in; a bank only makes sense for
/// queries embedded the same way, so the file records it and
/// [`GaussianBank::load_expecting`] enforces it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmbeddingSpec {
    /// Backbone id, e.g. "dinov2-vits14", "efficientnet-lite0".
    pub backbone: String,
    /// How the embedding is read from the backbone, e.g. "cls", "cls+meanpatch".
    pub recipe: String,
}

impl EmbeddingSpec {
    pub fn new(backbone: impl Into<String>, recipe: impl Into<String>) -> Self {
        EmbeddingSpec {
            backbone: backbone.into(),
            recipe: recipe.into(),
        }
    }
}

/// Who made the bank and when; carried through save/load unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreationInfo {
    /// Seconds since the Unix epoch when the bank was fitted.
    pub unix_time_s: u64,
    /// The software that fitted it, e.g. "eloss_perception 0.1.0".
    pub software: String,
    /// Free text (e.g. the generator and prompt set).
    pub note: String,
}

impl CreationInfo {
    pub(super) fn now() -> Self {
        let unix_time_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0); // a clock before 1970 is not worth failing a fit for
        CreationInfo {
            unix_time_s,
            software: format!("eloss_perception {}", env!("CARGO_PKG_VERSION")),
            note: String::new(),
        }
    }
}
