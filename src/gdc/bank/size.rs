//! The bank's caps: how many classes it may hold and how many bytes its
//! means and covariance factors may take (docs/reliability.md). Checked
//! before anything is built: fitting, adding a class, loading a file.

use super::{BankError, CovarianceKind};

/// Most classes a bank holds (fitted, loaded or added at run time).
pub const MAX_CLASSES: usize = 1024;
/// Most bytes of a bank's means and covariance factors (a full-covariance
/// class of a 768-d DINOv2-B embedding is 4.7 MB, of a 1280-d EfficientNet
/// one 13 MB: about 80 such classes).
pub const MAX_BANK_BYTES: u64 = 1 << 30;

/// Bytes of a bank of `classes` classes of dimension `dim` (f64 means and
/// factors; Shared: one pooled factor and scatter).
pub fn bank_bytes(kind: CovarianceKind, classes: usize, dim: usize) -> u64 {
    let (c, d) = (classes as u64, dim as u64);
    let floats = match kind {
        CovarianceKind::Full { .. } => c.saturating_mul(d.saturating_add(d.saturating_mul(d))),
        CovarianceKind::Diagonal { .. } => c.saturating_mul(2 * d),
        CovarianceKind::Shared { .. } => c.saturating_mul(d).saturating_add(2u64.saturating_mul(d.saturating_mul(d))),
    };
    floats.saturating_mul(8)
}

/// Refuses a bank beyond [`MAX_CLASSES`] or [`MAX_BANK_BYTES`], before it is built.
pub(crate) fn check_size(kind: CovarianceKind, classes: usize, dim: usize) -> Result<(), BankError> {
    if classes > MAX_CLASSES {
        return Err(BankError::TooManyClasses { classes });
    }
    let bytes = bank_bytes(kind, classes, dim);
    if bytes > MAX_BANK_BYTES {
        return Err(BankError::OverBudget { bytes, classes, dim });
    }
    Ok(())
}
