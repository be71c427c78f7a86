//! The devkit's per-frame bookkeeping (`cleanData`, `computeStatistics`),
//! the recall discretisation (`getThresholds`) and the precision curves,
//! reimplemented from the semantics of KITTI's `evaluate_object.cpp` and
//! OpenPCDet's `kitti_object_eval_python/eval.py` (see docs/kitti_eval.md).

use super::iou::{bev_iou, image_overlap, iou_3d};
use super::{ApMode, Metric, N_SAMPLE_PTS};
use crate::dataset::kitti::{DifficultyRule, ObjectClass, ObjectLabel};

/// How the devkit treats a ground truth for one class and difficulty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GtRole {
    /// Counts: a valid object of the class at this difficulty.
    Valid,
    /// May absorb a detection without counting (neighbouring class, or the
    /// class but too hard for this difficulty).
    Ignored,
    /// Another class: invisible to this evaluation.
    Other,
}

/// How the devkit treats a detection for one class and difficulty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DtRole {
    Valid,
    /// Shorter than the difficulty's minimum height: never a TP or FP.
    Ignored,
    /// Another class.
    Other,
}

/// One frame's overlaps, computed once for all classes and difficulties.
pub(crate) struct FrameOverlaps {
    /// `[metric][dt * n_gt + gt]`.
    pub dt_gt: [Vec<f64>; 3],
    /// `[dt * n_dc + dc]`: fraction of the detection's image box inside each DontCare box.
    pub dt_dc: Vec<f64>,
    pub n_gt: usize,
    pub n_dc: usize,
}

impl FrameOverlaps {
    pub fn new(gt: &[ObjectLabel], dt: &[ObjectLabel]) -> Self {
        let dc: Vec<usize> = gt
            .iter()
            .enumerate()
            .filter(|(_, g)| g.class == ObjectClass::DontCare)
            .map(|(i, _)| i)
            .collect();
        let pairs = |f: &dyn Fn(&ObjectLabel, &ObjectLabel) -> f64| {
            dt.iter()
                .flat_map(|d| gt.iter().map(move |g| (d, g)))
                .map(|(d, g)| f(d, g))
                .collect::<Vec<f64>>()
        };
        let dt_gt = [
            pairs(&|d: &ObjectLabel, g: &ObjectLabel| image_overlap(&d.bbox, &g.bbox, false)),
            pairs(&|d: &ObjectLabel, g: &ObjectLabel| bev_iou(d, g)),
            pairs(&|d: &ObjectLabel, g: &ObjectLabel| iou_3d(d, g)),
        ];
        let dt_dc = dt
            .iter()
            .flat_map(|d| {
                dc.iter()
                    .map(|&k| image_overlap(&d.bbox, &gt[k].bbox, true))
            })
            .collect();
        Self {
            dt_gt,
            dt_dc,
            n_gt: gt.len(),
            n_dc: dc.len(),
        }
    }
}

/// The devkit's neighbouring-class rule: Van for Car, Person_sitting for Pedestrian.
pub(crate) fn is_neighbour(evaluated: ObjectClass, gt: ObjectClass) -> bool {
    matches!(
        (evaluated, gt),
        (ObjectClass::Car, ObjectClass::Van)
            | (ObjectClass::Pedestrian, ObjectClass::PersonSitting)
    )
}

/// `cleanData`: roles of one frame's ground truths and detections; returns
/// the number of valid ground truths too.
pub(crate) fn clean(
    gt: &[ObjectLabel],
    dt: &[ObjectLabel],
    class: ObjectClass,
    rule: &DifficultyRule,
) -> (Vec<GtRole>, Vec<DtRole>, usize) {
    let mut n_valid = 0;
    let gt_roles = gt
        .iter()
        .map(|g| {
            // Python port and this crate's DIFFICULTY_RULES: the height must exceed the minimum
            let too_hard = g.occluded > rule.max_occlusion
                || g.truncated > rule.max_truncation
                || g.bbox_height() <= rule.min_height_px;
            if g.class == class && !too_hard {
                n_valid += 1;
                GtRole::Valid
            } else if g.class == class || is_neighbour(class, g.class) {
                GtRole::Ignored
            } else {
                GtRole::Other
            }
        })
        .collect();
    let dt_roles = dt
        .iter()
        .map(|d| {
            if d.bbox_height() < rule.min_height_px {
                DtRole::Ignored
            } else if d.class == class {
                DtRole::Valid
            } else {
                DtRole::Other
            }
        })
        .collect();
    (gt_roles, dt_roles, n_valid)
}

