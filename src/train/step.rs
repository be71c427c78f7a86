//! One optimisation step on one frame: detection loss + λ · Entropy Loss of
//! the compression network's layer outputs (same forward pass), AdamW.

use super::losses::{detection_loss, LossWeights};
use crate::cloud::Points;
use crate::detect::box_coder::DirectionBins;
use crate::detect::detector::{BatchNormMode, Detector, DetectorError};
use crate::detect::targets::{assign, MatchThresholds, TargetError};
use crate::eloss::entropy::Estimator;
use crate::eloss::loss::entropy_loss;
use crate::geometry::Box3D;
use super::adamw::AdamW;

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Detector(#[from] DetectorError),
    #[error(transparent)]
    Targets(#[from] TargetError),
}

#[derive(Debug, Clone, Copy)]
pub struct StepReport {
    pub total: f64,
    pub detection: f64,
    pub eloss: f64,
    pub positives: usize,
}

pub struct StepConfig {
    pub weights: LossWeights,
    pub thresholds: Vec<MatchThresholds>,
    /// λ of the Entropy Loss term (0 = plain detection training).
    pub eloss_weight: f64,
    pub estimator: Estimator,
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
    points: &Points,
    gts: &[(Box3D, usize)],
    cfg: &StepConfig,
) -> Result<StepReport, StepError> {
    let (head, layers) = det.forward_train(points, cfg.batchnorm)?;
    let targets = assign(det.anchors(), gts, &cfg.thresholds, &DirectionBins::kitti())?;
    let d = detection_loss(&head.cls.get(0), &head.boxes.get(0), &head.dir.get(0), &targets, &cfg.weights);
    let e = entropy_loss(&layers.blocks, cfg.estimator, cfg.decrease_weight);
    let total = if cfg.eloss_weight > 0.0 { &d.total + &e.loss * cfg.eloss_weight } else { d.total.shallow_clone() };
    opt.zero_grad();
    total.backward();
    opt.clip_grad_norm(cfg.clip_norm);
    opt.step(lr, beta1);
    Ok(StepReport {
        total: total.double_value(&[]),
        detection: d.total.double_value(&[]),
        eloss: e.loss.double_value(&[]),
        positives: d.positives,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::sim::{Lidar, LidarConfig, SceneConfig, SimClass};
    use crate::detect::detector::DetectorConfig;
    use crate::detect::iou::iou_bev;
    use crate::detect::model::backbone::BackboneConfig;
    use crate::detect::model::neck::NeckConfig;
    use crate::detect::pillars::PillarConfig;
    use tch::Device;

    /// A tiny detector overfits one simulated frame: the loss falls and a car
    /// comes out where the ground truth is.
    #[test]
    fn tiny_model_overfits_a_simulated_frame() {
        tch::manual_seed(0);
        let scene = SceneConfig::default().generate(3).unwrap();
        let snap = scene.snapshot(0.0);
        let scan = Lidar::new(LidarConfig::hdl64e()).unwrap().scan(&scene, &snap, 3);
        let range = [0.0, -20.48, -3.0, 40.96, 20.48, 1.0];
        let gts: Vec<(Box3D, usize)> = snap
            .labels_in(&scan.sensor)
            .into_iter()
            .filter(|(_, c, b)| *c == SimClass::Car && b.center[0] > 2.0 && b.center[0] < 38.0 && b.center[1].abs() < 18.0)
            .map(|(_, _, b)| (b, 0))
            .collect();
        assert!(!gts.is_empty(), "the scene has cars in range");
        let cfg = DetectorConfig {
            pillars: PillarConfig { range, pillar_size: [0.32, 0.32], max_points_per_pillar: 16, max_pillars: 8000 },
            encoder_channels: 16,
            backbone: BackboneConfig { in_channels: 16, layer_nums: vec![2, 2], layer_strides: vec![2, 2], num_filters: vec![16, 32] },
            neck: NeckConfig { in_channels: vec![16, 32], upsample_strides: vec![1, 2], upsample_filters: vec![32, 32] },
            score_threshold: 0.3,
            ..DetectorConfig::compact()
        };
        let det = Detector::new(cfg, Device::Cpu).unwrap();
        let mut opt = AdamW::new(&det.vs, Default::default());
        let step = StepConfig {
            weights: LossWeights::default(),
            thresholds: MatchThresholds::kitti().to_vec(),
            eloss_weight: 0.1,
            estimator: Estimator::Gaussian { ridge_rel: 1e-3 },
            clip_norm: 35.0,
            decrease_weight: 0.0,
            batchnorm: BatchNormMode::Train,
        };
        let reports: Vec<StepReport> = (0..60).map(|_| train_step(&det, &mut opt, (3e-3, 0.9), &scan.points, &gts, &step).unwrap()).collect();
        let (first, last) = (reports[0].detection, reports[reports.len() - 1].detection);
        eprintln!("detection loss {first:.3} -> {last:.3}, eloss {:.4} -> {:.4}, {} positives", reports[0].eloss, reports[59].eloss, reports[0].positives);
        assert!(reports[0].positives >= gts.len());
        assert!(last < 0.3 * first, "loss {first} -> {last}");
        assert!(reports[0].eloss > 0.0, "three layers per block give a Var(ΔH) term");
        // decoded with batch statistics: BN running averages (momentum 0.01, as OpenPCDet)
        // need far more than 60 steps to settle for inference
        let (head, _) = tch::no_grad(|| det.forward_train(&scan.points, BatchNormMode::Train)).unwrap();
        let nms = crate::detect::nms::NmsConfig::new(0.3, 0.01, None, Some(50)).unwrap();
        let dets = crate::detect::postprocess::detections(
            &head.cls.get(0),
            &head.boxes.get(0),
            &head.dir.get(0),
            det.anchors(),
            &DirectionBins::kitti(),
            0.3,
            &nms,
        )
        .unwrap();
        let found = gts.iter().filter(|(g, _)| dets.iter().any(|d| d.class == 0 && iou_bev(&d.bbox, g) > 0.5)).count();
        assert!(found * 2 >= gts.len(), "found {found} of {} cars", gts.len());
    }
}
