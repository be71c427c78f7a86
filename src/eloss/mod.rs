//! Entropy Loss (arXiv 2409.00839) and the Eloss anomaly metric
//! (arXiv 2302.00986): layer-wise entropy of the feature-compression network.
//!
//! - [`entropy`]: per-layer entropy estimators (the reference repo's kNN one
//!   and a Gaussian one), differentiable tch ops;
//! - [`grouping`]: which transitions form one variance term (per block, or
//!   the reference repository's two index halves);
//! - [`loss`]: ΔH between consecutive layers of a group, and the loss = Σ
//!   over groups of Var(ΔH). Formulas: docs/entropy_loss.md.
//!
//! The run-time anomaly monitor (docs/eloss_monitor.md), ROS-free:
//! - [`profile`]: one frame's entropies, ΔH and Eloss from the detector's layer outputs;
//! - [`calibration`]: normal statistics, threshold and type signatures, saved beside the model;
//! - [`score`]: deviation factor, Mahalanobis distance, the combined score, type guess;
//! - [`hysteresis`]: k-of-n alarm entry, consecutive-clear exit;
//! - [`on_alarm`]: what happens to an alarmed frame's detections (publish, temper, suppress);
//! - [`monitor`]: profile → score → hysteresis, one [`monitor::MonitorReport`] per frame;
//! - [`dataset_run`], [`evaluation`], [`dose_response`]: the `eloss calibrate` / `eloss eloss-eval` / `eloss dose-response` pipelines;
//! - [`numeric`]: small f64 helpers (Cholesky, quantiles, AUROC).

pub mod calibration;
pub mod cells;
pub mod dose_response;
pub mod dataset_run;
#[cfg(test)]
mod end_to_end;
pub mod entropy;
pub mod evaluation;
pub mod grouping;
pub mod hysteresis;
pub mod loss;
pub mod monitor;
pub use crate::numeric;
pub mod on_alarm;
pub mod profile;
pub mod score;