/// Counts of one frame at one score threshold.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Counts {
    pub tp: usize,
    pub fp: usize,
    pub fn_: usize,
    /// Orientation similarity summed over the true positives, `(1 + cos Δα) / 2`
    /// each (0 unless the case carries alphas).
    pub similarity: f64,
}

/// Inputs of [`statistics`] for one frame, class, difficulty and metric.
pub(crate) struct FrameCase<'a> {
    pub overlaps: &'a [f64],
    pub n_gt: usize,
    /// `dt × dc` image overlaps, or `None` when DontCare regions do not apply to the metric.
    pub dont_care: Option<(&'a [f64], usize)>,
    pub scores: &'a [f64],
    pub gt_roles: &'a [GtRole],
    pub dt_roles: &'a [DtRole],
    /// Observation angles (ground truth, detections) when orientation
    /// similarity is accumulated (the bbox metric's AOS), else `None`.
    pub alphas: Option<(&'a [f64], &'a [f64])>,
}

/// `computeStatistics`. Without `thresh` (the recall pass) each ground truth
/// takes the highest-scoring free detection above `min_overlap` and the
/// scores of the true positives are returned; with `thresh` (the precision
/// pass) detections scoring below it are dropped, each ground truth takes the
/// free valid detection of largest overlap (an ignored one only if no valid
/// one qualifies), and false positives are counted, less those inside DontCare
/// regions. With `case.alphas`, each true positive adds its orientation
/// similarity `(1 + cos(α_gt − α_dt)) / 2` to `Counts::similarity`.
pub(crate) fn statistics(
    case: &FrameCase<'_>,
    min_overlap: f64,
    thresh: Option<f64>,
) -> (Counts, Vec<f64>) {
    let n_dt = case.scores.len();
    let mut assigned = vec![false; n_dt];
    let below: Vec<bool> = case
        .scores
        .iter()
        .map(|&s| thresh.is_some_and(|t| s < t))
        .collect();
    let mut counts = Counts::default();
    let mut tp_scores = Vec::new();
    for (i, &role) in case.gt_roles.iter().enumerate() {
        if role == GtRole::Other {
            continue;
        }
        let mut best: Option<usize> = None;
        let mut best_score = f64::NEG_INFINITY;
        let mut max_overlap = 0.0;
        let mut best_is_ignored = false;
        for j in 0..n_dt {
            if case.dt_roles[j] == DtRole::Other || assigned[j] || below[j] {
                continue;
            }
            let overlap = case.overlaps[j * case.n_gt + i];
            if !(overlap > min_overlap) {
                continue;
            }
            if thresh.is_none() {
                if best.is_none() || case.scores[j] > best_score {
                    best = Some(j);
                    best_score = case.scores[j];
                }
            } else if case.dt_roles[j] == DtRole::Valid
                && (overlap > max_overlap || best_is_ignored)
            {
                max_overlap = overlap;
                best = Some(j);
                best_is_ignored = false;
            } else if best.is_none() && case.dt_roles[j] == DtRole::Ignored {
                best = Some(j);
                best_is_ignored = true;
            }
        }
        match best {
            None => {
                if role == GtRole::Valid {
                    counts.fn_ += 1;
                }
            }
            Some(j) => {
                assigned[j] = true;
                if role == GtRole::Valid && case.dt_roles[j] == DtRole::Valid {
                    counts.tp += 1;
                    tp_scores.push(case.scores[j]);
                    if let Some((gt_alpha, dt_alpha)) = case.alphas {
                        counts.similarity += (1.0 + (gt_alpha[i] - dt_alpha[j]).cos()) / 2.0;
                    }
                }
            }
        }
    }
    if thresh.is_some() {
        let free = |j: usize, assigned: &[bool]| {
            case.dt_roles[j] == DtRole::Valid && !assigned[j] && !below[j]
        };
        counts.fp = (0..n_dt).filter(|&j| free(j, &assigned)).count();
        if let Some((dt_dc, n_dc)) = case.dont_care {
            let mut in_dont_care = 0;
            for k in 0..n_dc {
                for j in 0..n_dt {
                    if free(j, &assigned) && dt_dc[j * n_dc + k] > min_overlap {
                        assigned[j] = true;
                        in_dont_care += 1;
                    }
                }
            }
            counts.fp -= in_dont_care;
        }
    }
    (counts, tp_scores)
}

