//! Rotated bird's-eye-view non-maximum suppression.
//!
//! Greedy NMS as in OpenPCDet's `class_agnostic_nms` / `multi_classes_nms`
//! (`pcdet/models/model_utils/model_nms_utils.py`), with the rotated BEV IoU
//! of [`super::iou::iou_bev`]:
//!
//! 1. score threshold: keep candidates with `score >= score_threshold`
//!    (non-finite scores are dropped);
//! 2. order by score, descending; equal scores keep the lower input index
//!    first, so the result is deterministic;
//! 3. top-k before: keep the first `pre_max_size` of that order;
//! 4. greedy: walk the order, keep a box unless an already-kept box has
//!    `IoU_bev > iou_threshold` with it;
//! 5. top-k after: keep the first `post_max_size` kept boxes.
//!
//! [`nms_bev`] is class-agnostic. [`nms_bev_classwise`] runs steps 1–5 for
//! each class id separately (so `pre_max_size` and `post_max_size` apply per
//! class, as OpenPCDet's `multi_classes_nms`) and merges the kept boxes in the
//! order of step 2. Both return indices into the input.
//!
//! Scores may be `f32` (network output) or `f64`.
//! Run the tests: `cargo test --no-default-features --lib detect::nms`.

use super::iou::iou_bev;
use crate::geometry::Box3D;

/// Validated NMS settings; build with [`NmsConfig::new`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NmsConfig {
    score_threshold: f64,
    iou_threshold: f64,
    pre_max_size: Option<usize>,
    post_max_size: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NmsError {
    #[error("NMS IoU threshold must be in [0, 1], got {0}")]
    IouThreshold(f64),
    #[error("NMS score threshold must not be NaN")]
    ScoreThreshold,
    #[error("NMS input lengths differ: {boxes} boxes, {scores} scores, {classes} class ids")]
    LengthMismatch { boxes: usize, scores: usize, classes: usize },
}

impl NmsConfig {
    /// `score_threshold`: keep `score >= it` (may be `-inf` for "keep all");
    /// `iou_threshold` in [0, 1]: suppress `IoU > it`; `pre_max_size` /
    /// `post_max_size`: top-k before / after the greedy step (`None` = no cap).
    pub fn new(
        score_threshold: f64,
        iou_threshold: f64,
        pre_max_size: Option<usize>,
        post_max_size: Option<usize>,
    ) -> Result<Self, NmsError> {
        if score_threshold.is_nan() {
            return Err(NmsError::ScoreThreshold);
        }
        if !(0.0..=1.0).contains(&iou_threshold) {
            return Err(NmsError::IouThreshold(iou_threshold));
        }
        Ok(NmsConfig { score_threshold, iou_threshold, pre_max_size, post_max_size })
    }

    pub fn score_threshold(&self) -> f64 {
        self.score_threshold
    }
    pub fn iou_threshold(&self) -> f64 {
        self.iou_threshold
    }
    pub fn pre_max_size(&self) -> Option<usize> {
        self.pre_max_size
    }
    pub fn post_max_size(&self) -> Option<usize> {
        self.post_max_size
    }
}

/// Sorts indices by score descending, lower index first on ties.
fn sort_by_score(idx: &mut [usize], scores: &[f64]) {
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
}

/// Steps 1–5 on the candidates `subset` (indices into `boxes`/`scores`).
fn nms_subset(boxes: &[Box3D], scores: &[f64], subset: impl Iterator<Item = usize>, cfg: &NmsConfig) -> Vec<usize> {
    let mut order: Vec<usize> =
        subset.filter(|&i| scores[i].is_finite() && scores[i] >= cfg.score_threshold).collect();
    sort_by_score(&mut order, scores);
    if let Some(k) = cfg.pre_max_size {
        order.truncate(k);
    }
    let cap = cfg.post_max_size.unwrap_or(usize::MAX);
    let mut suppressed = vec![false; order.len()];
    let mut keep = Vec::new();
    for i in 0..order.len() {
        if keep.len() >= cap {
            break;
        }
        if suppressed[i] {
            continue;
        }
        let kept = order[i];
        keep.push(kept);
        for j in i + 1..order.len() {
            if !suppressed[j] && iou_bev(&boxes[kept], &boxes[order[j]]) > cfg.iou_threshold {
                suppressed[j] = true;
            }
        }
    }
    keep
}

