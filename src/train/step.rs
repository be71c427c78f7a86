//! One optimisation step on a batch of B frames: the detection losses
//! (per frame, averaged as OpenPCDet) + λ · Entropy Loss of the compression
//! network's batched layer outputs (same forward pass), AdamW; under
//! autocast with a scaled loss when mixed precision is on (CUDA only, see
//! [`super::mixed_precision`]).

use super::adamw::AdamW;
use super::batch::TrainBatch;
use super::losses::{batch_detection_loss, LossError, LossWeights};
use super::mixed_precision::LossScaler;
use crate::detect::detector::{BatchNormMode, Detector, DetectorError};
use crate::detect::model::head::HeadOutput;
use crate::eloss::entropy::Estimator;
use crate::eloss::grouping::Grouping;
use crate::eloss::loss::entropy_loss;
use tch::Kind;

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Detector(#[from] DetectorError),
    #[error(transparent)]
    Loss(#[from] LossError),
}

#[derive(Debug, Clone, Copy)]
pub struct StepReport {
    pub total: f64,
    pub detection: f64,
    pub eloss: f64,
    /// Positive anchors over the whole batch.
    pub positives: usize,
    /// Gradient norm before clipping (of the unscaled gradients).
    pub grad_norm: f64,
    /// False when mixed precision met a non-finite gradient and skipped the update.
    pub stepped: bool,
}

pub struct StepConfig {
    pub weights: LossWeights,
    /// λ of the Entropy Loss term (0 = plain detection training).
    pub eloss_weight: f64,
    pub estimator: Estimator,
    /// Which ΔH transitions form one variance term.
    pub grouping: Grouping,
    /// Gradient-norm clip (the reference repo uses 35).
    pub clip_norm: f64,
    /// Entropy-decrease term weight inside the Entropy Loss (0 = the paper's code).
    pub decrease_weight: f64,
    /// Batch-norm in the training pass: `Train` (the paper's code) or `Frozen`
    /// (running statistics, so the Entropy Loss is the monitor's quantity).
    pub batchnorm: BatchNormMode,
}

pub fn train_step(
    det: &Detector,
    opt: &mut AdamW,
    (lr, beta1): (f64, f64),
    batch: &TrainBatch,
    cfg: &StepConfig,
    scaler: &mut LossScaler,
) -> Result<StepReport, StepError> {
    let mixed = scaler.enabled();
    let (head, layers) = tch::autocast(mixed, || det.forward_train_batch(&batch.pillars, cfg.batchnorm))?;
    // losses in fp32 (a no-op without autocast); the entropy estimators cast their inputs themselves
    let head = HeadOutput { cls: head.cls.to_kind(Kind::Float), boxes: head.boxes.to_kind(Kind::Float), dir: head.dir.to_kind(Kind::Float) };
    let d = batch_detection_loss(&head, &batch.targets, &cfg.weights)?;
    let e = entropy_loss(&layers.blocks, cfg.estimator, cfg.grouping, cfg.decrease_weight);
    let total = if cfg.eloss_weight > 0.0 { &d.total + &e.loss * cfg.eloss_weight } else { d.total.shallow_clone() };
    opt.zero_grad();
    if mixed {
        (&total * scaler.scale()).backward();
        opt.scale_grads(1.0 / scaler.scale());
    } else {
        total.backward();
    }
    let grad_norm = opt.clip_grad_norm(cfg.clip_norm);
    let stepped = scaler.update(grad_norm.is_finite());
    if stepped {
        opt.step(lr, beta1);
    }
    Ok(StepReport {
        total: total.double_value(&[]),
        detection: d.total.double_value(&[]),
        eloss: e.loss.double_value(&[]),
        positives: d.positives,
        grad_norm,
        stepped,
    })
}

#[cfg(test)]
#[path = "step_tests.rs"]
mod tests;
