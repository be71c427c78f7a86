//! Hand-computed cases for the KITTI evaluation.

use std::f64::consts::PI;

use super::iou::{bev_iou, image_overlap, iou_3d, rect_iou, Rect};
use super::kitti_ap::devkit_thresholds;
use super::*;
use crate::dataset::kitti::{format_labels, ObjectClass as C};

const TOL: f64 = 1e-9;

/// An Easy object (2D height 60, no occlusion or truncation) of size
/// h 1.5, w 1.8, l 4.0 at camera (x, 1.5, z), heading camera +x.
pub(super) fn obj(class: C, x: f64, z: f64) -> ObjectLabel {
    let bx = 20.0 * x + 600.0;
    ObjectLabel {
        class,
        truncated: 0.0,
        occluded: 0,
        alpha: 0.0,
        bbox: [bx, 100.0, bx + 80.0, 160.0],
        dimensions: [1.5, 1.8, 4.0],
        location: [x, 1.5, z],
        rotation_y: 0.0,
        score: None,
    }
}

pub(super) fn det(o: &ObjectLabel, score: f64) -> ObjectLabel {
    ObjectLabel {
        score: Some(score),
        ..o.clone()
    }
}

pub(super) fn exact() -> EvalConfig {
    EvalConfig {
        ap_mode: ApMode::Exact,
        ..EvalConfig::default()
    }
}

fn ap(r: &EvalReport, class: C, m: Metric, d: Difficulty, r40: bool) -> f64 {
    r.ap(class, m, d, r40).unwrap_or(f64::NAN)
}

fn assert_all(r: &EvalReport, class: C, r40: bool, want: f64) {
    for m in Metric::ALL {
        for d in DIFFICULTIES {
            let got = ap(r, class, m, d, r40);
            assert!(
                (got - want).abs() < 1e-6,
                "{class} {} {d:?} r40={r40}: {got} != {want}",
                m.as_str()
            );
        }
    }
}

// ---------------------------------------------------------------- overlaps

#[test]
fn image_overlap_known_cases() {
    let a = [0.0, 0.0, 100.0, 50.0];
    assert!((image_overlap(&a, &a, false) - 1.0).abs() < TOL);
    // half covered: IoU 50/150, fraction of a's area 1/2
    let b = [50.0, 0.0, 150.0, 50.0];
    assert!((image_overlap(&a, &b, false) - 1.0 / 3.0).abs() < TOL);
    assert!((image_overlap(&a, &b, true) - 0.5).abs() < TOL);
    assert_eq!(
        image_overlap(&a, &[100.0, 0.0, 200.0, 50.0], false),
        0.0,
        "touching"
    );
    assert_eq!(
        image_overlap(&[5.0, 5.0, 5.0, 9.0], &a, true),
        0.0,
        "degenerate"
    );
}

#[test]
fn rotated_bev_iou_known_cases() {
    let r = |cx, cy, l, w, angle| Rect {
        cx,
        cy,
        l,
        w,
        angle,
    };
    let a = r(0.0, 0.0, 4.0, 2.0, 0.0);
    assert!((rect_iou(&a, &a) - 1.0).abs() < TOL);
    // 90° turn about the common centre: 2×2 overlap, union 8 + 8 - 4
    assert!((rect_iou(&a, &r(0.0, 0.0, 4.0, 2.0, PI / 2.0)) - 4.0 / 12.0).abs() < TOL);
    // a half-turn is the same rectangle
    assert!((rect_iou(&a, &r(0.0, 0.0, 4.0, 2.0, PI)) - 1.0).abs() < TOL);
    // unit squares at 45°: the overlap is a regular octagon of area 2(√2 - 1)
    let oct = 2.0 * (2f64.sqrt() - 1.0);
    let s = r(3.0, -1.0, 1.0, 1.0, 0.0);
    assert!((rect_iou(&s, &r(3.0, -1.0, 1.0, 1.0, PI / 4.0)) - oct / (2.0 - oct)).abs() < 1e-12);
    // shifted 1 m along the length: 3×2 / (8 + 8 - 6)
    assert!((rect_iou(&a, &r(1.0, 0.0, 4.0, 2.0, 0.0)) - 0.6).abs() < TOL);
    // disjoint, and degenerate
    assert_eq!(rect_iou(&a, &r(10.0, 0.0, 4.0, 2.0, 0.3)), 0.0);
    assert_eq!(rect_iou(&a, &r(0.0, 0.0, 0.0, 2.0, 0.0)), 0.0);
    assert_eq!(rect_iou(&a, &r(f64::NAN, 0.0, 4.0, 2.0, 0.0)), 0.0);
}