fn to_f64<S: Copy + Into<f64>>(scores: &[S]) -> Vec<f64> {
    scores.iter().map(|&s| s.into()).collect()
}

/// Class-agnostic rotated BEV NMS; returns the kept indices, best first.
pub fn nms_bev<S: Copy + Into<f64>>(boxes: &[Box3D], scores: &[S], cfg: &NmsConfig) -> Result<Vec<usize>, NmsError> {
    if boxes.len() != scores.len() {
        return Err(NmsError::LengthMismatch { boxes: boxes.len(), scores: scores.len(), classes: boxes.len() });
    }
    let scores = to_f64(scores);
    Ok(nms_subset(boxes, &scores, 0..boxes.len(), cfg))
}

/// Rotated BEV NMS within each class id (boxes of different classes never
/// suppress each other); top-k before/after apply per class. Returns the
/// kept indices of all classes merged, best first (ties: lower index).
pub fn nms_bev_classwise<S: Copy + Into<f64>>(
    boxes: &[Box3D],
    scores: &[S],
    classes: &[usize],
    cfg: &NmsConfig,
) -> Result<Vec<usize>, NmsError> {
    if boxes.len() != scores.len() || boxes.len() != classes.len() {
        return Err(NmsError::LengthMismatch { boxes: boxes.len(), scores: scores.len(), classes: classes.len() });
    }
    let scores = to_f64(scores);
    let mut ids: Vec<usize> = classes.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let mut keep = Vec::new();
    for c in ids {
        keep.extend(nms_subset(boxes, &scores, (0..boxes.len()).filter(|&i| classes[i] == c), cfg));
    }
    sort_by_score(&mut keep, &scores);
    Ok(keep)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bx(x: f64, y: f64, l: f64, w: f64, yaw: f64) -> Box3D {
        Box3D { center: [x, y, 0.0], size: [l, w, 1.5], yaw }
    }

    fn cfg(score: f64, iou: f64, pre: Option<usize>, post: Option<usize>) -> NmsConfig {
        NmsConfig::new(score, iou, pre, post).unwrap()
    }

    /// Deterministic xorshift64* generator for the random scenes.
    struct XorShift(u64);
    impl XorShift {
        fn next_u64(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn unit(&mut self) -> f64 {
            (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
        }
        fn range(&mut self, lo: f64, hi: f64) -> f64 {
            lo + (hi - lo) * self.unit()
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// Plain reference: repeatedly take the best remaining candidate (highest
    /// score, then lowest index), keep it, drop every remaining candidate
    /// overlapping it by more than the threshold.
    fn reference(boxes: &[Box3D], scores: &[f32], classes: &[usize], classwise: bool, c: &NmsConfig) -> Vec<usize> {
        let better = |a: usize, b: usize| scores[a] > scores[b] || (scores[a] == scores[b] && a < b);
        let class_ids: Vec<usize> = if classwise { classes.to_vec() } else { vec![0; boxes.len()] };
        let mut all_kept = Vec::new();
        let mut seen = Vec::new();
        for &cls in &class_ids {
            if seen.contains(&cls) {
                continue;
            }
            seen.push(cls);
            let mut remaining: Vec<usize> = (0..boxes.len())
                .filter(|&i| class_ids[i] == cls && f64::from(scores[i]) >= c.score_threshold())
                .collect();
            // top-k before: pick the k best one by one
            if let Some(k) = c.pre_max_size() {
                let mut picked = Vec::new();
                while picked.len() < k && !remaining.is_empty() {
                    let mut best = 0;
                    for p in 1..remaining.len() {
                        if better(remaining[p], remaining[best]) {
                            best = p;
                        }
                    }
                    picked.push(remaining.remove(best));
                }
                remaining = picked;
            }
            let mut kept = Vec::new();
            while !remaining.is_empty() {
                let mut best = 0;
                for p in 1..remaining.len() {
                    if better(remaining[p], remaining[best]) {
                        best = p;
                    }
                }
                let b = remaining.remove(best);
                kept.push(b);
                remaining.retain(|&j| iou_bev(&boxes[b], &boxes[j]) <= c.iou_threshold());
            }
            if let Some(k) = c.post_max_size() {
                kept.truncate(k);
            }
            all_kept.extend(kept);
        }
        // merge, best first
        let mut out = Vec::new();
        while !all_kept.is_empty() {
            let mut best = 0;
            for p in 1..all_kept.len() {
                if better(all_kept[p], all_kept[best]) {
                    best = p;
                }
            }
            out.push(all_kept.remove(best));
        }
        out
    }

    #[test]
    fn matches_brute_force_on_random_scenes() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let mut total_kept = 0;
        let mut total_suppressed = 0;
        for scene in 0..200 {
            let n = 1 + rng.below(60);
            let mut boxes = Vec::new();
            let mut scores = Vec::new();
            let mut classes = Vec::new();
            for _ in 0..n {
                // a 12 m × 12 m patch so that boxes overlap often
                boxes.push(bx(
                    rng.range(0.0, 12.0),
                    rng.range(0.0, 12.0),
                    rng.range(0.5, 4.5),
                    rng.range(0.5, 2.5),
                    rng.range(-3.2, 3.2),
                ));
                // scores on a 0.05 grid: many exact ties
                scores.push((rng.below(21) as f32) * 0.05);
                classes.push(rng.below(3));
            }
            let c = cfg(
                [0.0, 0.1, 0.3][scene % 3],
                [0.0, 0.01, 0.1, 0.3, 0.5, 0.7][rng.below(6)],
                [None, Some(5), Some(20)][rng.below(3)],
                [None, Some(3), Some(10)][rng.below(3)],
            );
            let got = nms_bev(&boxes, &scores, &c).unwrap();
            let want = reference(&boxes, &scores, &classes, false, &c);
            assert_eq!(got, want, "scene {scene} (agnostic)");
            let got_cw = nms_bev_classwise(&boxes, &scores, &classes, &c).unwrap();
            let want_cw = reference(&boxes, &scores, &classes, true, &c);
            assert_eq!(got_cw, want_cw, "scene {scene} (class-wise)");
            total_kept += got.len();
            total_suppressed += n - got.len();
        }
        // the scenes exercise both outcomes
        assert!(total_kept > 200 && total_suppressed > 200, "{total_kept} {total_suppressed}");
    }

    #[test]
    fn hand_placed_overlaps() {
        // 0 and 1 overlap by IoU 1/3 (2×2 squares 1 m apart), 2 is far away,
        // 3 is a copy of 2 with a lower score
        let boxes = [
            bx(0.0, 0.0, 2.0, 2.0, 0.0),
            bx(1.0, 0.0, 2.0, 2.0, 0.0),
            bx(20.0, 0.0, 4.0, 2.0, 0.5),
            bx(20.0, 0.0, 4.0, 2.0, 0.5),
        ];
        let scores = [0.9f32, 0.95, 0.5, 0.4];
        // threshold below 1/3: 0 suppressed by 1, 3 by 2
        assert_eq!(nms_bev(&boxes, &scores, &cfg(0.0, 0.3, None, None)).unwrap(), vec![1, 2]);
        // threshold above 1/3: both squares survive
        assert_eq!(nms_bev(&boxes, &scores, &cfg(0.0, 0.34, None, None)).unwrap(), vec![1, 0, 2]);
        // score threshold is inclusive
        assert_eq!(nms_bev(&boxes, &scores, &cfg(0.5, 0.3, None, None)).unwrap(), vec![1, 2]);
        assert_eq!(nms_bev(&boxes, &scores, &cfg(0.51, 0.3, None, None)).unwrap(), vec![1]);
        // top-k after
        assert_eq!(nms_bev(&boxes, &scores, &cfg(0.0, 0.34, None, Some(2))).unwrap(), vec![1, 0]);
        // top-k before: only 1 and 0 are candidates
        assert_eq!(nms_bev(&boxes, &scores, &cfg(0.0, 0.3, Some(2), None)).unwrap(), vec![1]);
    }

    #[test]
    fn ties_keep_the_lower_index() {
        let boxes = [bx(0.0, 0.0, 2.0, 2.0, 0.0), bx(0.0, 0.0, 2.0, 2.0, 0.0), bx(0.0, 0.0, 2.0, 2.0, 0.0)];
        let scores = [0.7f64, 0.8, 0.8];
        assert_eq!(nms_bev(&boxes, &scores, &cfg(0.0, 0.5, None, None)).unwrap(), vec![1]);
    }

    #[test]
    fn rotated_overlap_counts() {
        // a 4×1 bar and the same bar turned 90°: a 1×1 cross, IoU = 1/(4 + 4 − 1) = 1/7
        let boxes = [bx(0.0, 0.0, 4.0, 1.0, 0.0), bx(0.0, 0.0, 4.0, 1.0, std::f64::consts::FRAC_PI_2)];
        let scores = [0.9f32, 0.8];
        assert_eq!(nms_bev(&boxes, &scores, &cfg(0.0, 0.1, None, None)).unwrap(), vec![0]);
        assert_eq!(nms_bev(&boxes, &scores, &cfg(0.0, 0.15, None, None)).unwrap(), vec![0, 1]);
    }

    #[test]
    fn classwise_does_not_cross_classes() {
        let boxes = [bx(0.0, 0.0, 2.0, 2.0, 0.0), bx(0.0, 0.0, 2.0, 2.0, 0.0), bx(0.1, 0.0, 2.0, 2.0, 0.0)];
        let scores = [0.6f32, 0.9, 0.8];
        let classes = [0, 1, 0];
        let c = cfg(0.0, 0.5, None, None);
        assert_eq!(nms_bev(&boxes, &scores, &c).unwrap(), vec![1]);
        assert_eq!(nms_bev_classwise(&boxes, &scores, &classes, &c).unwrap(), vec![1, 2]);
        // post_max_size applies per class
        let c1 = cfg(0.0, 1.0, None, Some(1));
        assert_eq!(nms_bev_classwise(&boxes, &scores, &classes, &c1).unwrap(), vec![1, 2]);
    }

    #[test]
    fn bad_input_is_an_error_or_dropped() {
        assert!(NmsConfig::new(0.1, 1.5, None, None).is_err());
        assert!(NmsConfig::new(0.1, f64::NAN, None, None).is_err());
        assert!(NmsConfig::new(f64::NAN, 0.5, None, None).is_err());
        let c = cfg(f64::NEG_INFINITY, 0.5, None, None);
        let boxes = [bx(0.0, 0.0, 2.0, 2.0, 0.0), bx(5.0, 0.0, 2.0, 2.0, 0.0)];
        assert!(nms_bev(&boxes, &[0.5f32], &c).is_err());
        assert!(nms_bev_classwise(&boxes, &[0.5f32, 0.4], &[0], &c).is_err());
        // NaN scores are dropped, degenerate boxes are kept but suppress nothing
        assert_eq!(nms_bev(&boxes, &[f32::NAN, 0.4], &c).unwrap(), vec![1]);
        let degenerate = [bx(0.0, 0.0, 0.0, 0.0, 0.0), bx(0.0, 0.0, 2.0, 2.0, 0.0)];
        assert_eq!(nms_bev(&degenerate, &[0.9f32, 0.4], &c).unwrap(), vec![0, 1]);
        assert!(nms_bev::<f32>(&[], &[], &c).unwrap().is_empty());
    }
}
