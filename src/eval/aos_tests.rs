//! Hand-computed cases for the average orientation similarity (AOS).

use std::f64::consts::PI;

use super::tests::{det, exact, obj, perfect};
use super::*;
use crate::dataset::kitti::ObjectClass as C;

fn close(got: Option<f64>, want: f64, what: &str) {
    let got = got.unwrap_or_else(|| panic!("{what}: no AOS"));
    assert!((got - want).abs() < 1e-9, "{what}: {got} != {want}");
}

/// The worked example of docs/kitti_eval.md with angles: two Cars,
/// detections 0.9 (TP on car A, alpha exact), 0.8 (FP), 0.7 (TP on car B,
/// alpha off by π/2, similarity (1 + cos π/2)/2 = 1/2).
#[test]
fn aos_worked_example() {
    let (mut a, mut b) = (obj(C::Car, -8.0, 20.0), obj(C::Car, 8.0, 20.0));
    a.alpha = 0.3;
    b.alpha = -1.2;
    let fp = obj(C::Car, 0.0, 40.0);
    let mut db = det(&b, 0.7);
    db.alpha = b.alpha + PI / 2.0;
    let gt = vec![vec![a.clone(), b.clone()]];
    let dt = vec![vec![db, det(&fp, 0.8), det(&a, 0.9)]];
    // threshold 0.9: TP 1, FP 0, similarity 1   → 1
    // threshold 0.7: TP 2, FP 1, similarity 1.5 → 1.5 / 3 = 1/2
    // Exact: 1 up to recall 1/2, 1/2 above: R40 (20 + 20·½)/40 = 75 %,
    // R11 (6 + 5·½)/11 = 77.27 %
    let r = evaluate(&gt, &dt, &exact()).expect("eval");
    assert!(r.orientation);
    for d in DIFFICULTIES {
        close(r.aos(C::Car, d, true), 75.0, "exact R40");
        close(r.aos(C::Car, d, false), 8.5 / 11.0 * 100.0, "exact R11");
    }
    let bbox = &r.class(C::Car).expect("car").results[Metric::Bbox as usize][0];
    assert!((bbox.orientation[20] - 1.0).abs() < 1e-12 && (bbox.orientation[21] - 0.5).abs() < 1e-12);
    // AOS belongs to the 2D boxes only
    let bev = &r.class(C::Car).expect("car").results[Metric::Bev as usize][0];
    assert_eq!((bev.aos_r40, bev.aos_r11), (None, None));
    // Devkit: thresholds at samples 0 and 1 → [1, 1/2, 0, ...]:
    // R40 = (1/2)/40 = 1.25 %, R11 = 1/11 = 9.09 %
    let r = evaluate(&gt, &dt, &EvalConfig::default()).expect("eval");
    close(r.aos(C::Car, Difficulty::Easy, true), 0.5 / 40.0 * 100.0, "devkit R40");
    close(r.aos(C::Car, Difficulty::Hard, false), 100.0 / 11.0, "devkit R11");
    // a FP does not carry similarity, the TP's does: the same set with car B's
    // detection facing backwards (similarity 0) leaves only car A's 1 → 1 then 1/3
    let mut dt2 = dt.clone();
    dt2[0][0].alpha = b.alpha + PI;
    let r = evaluate(&gt, &dt2, &exact()).expect("eval");
    close(r.aos(C::Car, Difficulty::Moderate, true), (20.0 + 20.0 / 3.0) / 40.0 * 100.0, "backwards B");
}

#[test]
fn aos_of_perfect_turned_and_backward_detections() {
    let (gt, dt) = perfect(80);
    let turn = |by: f64| -> Vec<Vec<ObjectLabel>> {
        dt.iter()
            .map(|f| f.iter().map(|d| ObjectLabel { alpha: d.alpha + by, ..d.clone() }).collect())
            .collect()
    };
    let cfg = EvalConfig::default();
    for (by, want) in [(0.0, 100.0), (2.0 * PI, 100.0), (PI, 0.0), (PI / 3.0, 75.0), (-PI / 2.0, 50.0)] {
        let r = evaluate(&gt, &turn(by), &cfg).expect("eval");
        for c in [C::Car, C::Pedestrian, C::Cyclist] {
            for d in DIFFICULTIES {
                // AP is 100 whatever the angle; AOS = 100 · (1 + cos by) / 2
                assert!((r.ap(c, Metric::Bbox, d, true).unwrap() - 100.0).abs() < 1e-9);
                close(r.aos(c, d, true), want, &format!("{c} turned by {by}, R40"));
                close(r.aos(c, d, false), want, &format!("{c} turned by {by}, R11"));
            }
        }
    }
}

#[test]
fn aos_needs_alphas_and_is_printed_as_openpcdet_does() {
    let (gt, dt) = perfect(80);
    let r = evaluate(&gt, &dt, &EvalConfig::default()).expect("eval");
    let text = r.to_string();
    assert!(
        text.contains("3d   AP:100.0000, 100.0000, 100.0000\naos  AP:100.00, 100.00, 100.00\nCar AP_R40@"),
        "{text}"
    );
    assert_eq!(text.lines().filter(|l| l.starts_with("aos  AP:")).count(), 6, "{text}");
    assert!(r.markdown_table().contains("| Car @ 0.70 | aos | 100.0000 |"), "{}", r.markdown_table());
    // one detection without an observation angle (KITTI's −10): no AOS at all
    let mut dt = dt;
    dt[5][1].alpha = -10.0;
    let r = evaluate(&gt, &dt, &EvalConfig::default()).expect("eval");
    assert!(!r.orientation);
    assert_eq!(r.aos(C::Car, Difficulty::Easy, true), None);
    assert!(!r.to_string().contains("aos"), "{r}");
    assert!(!r.markdown_table().contains("| aos |"));
    // no valid ground truth: n/a, as for AP
    let r = evaluate(&[vec![]], &[vec![det(&obj(C::Car, 0.0, 20.0), 0.9)]], &EvalConfig::default()).expect("eval");
    assert_eq!(r.aos(C::Car, Difficulty::Easy, false), None);
    assert!(r.to_string().contains("aos  AP:n/a, n/a, n/a"), "{r}");
}