#[test]
fn bev_uses_camera_x_z_and_rotation_y() {
    // rotation_y = π/2 heads along camera (cos, -sin) = -z: the length lies along z.
    let mut a = obj(C::Car, 0.0, 20.0);
    a.rotation_y = PI / 2.0;
    let mut along = a.clone();
    along.location[2] += 1.0;
    let mut across = a.clone();
    across.location[0] += 1.0;
    // l 4, w 1.8: along the length 3×1.8 / (2·7.2 - 5.4); across 4×0.8 / (14.4 - 3.2)
    assert!((bev_iou(&a, &along) - 5.4 / 9.0).abs() < 1e-12);
    assert!((bev_iou(&a, &across) - 3.2 / 11.2).abs() < 1e-12);
    // camera y does not matter in BEV; in 3D it overlaps [0, 1.5] with [-0.5, 1.0]
    let mut up = a.clone();
    up.location[1] -= 0.5;
    assert!((bev_iou(&a, &up) - 1.0).abs() < 1e-12);
    assert!((iou_3d(&a, &up) - 0.5).abs() < 1e-12, "{}", iou_3d(&a, &up));
    up.location[1] -= 2.0;
    assert_eq!(iou_3d(&a, &up), 0.0);
    // 3D = BEV when the heights agree
    assert!((iou_3d(&a, &along) - bev_iou(&a, &along)).abs() < 1e-12);
}

// ---------------------------------------------------------------- sampling

#[test]
fn devkit_thresholds_sample_recall() {
    // 80 TPs of 80 GTs: scores at recall 1/80, then every 2nd (k/40): 41 thresholds
    let scores: Vec<f64> = (0..80).map(|i| 1.0 - f64::from(i) / 100.0).collect();
    let t = devkit_thresholds(scores.clone(), 80);
    assert_eq!(t.len(), 41);
    assert_eq!(
        (t[0], t[1], t[2], t[40]),
        (scores[0], scores[1], scores[3], scores[79])
    );
    // fewer GTs than sample points: every score is a threshold
    assert_eq!(devkit_thresholds(vec![0.2, 0.9], 2), vec![0.9, 0.2]);
    assert!(devkit_thresholds(vec![], 5).is_empty());
    // R40 skips sample 0; R11 takes 0, 4, ..., 40
    let mut p = vec![0.0; N_SAMPLE_PTS];
    p[0] = 1.0;
    assert_eq!(ap_from_precision(&p), (0.0, 100.0 / 11.0));
    assert_eq!(ap_from_precision(&[1.0; N_SAMPLE_PTS]), (100.0, 100.0));
}

// ---------------------------------------------------------------- protocol

/// `n` frames with one Easy Car, Pedestrian and Cyclist each, detected exactly.
pub(super) fn perfect(n: usize) -> (Vec<Vec<ObjectLabel>>, Vec<Vec<ObjectLabel>>) {
    let gt: Vec<Vec<ObjectLabel>> = (0..n)
        .map(|_| {
            vec![
                obj(C::Car, -8.0, 20.0),
                obj(C::Pedestrian, 0.0, 20.0),
                obj(C::Cyclist, 8.0, 20.0),
            ]
        })
        .collect();
    let dt = gt
        .iter()
        .enumerate()
        .map(|(i, f)| f.iter().map(|o| det(o, 0.3 + i as f64 / 200.0)).collect())
        .collect();
    (gt, dt)
}