/// `getThresholds`: the scores (of the recall pass's true positives) at which
/// recall is closest to 0, 1/40, 2/40, ... (at most [`N_SAMPLE_PTS`]).
pub(crate) fn devkit_thresholds(mut scores: Vec<f64>, n_gt: usize) -> Vec<f64> {
    scores.sort_by(|a, b| b.total_cmp(a));
    let n = n_gt as f64;
    let mut current = 0.0;
    let mut out = Vec::new();
    for (i, &s) in scores.iter().enumerate() {
        let last = i + 1 == scores.len();
        let l_recall = (i + 1) as f64 / n;
        let r_recall = if last { l_recall } else { (i + 2) as f64 / n };
        if (r_recall - current) < (current - l_recall) && !last {
            continue;
        }
        out.push(s);
        current += 1.0 / (N_SAMPLE_PTS as f64 - 1.0);
    }
    // the devkit writes past its 41-entry array should this ever exceed it
    out.truncate(N_SAMPLE_PTS);
    out
}

/// Precision/recall of one class, difficulty and metric over all frames.
pub(crate) struct Curve {
    /// Interpolated precision at the sample points: entry `k` stands for recall `k/40`.
    pub precision: Vec<f64>,
    /// (recall, precision) at each evaluated score threshold, highest threshold first.
    pub points: Vec<(f64, f64)>,
    /// Interpolated orientation similarity at the same samples (summed
    /// similarity over TP + FP, then interpolated as precision is), when the
    /// cases carry alphas.
    pub orientation: Option<Vec<f64>>,
}

pub(crate) fn curve(
    cases: &[FrameCase<'_>],
    n_valid: usize,
    min_overlap: f64,
    mode: ApMode,
) -> Curve {
    let mut tp_scores = Vec::new();
    for c in cases {
        tp_scores.extend(statistics(c, min_overlap, None).1);
    }
    let thresholds = match mode {
        ApMode::Devkit => devkit_thresholds(tp_scores, n_valid),
        ApMode::Exact => {
            tp_scores.sort_by(|a, b| b.total_cmp(a));
            tp_scores.dedup();
            tp_scores
        }
    };
    // (recall, precision, orientation similarity over TP + FP) per threshold
    let triples: Vec<(f64, f64, f64)> = thresholds
        .iter()
        .map(|&t| {
            let total = cases.iter().fold(Counts::default(), |acc, c| {
                let k = statistics(c, min_overlap, Some(t)).0;
                Counts {
                    tp: acc.tp + k.tp,
                    fp: acc.fp + k.fp,
                    fn_: acc.fn_ + k.fn_,
                    similarity: acc.similarity + k.similarity,
                }
            });
            let div = |a: f64, b: usize| if b == 0 { 0.0 } else { a / b as f64 };
            (
                div(total.tp as f64, total.tp + total.fn_),
                div(total.tp as f64, total.tp + total.fp),
                div(total.similarity, total.tp + total.fp),
            )
        })
        .collect();
    let points: Vec<(f64, f64)> = triples.iter().map(|t| (t.0, t.1)).collect();
    let recalls: Vec<f64> = triples.iter().map(|t| t.0).collect();
    let precision = interpolate(&recalls, &points.iter().map(|p| p.1).collect::<Vec<_>>(), mode);
    let with_alphas = cases.iter().any(|c| c.alphas.is_some());
    let orientation = with_alphas
        .then(|| interpolate(&recalls, &triples.iter().map(|t| t.2).collect::<Vec<_>>(), mode));
    Curve {
        precision,
        points,
        orientation,
    }
}

/// The [`N_SAMPLE_PTS`] samples of a per-threshold value (precision, or
/// orientation similarity), thresholds highest first with their recalls.
fn interpolate(recalls: &[f64], values: &[f64], mode: ApMode) -> Vec<f64> {
    let mut out = vec![0.0; N_SAMPLE_PTS];
    match mode {
        ApMode::Devkit => {
            // value at threshold i, then max over i.. (the devkit's filter)
            for (o, &v) in out.iter_mut().zip(values) {
                *o = v;
            }
            for i in (0..N_SAMPLE_PTS.saturating_sub(1)).rev() {
                out[i] = out[i].max(out[i + 1]);
            }
        }
        ApMode::Exact => {
            for (k, o) in out.iter_mut().enumerate() {
                let r = k as f64 / (N_SAMPLE_PTS as f64 - 1.0);
                // a small tolerance so that recall 3/10 counts as reaching sample 12/40
                *o = recalls
                    .iter()
                    .zip(values)
                    .filter(|(q, _)| **q >= r - 1e-12)
                    .map(|(_, v)| *v)
                    .fold(0.0, f64::max);
            }
        }
    }
    out
}

/// The overlaps of `metric` in a frame.
pub(crate) fn metric_overlaps(o: &FrameOverlaps, metric: Metric) -> &[f64] {
    &o.dt_gt[metric as usize]
}
