//! Training targets for the anchor head (OpenPCDet's
//! `AxisAlignedTargetAssigner` semantics with the exact rotated BEV IoU):
//! per class, an anchor is positive when its BEV IoU with a ground truth of
//! that class is ≥ `matched`, background when its best IoU is < `unmatched`,
//! and ignored in between; each ground truth's best anchor is positive even
//! below `matched` (so small or odd objects always get an anchor). Positive
//! anchors get the residual box code and the direction bin of their ground
//! truth.

use super::anchors::AnchorGrid;
use super::box_coder::{encode, CoderError, DirectionBins, CODE_SIZE};
use super::iou::iou_bev;
use crate::geometry::Box3D;

/// IoU thresholds of one class (OpenPCDet KITTI: Car 0.6/0.45, Pedestrian and Cyclist 0.5/0.35).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MatchThresholds {
    pub matched: f64,
    pub unmatched: f64,
}

impl MatchThresholds {
    pub fn kitti() -> [MatchThresholds; 3] {
        [
            MatchThresholds { matched: 0.6, unmatched: 0.45 },
            MatchThresholds { matched: 0.5, unmatched: 0.35 },
            MatchThresholds { matched: 0.5, unmatched: 0.35 },
        ]
    }
}

/// What one anchor learns.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AnchorTarget {
    Background,
    /// Between the thresholds: no classification loss.
    Ignore,
    Positive { class: usize, gt: usize, code: [f64; CODE_SIZE], dir_bin: usize },
}

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("ground truth {index} has class {class}, but the anchor grid has {classes} classes")]
    Class { index: usize, class: usize, classes: usize },
    #[error("{0} thresholds for {1} anchor classes")]
    Thresholds(usize, usize),
    #[error(transparent)]
    Coder(#[from] CoderError),
}

/// Assigns every anchor of `grid` a target from the ground truths `gts` (box, class index).
pub fn assign(
    grid: &AnchorGrid,
    gts: &[(Box3D, usize)],
    thresholds: &[MatchThresholds],
    dir: &DirectionBins,
) -> Result<Vec<AnchorTarget>, TargetError> {
    let classes = grid.num_classes();
    if thresholds.len() != classes {
        return Err(TargetError::Thresholds(thresholds.len(), classes));
    }
    if let Some((index, &(_, class))) = gts.iter().enumerate().find(|(_, (_, c))| *c >= classes) {
        return Err(TargetError::Class { index, class, classes });
    }
    let anchors = grid.anchors();
    // best (IoU, gt) per anchor among ground truths of the anchor's class, and best anchor per ground truth
    let mut best_for_anchor = vec![(0.0f64, usize::MAX); anchors.len()];
    let mut best_for_gt = vec![(0.0f64, usize::MAX); gts.len()];
    for (a, anchor) in anchors.iter().enumerate() {
        let Some(class) = grid.class_of(a) else { continue };
        for (g, (gt, gt_class)) in gts.iter().enumerate() {
            if *gt_class != class {
                continue;
            }
            let iou = iou_bev(anchor, gt);
            if iou > best_for_anchor[a].0 {
                best_for_anchor[a] = (iou, g);
            }
            if iou > best_for_gt[g].0 {
                best_for_gt[g] = (iou, a);
            }
        }
    }
    let mut targets = Vec::with_capacity(anchors.len());
    for (a, anchor) in anchors.iter().enumerate() {
        let class = grid.class_of(a).unwrap_or(0);
        let (iou, g) = best_for_anchor[a];
        let t = &thresholds[class];
        targets.push(if g != usize::MAX && iou >= t.matched {
            positive(anchor, gts, g, dir)?
        } else if iou < t.unmatched {
            AnchorTarget::Background
        } else {
            AnchorTarget::Ignore
        });
    }
    for (g, &(iou, a)) in best_for_gt.iter().enumerate() {
        if a != usize::MAX && iou > 0.0 {
            targets[a] = positive(&anchors[a], gts, g, dir)?;
        }
    }
    Ok(targets)
}

fn positive(anchor: &Box3D, gts: &[(Box3D, usize)], g: usize, dir: &DirectionBins) -> Result<AnchorTarget, TargetError> {
    let (gt, class) = gts[g];
    Ok(AnchorTarget::Positive { class, gt: g, code: encode(anchor, &gt)?, dir_bin: dir.target_bin(gt.yaw) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::anchors::{AnchorClass, AnchorConfig};
    use crate::detect::box_coder::decode;

    fn grid() -> AnchorGrid {
        // 1 m cells over 16 x 8 m: anchors at cell centres, rotations 0 and pi/2
        AnchorGrid::new(&AnchorConfig::new([0.0, -4.0, -3.0, 16.0, 4.0, 1.0], (8, 16), AnchorClass::kitti())).unwrap()
    }

    #[test]
    fn positives_ignores_and_background_follow_the_thresholds() {
        let g = grid();
        let car = Box3D { center: [8.5, 0.5, -1.0], size: [3.9, 1.6, 1.56], yaw: 0.0 };
        let t = assign(&g, &[(car, 0)], &MatchThresholds::kitti(), &DirectionBins::kitti()).unwrap();
        let exact = g.index(4, 8, 0, 0).unwrap(); // the car anchor at (8.5, 0.5), yaw 0: IoU 1
        match t[exact] {
            AnchorTarget::Positive { class: 0, gt: 0, code, .. } => {
                assert!(code.iter().all(|c| c.abs() < 1e-9), "{code:?}");
                let back = decode(&g.anchors()[exact], &code).unwrap();
                assert!((back.center[0] - 8.5).abs() < 1e-9);
            }
            other => panic!("{other:?}"),
        }
        // one cell along the car's length: IoU (3.9-1)/(3.9+1) = 0.59 < 0.6 but ≥ 0.45 → ignored
        assert_eq!(t[g.index(4, 9, 0, 0).unwrap()], AnchorTarget::Ignore);
        // the perpendicular anchor at the same cell overlaps 1.6x1.6 of 2x3.9x1.6 - 1.6² → IoU 0.26 → background
        assert_eq!(t[g.index(4, 8, 0, 1).unwrap()], AnchorTarget::Background);
        // pedestrian and cyclist anchors never match a car
        assert!(t.iter().enumerate().all(|(i, x)| g.class_of(i) == Some(0) || !matches!(x, AnchorTarget::Positive { .. })));
        let positives = t.iter().filter(|x| matches!(x, AnchorTarget::Positive { .. })).count();
        assert_eq!(positives, 1);
    }

    #[test]
    fn every_ground_truth_gets_its_best_anchor_and_bad_input_is_an_error() {
        let g = grid();
        // a rotated car matches nothing above 0.6, but its best anchor becomes positive
        let odd = Box3D { center: [5.2, -2.3, -1.0], size: [3.9, 1.6, 1.56], yaw: 0.7 };
        let t = assign(&g, &[(odd, 0)], &MatchThresholds::kitti(), &DirectionBins::kitti()).unwrap();
        assert_eq!(t.iter().filter(|x| matches!(x, AnchorTarget::Positive { gt: 0, .. })).count(), 1);
        assert!(assign(&g, &[(odd, 5)], &MatchThresholds::kitti(), &DirectionBins::kitti()).is_err());
        assert!(assign(&g, &[], &MatchThresholds::kitti()[..2], &DirectionBins::kitti()).is_err());
        let none = assign(&g, &[], &MatchThresholds::kitti(), &DirectionBins::kitti()).unwrap();
        assert!(none.iter().all(|x| *x == AnchorTarget::Background));
    }
}