#[test]
fn perfect_detections_score_100() {
    // the devkit needs ≥ 80 GTs for its 41 thresholds to reach sample 40
    let (gt, dt) = perfect(80);
    let r = evaluate(&gt, &dt, &EvalConfig::default()).expect("eval");
    for c in [C::Car, C::Pedestrian, C::Cyclist] {
        assert_all(&r, c, true, 100.0);
        assert_all(&r, c, false, 100.0);
        assert_eq!(r.class(c).map(|c| c.num_gt), Some([80; 3]));
    }
    let (gt, dt) = perfect(2);
    let r = evaluate(&gt, &dt, &exact()).expect("eval");
    assert_all(&r, C::Car, true, 100.0);
    assert_all(&r, C::Cyclist, false, 100.0);
    // the devkit with 2 GTs: thresholds only at samples 0 and 1 → R40 = 1/40, R11 = 1/11
    let r = evaluate(&gt, &dt, &EvalConfig::default()).expect("eval");
    assert_all(&r, C::Car, true, 100.0 / 40.0);
    assert_all(&r, C::Car, false, 100.0 / 11.0);
    // docs/kitti_eval.md: one perfect car scores R40 0 (R11 9.09), 40 perfect cars R40 97.5
    for (n, r40, r11) in [(1, 0.0, 100.0 / 11.0), (40, 97.5, 1000.0 / 11.0)] {
        let (gt, dt) = perfect(n);
        let r = evaluate(&gt, &dt, &EvalConfig::default()).expect("eval");
        assert_all(&r, C::Car, true, r40);
        assert_all(&r, C::Car, false, r11);
    }
}

#[test]
fn no_detections_score_0_and_no_ground_truth_is_none() {
    let (gt, _) = perfect(3);
    let r = evaluate(&gt, &[vec![], vec![], vec![]], &EvalConfig::default()).expect("eval");
    assert_all(&r, C::Car, true, 0.0);
    assert_all(&r, C::Pedestrian, false, 0.0);
    let r = evaluate(
        &[vec![]],
        &[vec![det(&obj(C::Car, 0.0, 20.0), 0.9)]],
        &EvalConfig::default(),
    )
    .expect("eval");
    assert_eq!(r.ap(C::Car, Metric::Bev, Difficulty::Easy, true), None);
    assert!(r.to_string().contains("bev  AP:n/a, n/a, n/a"), "{r}");
}

/// A Car detection whose 2D, BEV and 3D IoU with the ground truth all equal `iou`.
fn car_at_iou(iou: f64) -> (ObjectLabel, ObjectLabel) {
    let g = obj(C::Car, 0.0, 20.0);
    let mut d = det(&g, 0.8);
    // sliding along the length l: IoU = (l - s) / (l + s)
    d.location[0] += 4.0 * (1.0 - iou) / (1.0 + iou);
    let bw = g.bbox[2] - g.bbox[0];
    d.bbox[0] += bw * (1.0 - iou) / (1.0 + iou);
    d.bbox[2] += bw * (1.0 - iou) / (1.0 + iou);
    assert!((bev_iou(&g, &d) - iou).abs() < 1e-9 && (iou_3d(&g, &d) - iou).abs() < 1e-9);
    assert!((image_overlap(&d.bbox, &g.bbox, false) - iou).abs() < 1e-9);
    (g, d)
}

