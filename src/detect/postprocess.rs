//! Head outputs → detections: sigmoid class scores (best class per anchor),
//! score threshold before any decoding (most of the ~300k anchors are
//! background), residual decode against the anchors, heading restored from
//! the direction bin, then rotated NMS (class-wise, or over all classes
//! as OpenPCDet's `MULTI_CLASSES_NMS: False`).

use super::anchors::AnchorGrid;
use super::box_coder::{decode, CoderError, DirectionBins, CODE_SIZE};
use super::nms::{nms_bev, nms_bev_classwise, NmsConfig, NmsError};
use crate::geometry::Box3D;
use tch::{Kind, Tensor};

#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    pub bbox: Box3D,
    pub class: usize,
    pub score: f32,
}

#[derive(Debug, thiserror::Error)]
pub enum PostprocessError {
    #[error("head output has {rows} rows for {anchors} anchors (or wrong widths: cls {cls:?}, box {boxes:?}, dir {dir:?})")]
    Shape { rows: i64, anchors: usize, cls: Vec<i64>, boxes: Vec<i64>, dir: Vec<i64> },
    #[error(transparent)]
    Coder(#[from] CoderError),
    #[error(transparent)]
    Nms(#[from] NmsError),
}

/// Detections of one frame from its head outputs `cls` [N, classes],
/// `boxes` [N, 7], `dir` [N, bins] (batch element already selected);
/// `class_agnostic`: one NMS over all classes instead of one per class.
pub fn detections(
    cls: &Tensor,
    boxes: &Tensor,
    dir: &Tensor,
    grid: &AnchorGrid,
    bins: &DirectionBins,
    score_threshold: f32,
    nms: &NmsConfig,
    class_agnostic: bool,
) -> Result<Vec<Detection>, PostprocessError> {
    let n = grid.len() as i64;
    let (cs, bs, ds) = (cls.size(), boxes.size(), dir.size());
    if cs.len() != 2 || cs[0] != n || bs != [n, CODE_SIZE as i64] || ds.len() != 2 || ds[0] != n || ds[1] != bins.num_bins() as i64 {
        return Err(PostprocessError::Shape { rows: cs.first().copied().unwrap_or(0), anchors: grid.len(), cls: cs, boxes: bs, dir: ds });
    }
    let (score, class) = cls.to_kind(Kind::Float).sigmoid().max_dim(1, false);
    let keep = score.ge(score_threshold as f64).nonzero().squeeze_dim(1);
    let pick = |t: &Tensor| t.index_select(0, &keep).to_device(tch::Device::Cpu);
    let scores: Vec<f32> = Vec::try_from(pick(&score)).unwrap_or_default();
    let classes: Vec<i64> = Vec::try_from(pick(&class)).unwrap_or_default();
    let codes: Vec<f32> = Vec::try_from(pick(&boxes.to_kind(Kind::Float)).flatten(0, -1)).unwrap_or_default();
    let dir_bins: Vec<i64> = Vec::try_from(pick(&dir.argmax(1, false))).unwrap_or_default();
    let anchor_ids: Vec<i64> = Vec::try_from(keep.to_device(tch::Device::Cpu)).unwrap_or_default();

    let mut candidates = Vec::with_capacity(anchor_ids.len());
    for (k, &a) in anchor_ids.iter().enumerate() {
        let mut code = [0.0; CODE_SIZE];
        for (j, c) in code.iter_mut().enumerate() {
            *c = codes.get(k * CODE_SIZE + j).copied().unwrap_or(0.0) as f64;
        }
        let mut b = decode(&grid.anchors()[a as usize], &code)?;
        b.yaw = bins.restore_heading(b.yaw, dir_bins.get(k).copied().unwrap_or(0).max(0) as usize);
        candidates.push(Detection { bbox: b, class: classes.get(k).copied().unwrap_or(0).max(0) as usize, score: scores[k] });
    }
    let boxes: Vec<Box3D> = candidates.iter().map(|d| d.bbox).collect();
    let scores: Vec<f32> = candidates.iter().map(|d| d.score).collect();
    let classes: Vec<usize> = candidates.iter().map(|d| d.class).collect();
    let kept = if class_agnostic { nms_bev(&boxes, &scores, nms)? } else { nms_bev_classwise(&boxes, &scores, &classes, nms)? };
    Ok(kept.into_iter().map(|i| candidates[i].clone()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::anchors::{AnchorClass, AnchorConfig};
    use tch::Device;

    #[test]
    fn threshold_decode_direction_and_nms() {
        let grid = AnchorGrid::new(&AnchorConfig::new([0.0, -4.0, -3.0, 16.0, 4.0, 1.0], (8, 16), AnchorClass::kitti())).unwrap();
        let n = grid.len() as i64;
        let cls = Tensor::full([n, 3], -10.0, (Kind::Float, Device::Cpu));
        let boxes = Tensor::zeros([n, 7], (Kind::Float, Device::Cpu));
        let dir = Tensor::zeros([n, 2], (Kind::Float, Device::Cpu));
        let a = grid.index(4, 8, 0, 0).unwrap() as i64; // car anchor at (8.5, 0.5)
        let b = grid.index(4, 9, 0, 0).unwrap() as i64; // its neighbour, IoU 0.59 with it
        let p = grid.index(1, 2, 1, 0).unwrap() as i64; // a pedestrian anchor
        let _ = cls.get(a).get(0).fill_(3.0);
        let _ = cls.get(b).get(0).fill_(1.0);
        let _ = cls.get(p).get(1).fill_(2.0);
        // with OpenPCDet's dir_offset pi/4, headings in (-3pi/4, pi/4] are bin 1: yaw 0 lies in bin 1,
        // so the pedestrian (bin 1) keeps yaw 0 and the car, left in bin 0, turns around to pi
        let _ = dir.get(p).get(1).fill_(5.0);
        let _ = boxes.get(a).get(0).fill_(0.1); // dx = 0.1 * diagonal(3.9, 1.6)
        let nms = NmsConfig::new(0.0, 0.5, None, None).unwrap();
        let dets = detections(&cls, &boxes, &dir, &grid, &DirectionBins::kitti(), 0.5, &nms, false).unwrap();
        assert_eq!(dets.len(), 2, "{dets:?}"); // the weaker neighbour is suppressed
        assert_eq!(dets[0].class, 0);
        assert!((dets[0].score - 1.0 / (1.0 + (-3.0f32).exp())).abs() < 1e-6);
        let diag = (3.9f64.powi(2) + 1.6f64.powi(2)).sqrt();
        assert!((dets[0].bbox.center[0] - (8.5 + 0.1 * diag)).abs() < 1e-5);
        assert!((dets[0].bbox.yaw.abs() - std::f64::consts::PI).abs() < 1e-6, "{}", dets[0].bbox.yaw);
        assert_eq!(dets[1].class, 1);
        assert!(dets[1].bbox.yaw.abs() < 1e-6, "{}", dets[1].bbox.yaw);
        assert_eq!(DirectionBins::kitti().target_bin(0.0), 1);
        // nothing above the threshold → nothing; wrong shapes → error
        assert!(detections(&cls, &boxes, &dir, &grid, &DirectionBins::kitti(), 0.99, &nms, false).unwrap().is_empty());
        assert!(detections(&cls.narrow(0, 0, 5), &boxes, &dir, &grid, &DirectionBins::kitti(), 0.5, &nms, false).is_err());
    }
}
