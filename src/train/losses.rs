//! Detection losses of the anchor head, as OpenPCDet's PointPillars:
//! - classification: sigmoid focal loss (α = 0.25, γ = 2) over all
//!   non-ignored anchors, one-hot targets (background = all zeros);
//! - box regression: smooth-L1 (β = 1/9) on the 7 residuals of positive
//!   anchors, the angle compared as sin(p − t) = sin p cos t − cos p sin t
//!   (so headings π apart cost nothing; the direction bins settle that);
//! - direction: cross-entropy over the direction bins of positive anchors.
//! All three are normalised by the number of positive anchors (at least 1)
//! and weighted 1.0 / 2.0 / 0.2; a batch's loss is the mean over its frames
//! of each frame's loss (each normalised by its own positives, as OpenPCDet's
//! `pos_normalizer` then `/ batch_size`).

use crate::detect::model::head::HeadOutput;
use crate::detect::targets::AnchorTarget;
use tch::{Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossWeights {
    pub cls: f64,
    pub box_reg: f64,
    pub dir: f64,
}

impl Default for LossWeights {
    fn default() -> Self {
        Self { cls: 1.0, box_reg: 2.0, dir: 0.2 }
    }
}

#[derive(Debug)]
pub struct DetectionLoss {
    pub total: Tensor,
    pub cls: Tensor,
    pub box_reg: Tensor,
    pub dir: Tensor,
    pub positives: usize,
}

/// Element-wise sigmoid focal loss of `logits` against 0/1 `targets`.
pub fn sigmoid_focal(logits: &Tensor, targets: &Tensor, alpha: f64, gamma: f64) -> Tensor {
    let p = logits.sigmoid();
    let ce = logits.binary_cross_entropy_with_logits::<Tensor>(targets, None, None, tch::Reduction::None);
    let p_t: Tensor = &p * targets + (1.0 - &p) * (1.0 - targets);
    let alpha_t: Tensor = targets * alpha + (1.0 - targets) * (1.0 - alpha);
    let modulating = (p_t.ones_like() - &p_t).pow_tensor_scalar(gamma);
    alpha_t * modulating * ce
}

/// Smooth-L1 with transition `beta`.
pub fn smooth_l1(diff: &Tensor, beta: f64) -> Tensor {
    let a = diff.abs();
    // tch's where_self: self where the condition holds, else other
    (a.square() * (0.5 / beta)).where_self(&a.lt(beta), &(&a - 0.5 * beta))
}

/// One frame's targets as the dense arrays the loss reads: built once per
/// frame from the anchor targets (in the data loader, off the training
/// thread).
#[derive(Debug, Clone, PartialEq)]
pub struct DenseTargets {
    pub anchors: usize,
    pub classes: usize,
    /// [anchors · classes] one-hot class targets (background: all zeros).
    pub cls_target: Vec<f32>,
    /// [anchors] 1, or 0 for ignored anchors.
    pub cls_weight: Vec<f32>,
    /// Indices of the positive anchors, their [7] box codes and direction bins.
    pub pos_idx: Vec<i64>,
    pub pos_codes: Vec<f32>,
    pub pos_dirs: Vec<i64>,
}

impl DenseTargets {
    /// `targets` of the first `anchors` anchors (missing ones are background).
    pub fn new(targets: &[AnchorTarget], anchors: usize, classes: usize) -> Self {
        let mut d = Self {
            anchors,
            classes,
            cls_target: vec![0f32; anchors * classes],
            cls_weight: vec![1f32; anchors],
            pos_idx: Vec::new(),
            pos_codes: Vec::new(),
            pos_dirs: Vec::new(),
        };
        for (i, t) in targets.iter().enumerate().take(anchors) {
            match t {
                AnchorTarget::Background => {}
                AnchorTarget::Ignore => d.cls_weight[i] = 0.0,
                AnchorTarget::Positive { class, code, dir_bin, .. } => {
                    if *class < classes {
                        d.cls_target[i * classes + class] = 1.0;
                    }
                    d.pos_idx.push(i as i64);
                    d.pos_codes.extend(code.iter().map(|&v| v as f32));
                    d.pos_dirs.push(*dir_bin as i64);
                }
            }
        }
        d
    }

    pub fn positives(&self) -> usize {
        self.pos_idx.len()
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LossError {
    #[error("targets for {targets_anchors} anchors x {targets_classes} classes, the head predicts {anchors} x {classes}")]
    Shape { targets_anchors: usize, targets_classes: usize, anchors: usize, classes: usize },
    #[error("{targets} target sets for a batch of {batch} frames")]
    Batch { targets: usize, batch: usize },
}

/// Losses of one frame's head outputs (`cls` [N, C], `boxes` [N, 7], `dir`
/// [N, bins]) against the anchor targets.
pub fn detection_loss(cls: &Tensor, boxes: &Tensor, dir: &Tensor, targets: &[AnchorTarget], w: &LossWeights) -> DetectionLoss {
    let (n, c) = cls.size2().unwrap_or((0, 0));
    let dense = DenseTargets::new(targets, n as usize, c as usize);
    dense_detection_loss(cls, boxes, dir, &dense, w).expect("targets built for the head's shape")
}

/// [`detection_loss`] from dense targets, which must match the head's shape.
pub fn dense_detection_loss(cls: &Tensor, boxes: &Tensor, dir: &Tensor, d: &DenseTargets, w: &LossWeights) -> Result<DetectionLoss, LossError> {
    let device = cls.device();
    let (n, c) = cls.size2().unwrap_or((0, 0));
    if (d.anchors, d.classes) != (n as usize, c as usize) || d.cls_weight.len() != d.anchors {
        return Err(LossError::Shape { targets_anchors: d.anchors, targets_classes: d.classes, anchors: n as usize, classes: c as usize });
    }
    let positives = d.positives();
    let norm = positives.max(1) as f64;
    let t = Tensor::from_slice(&d.cls_target).view([n, c]).to_device(device);
    let wt = Tensor::from_slice(&d.cls_weight).view([n, 1]).to_device(device);
    let cls_loss = (sigmoid_focal(cls, &t, 0.25, 2.0) * wt).sum(Kind::Float) / norm;
    let (box_loss, dir_loss) = if positives == 0 {
        (Tensor::zeros([], (Kind::Float, device)), Tensor::zeros([], (Kind::Float, device)))
    } else {
        let idx = Tensor::from_slice(&d.pos_idx).to_device(device);
        let pred = boxes.index_select(0, &idx);
        let target = Tensor::from_slice(&d.pos_codes).view([positives as i64, 7]).to_device(device);
        let (p_ang, t_ang) = (pred.narrow(1, 6, 1), target.narrow(1, 6, 1));
        let pred = Tensor::cat(&[pred.narrow(1, 0, 6), p_ang.sin() * t_ang.cos()], 1);
        let target = Tensor::cat(&[target.narrow(1, 0, 6), p_ang.cos() * t_ang.sin()], 1);
        let box_loss = smooth_l1(&(pred - target), 1.0 / 9.0).sum(Kind::Float) / norm;
        let dirs = Tensor::from_slice(&d.pos_dirs).to_device(device);
        let dir_loss = dir.index_select(0, &idx).cross_entropy_for_logits(&dirs) * (positives as f64 / norm);
        (box_loss, dir_loss)
    };
    let total = &cls_loss * w.cls + &box_loss * w.box_reg + &dir_loss * w.dir;
    Ok(DetectionLoss { total, cls: cls_loss, box_reg: box_loss, dir: dir_loss, positives })
}

/// Losses of a batch (`head` outputs [B, N, ...], one target set per frame),
/// normalised as OpenPCDet's anchor head: each frame's losses divided by its
/// own number of positives (at least 1), then summed over the frames and
/// divided by B, i.e. the mean of the per-frame losses. For B = 1 exactly the
/// frame's [`dense_detection_loss`]; `positives` counts the whole batch.
pub fn batch_detection_loss(head: &HeadOutput, targets: &[DenseTargets], w: &LossWeights) -> Result<DetectionLoss, LossError> {
    let batch = head.cls.size().first().copied().unwrap_or(0) as usize;
    if targets.len() != batch || batch == 0 {
        return Err(LossError::Batch { targets: targets.len(), batch });
    }
    let frames = targets
        .iter()
        .enumerate()
        .map(|(b, t)| dense_detection_loss(&head.cls.get(b as i64), &head.boxes.get(b as i64), &head.dir.get(b as i64), t, w))
        .collect::<Result<Vec<_>, _>>()?;
    let mean = |pick: fn(&DetectionLoss) -> &Tensor| Tensor::stack(&frames.iter().map(pick).collect::<Vec<_>>(), 0).sum(Kind::Float) / batch as f64;
    Ok(DetectionLoss {
        total: mean(|l| &l.total),
        cls: mean(|l| &l.cls),
        box_reg: mean(|l| &l.box_reg),
        dir: mean(|l| &l.dir),
        positives: frames.iter().map(|l| l.positives).sum(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn v(t: &Tensor) -> f64 {
        t.double_value(&[])
    }

    #[test]
    fn focal_and_smooth_l1_closed_forms() {
        let logits = Tensor::from_slice(&[0.0f32, 2.0]);
        let targets = Tensor::from_slice(&[1.0f32, 0.0]);
        let f = sigmoid_focal(&logits, &targets, 0.25, 2.0);
        // p = 0.5, target 1: 0.25 · 0.5² · ln 2
        assert!((f.double_value(&[0]) - 0.25 * 0.25 * 2f64.ln()).abs() < 1e-6);
        // p = σ(2), target 0: 0.75 · p² · ln(1 + e²)
        let p = 1.0 / (1.0 + (-2f64).exp());
        assert!((f.double_value(&[1]) - 0.75 * p * p * (1.0 + 2f64.exp()).ln()).abs() < 1e-6);
        let s = smooth_l1(&Tensor::from_slice(&[0.05f32, -1.0]), 1.0 / 9.0);
        assert!((s.double_value(&[0]) - 0.5 * 0.05 * 0.05 * 9.0).abs() < 1e-6);
        assert!((s.double_value(&[1]) - (1.0 - 0.5 / 9.0)).abs() < 1e-6);
    }

    #[test]
    fn only_positives_regress_and_ignored_anchors_cost_nothing() {
        let cls = Tensor::zeros([3, 2], (Kind::Float, Device::Cpu));
        let boxes = Tensor::zeros([3, 7], (Kind::Float, Device::Cpu));
        let dir = Tensor::zeros([3, 2], (Kind::Float, Device::Cpu));
        let code = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, std::f64::consts::PI]; // heading off by pi: no box cost
        let targets =
            [AnchorTarget::Positive { class: 1, gt: 0, code, dir_bin: 1 }, AnchorTarget::Ignore, AnchorTarget::Background];
        let l = detection_loss(&cls, &boxes, &dir, &targets, &LossWeights::default());
        assert_eq!(l.positives, 1);
        assert!(v(&l.box_reg).abs() < 1e-6, "{}", v(&l.box_reg));
        assert!((v(&l.dir) - 2f64.ln()).abs() < 1e-6);
        // anchor 0: one positive and one negative logit at p = 0.5; anchor 2: two negatives; anchor 1 ignored
        let pos = 0.25 * 0.25 * 2f64.ln();
        let neg = 0.75 * 0.25 * 2f64.ln();
        assert!((v(&l.cls) - (pos + 3.0 * neg)).abs() < 1e-6, "{}", v(&l.cls));
        assert!((v(&l.total) - (v(&l.cls) + 2.0 * v(&l.box_reg) + 0.2 * v(&l.dir))).abs() < 1e-6);
    }

    /// OpenPCDet's normalisation: each frame by its own positives, then the
    /// mean over frames (a frame with many positives does not drown one with few).
    #[test]
    fn a_batch_loss_is_the_mean_of_its_frames_losses() {
        tch::manual_seed(4);
        let head = HeadOutput {
            cls: Tensor::randn([2, 3, 2], (Kind::Float, Device::Cpu)),
            boxes: Tensor::randn([2, 3, 7], (Kind::Float, Device::Cpu)) * 0.1,
            dir: Tensor::randn([2, 3, 2], (Kind::Float, Device::Cpu)),
        };
        let pos = |class| AnchorTarget::Positive { class, gt: 0, code: [0.1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.2], dir_bin: 0 };
        let a = DenseTargets::new(&[pos(0), pos(1), AnchorTarget::Background], 3, 2);
        let b = DenseTargets::new(&[AnchorTarget::Ignore, AnchorTarget::Background, AnchorTarget::Background], 3, 2);
        let w = LossWeights::default();
        let frame = |i: i64, t: &DenseTargets| v(&dense_detection_loss(&head.cls.get(i), &head.boxes.get(i), &head.dir.get(i), t, &w).unwrap().total);
        let batch = batch_detection_loss(&head, &[a.clone(), b.clone()], &w).unwrap();
        assert!((v(&batch.total) - (frame(0, &a) + frame(1, &b)) / 2.0).abs() < 1e-6);
        assert_eq!(batch.positives, 2);
        assert!(matches!(batch_detection_loss(&head, &[a.clone()], &w), Err(LossError::Batch { targets: 1, batch: 2 })));
        let wrong = DenseTargets::new(&[], 4, 2);
        assert!(matches!(batch_detection_loss(&head, &[a, wrong], &w), Err(LossError::Shape { .. })));
    }
}