#[test]
fn car_needs_iou_above_0_7() {
    let (g, d) = car_at_iou(0.69);
    let r = evaluate(&[vec![g]], &[vec![d]], &exact()).expect("eval");
    assert_all(&r, C::Car, true, 0.0);
    assert_all(&r, C::Car, false, 0.0);
    let (g, d) = car_at_iou(0.71);
    let r = evaluate(&[vec![g.clone()]], &[vec![d.clone()]], &exact()).expect("eval");
    assert_all(&r, C::Car, true, 100.0);
    assert_all(&r, C::Car, false, 100.0);
    // the devkit: one threshold at sample 0 → R40 0, R11 1/11
    let r = evaluate(
        &[vec![g.clone()]],
        &[vec![d.clone()]],
        &EvalConfig::default(),
    )
    .expect("eval");
    assert_all(&r, C::Car, true, 0.0);
    assert_all(&r, C::Car, false, 100.0 / 11.0);
    // IoU 0.69 is enough at the loose 0.5 thresholds of BEV/3D (not of bbox at 0.7)
    let (g, d) = car_at_iou(0.69);
    let cfg = EvalConfig {
        classes: vec![ClassConfig::loose(C::Car)],
        ..exact()
    };
    let r = evaluate(&[vec![g]], &[vec![d]], &cfg).expect("eval");
    assert_eq!(ap(&r, C::Car, Metric::Bbox, Difficulty::Easy, true), 0.0);
    assert_eq!(
        ap(&r, C::Car, Metric::ThreeD, Difficulty::Easy, true),
        100.0
    );
    // a Pedestrian at 0.69 is a hit (0.5)
    let (mut g, mut d) = car_at_iou(0.69);
    g.class = C::Pedestrian;
    d.class = C::Pedestrian;
    let r = evaluate(&[vec![g]], &[vec![d]], &exact()).expect("eval");
    assert_all(&r, C::Pedestrian, true, 100.0);
}

#[test]
fn false_positive_ranked_above_true_positives() {
    // Two Cars; detections by score: 0.9 TP (car A), 0.8 FP (nothing there), 0.7 TP (car B).
    let (a, b) = (obj(C::Car, -8.0, 20.0), obj(C::Car, 8.0, 20.0));
    let fp = obj(C::Car, 0.0, 40.0);
    let gt = vec![vec![a.clone(), b.clone()]];
    let dt = vec![vec![det(&b, 0.7), det(&fp, 0.8), det(&a, 0.9)]];
    // PR points, threshold by threshold (TP scores 0.9, 0.7):
    //   score ≥ 0.9: TP 1, FP 0 → recall 1/2, precision 1
    //   score ≥ 0.7: TP 2, FP 1 → recall 1,   precision 2/3
    // Exact: precision at recall ≥ r is 1 for r ≤ 1/2 and 2/3 above.
    //   R40: samples 1..=20 → 1, 21..=40 → 2/3: (20 + 40/3) / 40 = 83.333 %
    //   R11: r = 0 .. 0.5 (6 samples) → 1, 0.6 .. 1 (5) → 2/3: (6 + 10/3) / 11 = 84.848 %
    let r = evaluate(&gt, &dt, &exact()).expect("eval");
    let c = r.class(C::Car).expect("car");
    assert_eq!(
        c.results[0][0].pr_points,
        vec![(0.5, 1.0), (1.0, 2.0 / 3.0)]
    );
    assert_all(&r, C::Car, true, (20.0 + 40.0 / 3.0) / 40.0 * 100.0);
    assert_all(&r, C::Car, false, (6.0 + 10.0 / 3.0) / 11.0 * 100.0);
    // Devkit: thresholds = both TP scores (2 GTs < 40), at samples 0 and 1:
    // precision [1, 2/3, 0, ...] → R40 = (2/3)/40 = 1.667 %, R11 = 1/11 = 9.091 %
    let r = evaluate(&gt, &dt, &EvalConfig::default()).expect("eval");
    assert_all(&r, C::Car, true, 2.0 / 3.0 / 40.0 * 100.0);
    assert_all(&r, C::Car, false, 100.0 / 11.0);

    // The FP on top: 0.9 FP, 0.8 TP, 0.7 TP → points (1/2, 1/2), (1, 2/3);
    // the interpolation lifts recall ≤ 1/2 to 2/3: exact R40 = R11 = 66.667 %.
    let dt = vec![vec![det(&b, 0.7), det(&fp, 0.9), det(&a, 0.8)]];
    let r = evaluate(&gt, &dt, &exact()).expect("eval");
    assert_all(&r, C::Car, true, 200.0 / 3.0);
    assert_all(&r, C::Car, false, 200.0 / 3.0);
}

