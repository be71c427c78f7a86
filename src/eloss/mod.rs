//! Entropy Loss (arXiv 2409.00839) and the Eloss anomaly metric
//! (arXiv 2302.00986): layer-wise entropy of the feature-compression network.
//!
//! - [`entropy`]: per-layer entropy estimators (the reference repo's kNN one
//!   and a Gaussian one), differentiable tch ops;
//! - [`loss`]: ΔH between consecutive layers of a block, and the loss = Σ
//!   over blocks of Var(ΔH). Formulas: docs/entropy_loss.md.

pub mod entropy;
pub mod loss;