#[test]
fn greedy_matching_takes_the_highest_score_per_ground_truth() {
    // Two detections on one car: the higher score is the TP, the other a FP
    // (duplicate); a lower-scored better-overlapping duplicate does not win in the recall pass.
    let g = obj(C::Car, 0.0, 20.0);
    let (_, near) = car_at_iou(0.8);
    let gt = vec![vec![g.clone()]];
    let dt = vec![vec![det(&g, 0.5), det(&near, 0.9)]];
    let r = evaluate(&gt, &dt, &exact()).expect("eval");
    let c = r.class(C::Car).expect("car");
    // only TP score 0.9 → one threshold: TP 1, FP 0
    assert_eq!(c.results[1][0].pr_points, vec![(1.0, 1.0)]);
}

#[test]
fn detections_in_dont_care_regions_are_ignored_in_2d() {
    let a = obj(C::Car, -8.0, 20.0);
    let ghost = obj(C::Car, 8.0, 20.0);
    // the DontCare region covers 3/4 of the ghost detection's image box (> 0.7)
    let b = ghost.bbox;
    let dc = ObjectLabel::dont_care([b[0] + 20.0, b[1], b[2] + 40.0, b[3]]);
    let gt = vec![vec![a.clone(), dc]];
    let dt = vec![vec![det(&a, 0.5), det(&ghost, 0.9)]];
    let r = evaluate(&gt, &dt, &exact()).expect("eval");
    // bbox: the ghost is not a FP; BEV/3D (devkit): it is (precision 1/2)
    assert_eq!(ap(&r, C::Car, Metric::Bbox, Difficulty::Easy, true), 100.0);
    assert_eq!(
        ap(&r, C::Car, Metric::Bev, Difficulty::Moderate, true),
        50.0
    );
    assert_eq!(
        ap(&r, C::Car, Metric::ThreeD, Difficulty::Hard, false),
        50.0
    );
    let cfg = EvalConfig {
        dont_care_all_metrics: true,
        ..exact()
    };
    assert_all(
        &evaluate(&gt, &dt, &cfg).expect("eval"),
        C::Car,
        true,
        100.0,
    );
    // covering only half of it (≤ 0.7) does not excuse it
    let dc = ObjectLabel::dont_care([b[0] + 40.0, b[1], b[2] + 40.0, b[3]]);
    let r = evaluate(&[vec![a.clone(), dc]], &dt, &exact()).expect("eval");
    assert_eq!(ap(&r, C::Car, Metric::Bbox, Difficulty::Easy, true), 50.0);
}

#[test]
fn neighbouring_classes_are_neither_tp_nor_fp() {
    let a = obj(C::Car, -8.0, 20.0);
    let van = obj(C::Van, 8.0, 20.0);
    let dt = vec![vec![
        det(&a, 0.5),
        ObjectLabel {
            class: C::Car,
            ..det(&van, 0.9)
        },
    ]];
    // a Car detection on a Van: ignored
    let r = evaluate(&[vec![a.clone(), van.clone()]], &dt, &exact()).expect("eval");
    assert_all(&r, C::Car, true, 100.0);
    assert_eq!(r.class(C::Car).map(|c| c.num_gt), Some([1; 3]));
    // ... but on a Truck it is a FP
    let truck = ObjectLabel {
        class: C::Truck,
        ..van.clone()
    };
    let r = evaluate(&[vec![a.clone(), truck]], &dt, &exact()).expect("eval");
    assert_all(&r, C::Car, true, 50.0);
    // Person_sitting for Pedestrian; a Van detection is not evaluated as Car at all
    let p = obj(C::Pedestrian, -8.0, 20.0);
    let ps = ObjectLabel {
        class: C::PersonSitting,
        ..obj(C::Pedestrian, 8.0, 20.0)
    };
    let dt = vec![vec![
        det(&p, 0.5),
        det(
            &ObjectLabel {
                class: C::Pedestrian,
                ..ps.clone()
            },
            0.9,
        ),
        {
            let mut v = det(&obj(C::Van, 0.0, 40.0), 0.99);
            v.class = C::Van;
            v
        },
    ]];
    let r = evaluate(&[vec![p, ps, a]], &dt, &exact()).expect("eval");
    assert_all(&r, C::Pedestrian, true, 100.0);
    // the Car GT has no Car detection; the Van detection is no Car FP either
    assert_all(&r, C::Car, true, 0.0);
    assert!(r
        .class(C::Car)
        .is_some_and(|c| c.results[0][0].pr_points.is_empty()));
}

#[test]
fn harder_ground_truths_are_ignored_not_false_positives() {
    let easy = obj(C::Car, -8.0, 20.0);
    let hard = ObjectLabel {
        occluded: 2,
        ..obj(C::Car, 8.0, 20.0)
    };
    let gt = vec![vec![easy.clone(), hard.clone()]];
    // both detected, the Hard one with the higher score
    let r = evaluate(&gt, &[vec![det(&easy, 0.5), det(&hard, 0.9)]], &exact()).expect("eval");
    assert_eq!(r.class(C::Car).map(|c| c.num_gt), Some([1, 1, 2]));
    assert_all(&r, C::Car, true, 100.0);
    // only the Easy one detected: Easy/Moderate 100; Hard recall 1/2 at precision 1:
    // R40 samples 1..=20 → 50 %, R11 samples 0..0.5 → 6/11 = 54.545 %
    let r = evaluate(&gt, &[vec![det(&easy, 0.5)]], &exact()).expect("eval");
    assert_eq!(ap(&r, C::Car, Metric::Bev, Difficulty::Easy, true), 100.0);
    assert_eq!(
        ap(&r, C::Car, Metric::Bev, Difficulty::Moderate, true),
        100.0
    );
    assert!((ap(&r, C::Car, Metric::ThreeD, Difficulty::Hard, true) - 50.0).abs() < TOL);
    assert!((ap(&r, C::Car, Metric::Bbox, Difficulty::Hard, false) - 600.0 / 11.0).abs() < TOL);
    // Moderate includes Easy objects (cumulative)
    let moderate = ObjectLabel {
        truncated: 0.2,
        ..obj(C::Car, 0.0, 40.0)
    };
    let gt = vec![vec![easy.clone(), moderate.clone()]];
    let r = evaluate(&gt, &[vec![det(&easy, 0.5), det(&moderate, 0.6)]], &exact()).expect("eval");
    assert_eq!(r.class(C::Car).map(|c| c.num_gt), Some([1, 2, 2]));
    assert_all(&r, C::Car, true, 100.0);
}

#[test]
fn small_detections_are_ignored() {
    let a = obj(C::Car, -8.0, 20.0);
    // a 30 px tall detection with nothing there: below Easy's 40 px, above 25 px
    let mut small = det(&obj(C::Car, 8.0, 20.0), 0.9);
    small.bbox[3] = small.bbox[1] + 30.0;
    let gt = vec![vec![a.clone()]];
    let dt = vec![vec![det(&a, 0.5), small.clone()]];
    let r = evaluate(&gt, &dt, &exact()).expect("eval");
    assert_eq!(ap(&r, C::Car, Metric::Bev, Difficulty::Easy, true), 100.0);
    assert_eq!(
        ap(&r, C::Car, Metric::Bev, Difficulty::Moderate, true),
        50.0
    );
    // exactly 40 px is kept for Easy (only `height < 40` is dropped) ...
    small.bbox[3] = small.bbox[1] + 40.0;
    let r = evaluate(&gt, &[vec![det(&a, 0.5), small]], &exact()).expect("eval");
    assert_eq!(ap(&r, C::Car, Metric::Bev, Difficulty::Easy, true), 50.0);
    // ... while a 40 px ground truth is not Easy (it must exceed 40 px): a
    // small detection on a small GT is then ignored, not a TP, for Easy
    let mut g = obj(C::Car, 8.0, 20.0);
    g.bbox[3] = g.bbox[1] + 30.0;
    let gt = vec![vec![a.clone(), g.clone()]];
    let r = evaluate(&gt, &[vec![det(&a, 0.5), det(&g, 0.9)]], &exact()).expect("eval");
    assert_eq!(r.class(C::Car).map(|c| c.num_gt), Some([1, 2, 2]));
    assert_all(&r, C::Car, true, 100.0);
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let g = obj(C::Car, 0.0, 20.0);
    assert!(matches!(
        evaluate(&[vec![]], &[], &EvalConfig::default()),
        Err(EvalError::FrameCount { gt: 1, dt: 0 })
    ));
    assert!(matches!(
        evaluate(&[vec![]], &[vec![g.clone()]], &EvalConfig::default()),
        Err(EvalError::MissingScore { frame: 0, index: 0 })
    ));
    assert!(matches!(
        evaluate(
            &[vec![]],
            &[vec![det(&g, f64::NAN)]],
            &EvalConfig::default()
        ),
        Err(EvalError::BadScore { .. })
    ));
    let cfg = EvalConfig {
        classes: vec![ClassConfig {
            class: C::Car,
            min_overlap: [0.7, 1.5, 0.7],
        }],
        ..exact()
    };
    assert!(matches!(
        evaluate(&[], &[], &cfg),
        Err(EvalError::Config(_))
    ));
    // degenerate boxes are just misses
    let mut bad = det(&g, 0.9);
    bad.dimensions = [-1.0, -1.0, -1.0];
    bad.bbox = [f64::NAN; 4];
    let r = evaluate(&[vec![g]], &[vec![bad]], &exact()).expect("eval");
    assert_all(&r, C::Car, true, 0.0);
}

#[test]
fn folders_and_printing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (gdir, ddir) = (dir.path().join("gt"), dir.path().join("dt"));
    std::fs::create_dir_all(&gdir).expect("mkdir");
    std::fs::create_dir_all(&ddir).expect("mkdir");
    let (gt, dt) = perfect(80);
    let mut ids = Vec::new();
    for (i, (g, d)) in gt.iter().zip(&dt).enumerate() {
        let id = format!("{i:06}");
        std::fs::write(gdir.join(format!("{id}.txt")), format_labels(g)).expect("write");
        std::fs::write(ddir.join(format!("{id}.txt")), format_labels(d)).expect("write");
        ids.push(id);
    }
    assert_eq!(ids_in_dir(&ddir).expect("ids"), ids);
    let r = evaluate_folders(&gdir, &ddir, &ids, &EvalConfig::default()).expect("eval");
    assert_all(&r, C::Car, true, 100.0);
    let text = r.to_string();
    assert!(
        text.contains("Car AP_R40@0.70, 0.70, 0.70:\nbbox AP:100.0000, 100.0000, 100.0000\n"),
        "{text}"
    );
    assert!(
        text.contains("Pedestrian AP@0.50, 0.50, 0.50:\nbbox AP:"),
        "{text}"
    );
    assert!(
        r.markdown_table()
            .contains("| Cyclist @ 0.50 | 3d | 100.0000 |"),
        "{}",
        r.markdown_table()
    );
    // a missing result file is an error naming it
    std::fs::remove_file(ddir.join("000003.txt")).expect("rm");
    let err = evaluate_folders(&gdir, &ddir, &ids, &EvalConfig::default()).expect_err("missing");
    assert!(err.to_string().contains("000003.txt"), "{err}");
    // ground truth without scores is not a detection file
    let err =
        evaluate_folders(&gdir, &gdir, &ids[..1], &EvalConfig::default()).expect_err("no score");
    assert!(matches!(err, EvalError::MissingScore { .. }), "{err}");
}
