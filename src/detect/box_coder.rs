//! Residual box coding (OpenPCDet `ResidualCoder`, `pcdet/utils/box_coder_utils.py`,
//! with `encode_angle_by_sincos = False`) and the direction-bin classifier
//! that pairs with it (`AnchorHeadTemplate.get_direction_target` and
//! `generate_predicted_boxes`).
//!
//! A box as a row is `[x, y, z, l, w, h, yaw]` (OpenPCDet's `code_size = 7`
//! order); `a` = anchor, `g` = ground truth, `t` = code,
//! `d = √(l_a² + w_a²)` the anchor's BEV diagonal:
//!
//! ```text
//! t_x = (x_g − x_a)/d     t_y = (y_g − y_a)/d     t_z = (z_g − z_a)/h_a
//! t_l = ln(l_g/l_a)       t_w = ln(w_g/w_a)       t_h = ln(h_g/h_a)
//! t_r = r_g − r_a                               (plain residual, not wrapped)
//! ```
//!
//! and decoding inverts it (`x = t_x d + x_a`, `l = exp(t_l) l_a`,
//! `r = t_r + r_a`), with the decoded yaw wrapped to (−π, π] as
//! [`Box3D`] requires. `z` is the geometric centre on both sides.
//!
//! The angle residual is trained with OpenPCDet's `add_sin_difference`
//! (the loss sees `sin(r_pred − r_target)`), which cannot tell `r` from
//! `r + π`. A direction classifier resolves that: with `num_bins` bins of
//! width `P = 2π / num_bins`, the target bin of a ground-truth heading is
//!
//! ```text
//! bin = clamp(floor(limit_period(r_g − dir_offset, 0, 2π) / P), 0, num_bins − 1)
//! ```
//!
//! and a decoded heading `r` with predicted bin `k` is restored to
//!
//! ```text
//! r' = limit_period(r − dir_offset, dir_limit_offset, P) + dir_offset + k P
//! ```
//!
//! where `limit_period(v, o, P) = v − floor(v/P + o) P` ∈ [−o P, (1 − o) P).
//! OpenPCDet's KITTI configs use `num_bins = 2` (P = π),
//! `dir_offset = 0.78539` (≈ π/4) and `dir_limit_offset = 0`
//! ([`DirectionBins::kitti`]). We wrap `r'` to (−π, π] (OpenPCDet leaves it
//! in [dir_offset, dir_offset + 2π)). Only `dir_limit_offset = 0` reduces the
//! angle the same way as the target bins (both to [0, P)); other values are
//! accepted because OpenPCDet accepts them, and restore `r` only up to ±P.
//!
//! Deviation: OpenPCDet clamps anchor and ground-truth sizes to ≥ 1e-5
//! before encoding; here a size that is not finite and > 0 is an error.
//! Run the tests: `cargo test --no-default-features --lib detect::box_coder`.

use crate::geometry::{wrap_angle, Box3D};
use std::f64::consts::PI;

/// Length of a box row and of a code: `[x, y, z, l, w, h, yaw]`.
pub const CODE_SIZE: usize = 7;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CoderError {
    #[error("{what} {index} is not a valid box (needs finite fields and l, w, h > 0): {values:?}")]
    InvalidBox { what: &'static str, index: usize, values: [f64; CODE_SIZE] },
    #[error("length mismatch: {anchors} anchors, {other} {what}")]
    LengthMismatch { anchors: usize, other: usize, what: &'static str },
    #[error("flat {what} slice of length {len} is not a multiple of {CODE_SIZE}")]
    NotRows { what: &'static str, len: usize },
    #[error("direction bins: {0}")]
    DirectionBins(String),
}

/// `[x, y, z, l, w, h, yaw]` of a box.
pub fn box_to_row(b: &Box3D) -> [f64; CODE_SIZE] {
    [b.center[0], b.center[1], b.center[2], b.size[0], b.size[1], b.size[2], b.yaw]
}

/// The box of a row `[x, y, z, l, w, h, yaw]`, yaw wrapped to (−π, π].
pub fn box_from_row(r: &[f64; CODE_SIZE]) -> Box3D {
    Box3D { center: [r[0], r[1], r[2]], size: [r[3], r[4], r[5]], yaw: wrap_angle(r[6]) }
}

fn check_box(b: &Box3D, what: &'static str, index: usize) -> Result<(), CoderError> {
    let row = box_to_row(b);
    let ok = row.iter().all(|v| v.is_finite()) && b.size.iter().all(|&s| s > 0.0);
    if ok { Ok(()) } else { Err(CoderError::InvalidBox { what, index, values: row }) }
}

/// Encodes `gt` relative to `anchor` (formulas in the module header).
pub fn encode(anchor: &Box3D, gt: &Box3D) -> Result<[f64; CODE_SIZE], CoderError> {
    check_box(anchor, "anchor", 0)?;
    check_box(gt, "ground truth", 0)?;
    Ok(encode_unchecked(anchor, gt))
}

fn encode_unchecked(a: &Box3D, g: &Box3D) -> [f64; CODE_SIZE] {
    let d = a.size[0].hypot(a.size[1]);
    [
        (g.center[0] - a.center[0]) / d,
        (g.center[1] - a.center[1]) / d,
        (g.center[2] - a.center[2]) / a.size[2],
        (g.size[0] / a.size[0]).ln(),
        (g.size[1] / a.size[1]).ln(),
        (g.size[2] / a.size[2]).ln(),
        g.yaw - a.yaw,
    ]
}

/// Decodes `code` relative to `anchor`; the yaw is wrapped to (−π, π].
/// Codes are network output and are not checked: non-finite codes give
/// non-finite boxes (which IoU and NMS treat as empty).
pub fn decode(anchor: &Box3D, code: &[f64; CODE_SIZE]) -> Result<Box3D, CoderError> {
    check_box(anchor, "anchor", 0)?;
    Ok(decode_unchecked(anchor, code))
}

fn decode_unchecked(a: &Box3D, t: &[f64; CODE_SIZE]) -> Box3D {
    let d = a.size[0].hypot(a.size[1]);
    Box3D {
        center: [t[0] * d + a.center[0], t[1] * d + a.center[1], t[2] * a.size[2] + a.center[2]],
        size: [t[3].exp() * a.size[0], t[4].exp() * a.size[1], t[5].exp() * a.size[2]],
        yaw: wrap_angle(t[6] + a.yaw),
    }
}

/// [`encode`] over matched pairs `anchors[i]` ↔ `gts[i]`.
pub fn encode_batch(anchors: &[Box3D], gts: &[Box3D]) -> Result<Vec<[f64; CODE_SIZE]>, CoderError> {
    if anchors.len() != gts.len() {
        return Err(CoderError::LengthMismatch { anchors: anchors.len(), other: gts.len(), what: "ground-truth boxes" });
    }
    let mut out = Vec::with_capacity(anchors.len());
    for (i, (a, g)) in anchors.iter().zip(gts).enumerate() {
        check_box(a, "anchor", i)?;
        check_box(g, "ground truth", i)?;
        out.push(encode_unchecked(a, g));
    }
    Ok(out)
}

/// [`decode`] over matched pairs `anchors[i]` ↔ `codes[i]`.
pub fn decode_batch(anchors: &[Box3D], codes: &[[f64; CODE_SIZE]]) -> Result<Vec<Box3D>, CoderError> {
    if anchors.len() != codes.len() {
        return Err(CoderError::LengthMismatch { anchors: anchors.len(), other: codes.len(), what: "codes" });
    }
    let mut out = Vec::with_capacity(anchors.len());
    for (i, (a, t)) in anchors.iter().zip(codes).enumerate() {
        check_box(a, "anchor", i)?;
        out.push(decode_unchecked(a, t));
    }
    Ok(out)
}

fn rows_f32<'a>(flat: &'a [f32], what: &'static str) -> Result<impl Iterator<Item = [f64; CODE_SIZE]> + 'a, CoderError> {
    if flat.len() % CODE_SIZE != 0 {
        return Err(CoderError::NotRows { what, len: flat.len() });
    }
    Ok(flat.chunks_exact(CODE_SIZE).map(|c| {
        let mut r = [0.0; CODE_SIZE];
        for (d, s) in r.iter_mut().zip(c) {
            *d = f64::from(*s);
        }
        r
    }))
}

/// Tensor-layout form of [`encode_batch`]: flat `f32` rows of 7 in
/// (`[N·7]`, as a `[N, 7]` tensor's data), computed in f64.
pub fn encode_batch_f32(anchors: &[f32], gts: &[f32]) -> Result<Vec<f32>, CoderError> {
    let a: Vec<Box3D> = rows_f32(anchors, "anchor")?.map(|r| row_box_raw(&r)).collect();
    let g: Vec<Box3D> = rows_f32(gts, "ground-truth")?.map(|r| row_box_raw(&r)).collect();
    Ok(encode_batch(&a, &g)?.iter().flatten().map(|&v| v as f32).collect())
}

/// Tensor-layout form of [`decode_batch`]: flat `f32` rows of 7 in and out
/// (yaw wrapped to (−π, π]).
pub fn decode_batch_f32(anchors: &[f32], codes: &[f32]) -> Result<Vec<f32>, CoderError> {
    let a: Vec<Box3D> = rows_f32(anchors, "anchor")?.map(|r| row_box_raw(&r)).collect();
    let t: Vec<[f64; CODE_SIZE]> = rows_f32(codes, "code")?.collect();
    Ok(decode_batch(&a, &t)?.iter().flat_map(box_to_row).map(|v| v as f32).collect())
}

/// A row as a box without wrapping the yaw (the residual uses it as given).
fn row_box_raw(r: &[f64; CODE_SIZE]) -> Box3D {
    Box3D { center: [r[0], r[1], r[2]], size: [r[3], r[4], r[5]], yaw: r[6] }
}

/// OpenPCDet's `limit_period`: `v − floor(v/P + offset)·P`, in
/// [−offset·P, (1 − offset)·P) for a period `P > 0`.
pub fn limit_period(val: f64, offset: f64, period: f64) -> f64 {
    val - (val / period + offset).floor() * period
}

/// The direction classifier's bins (see the module header).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DirectionBins {
    num_bins: usize,
    dir_offset: f64,
    dir_limit_offset: f64,
}

impl DirectionBins {
    /// `num_bins ≥ 1`, `dir_offset` finite, `dir_limit_offset` in [0, 1].
    pub fn new(num_bins: usize, dir_offset: f64, dir_limit_offset: f64) -> Result<Self, CoderError> {
        if num_bins == 0 {
            return Err(CoderError::DirectionBins("num_bins must be at least 1".into()));
        }
        if !dir_offset.is_finite() {
            return Err(CoderError::DirectionBins(format!("dir_offset must be finite, got {dir_offset}")));
        }
        if !(0.0..=1.0).contains(&dir_limit_offset) {
            return Err(CoderError::DirectionBins(format!("dir_limit_offset must be in [0, 1], got {dir_limit_offset}")));
        }
        Ok(DirectionBins { num_bins, dir_offset, dir_limit_offset })
    }

    /// OpenPCDet's KITTI setting: 2 bins, `dir_offset = 0.78539`, limit offset 0.
    pub fn kitti() -> Self {
        DirectionBins { num_bins: 2, dir_offset: 0.78539, dir_limit_offset: 0.0 }
    }

    pub fn num_bins(&self) -> usize {
        self.num_bins
    }

    /// Bin width `P = 2π / num_bins`.
    pub fn period(&self) -> f64 {
        2.0 * PI / self.num_bins as f64
    }

    /// The training target bin of a ground-truth heading (any real angle;
    /// a non-finite one gives bin 0).
    pub fn target_bin(&self, yaw_gt: f64) -> usize {
        let r = limit_period(yaw_gt - self.dir_offset, 0.0, 2.0 * PI);
        let bin = (r / self.period()).floor();
        if bin.is_finite() && bin > 0.0 { (bin as usize).min(self.num_bins - 1) } else { 0 }
    }

    /// Restores a decoded heading (known modulo `P`) with the predicted bin,
    /// wrapped to (−π, π]. A bin ≥ `num_bins` is taken modulo `num_bins`.
    pub fn restore_heading(&self, yaw_decoded: f64, bin: usize) -> f64 {
        let p = self.period();
        let r = limit_period(yaw_decoded - self.dir_offset, self.dir_limit_offset, p);
        wrap_angle(r + self.dir_offset + p * (bin % self.num_bins) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct XorShift(u64);
    impl XorShift {
        fn unit(&mut self) -> f64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
        }
        fn range(&mut self, lo: f64, hi: f64) -> f64 {
            lo + (hi - lo) * self.unit()
        }
        fn boxed(&mut self, yaw: f64) -> Box3D {
            Box3D {
                center: [self.range(-70.0, 70.0), self.range(-40.0, 40.0), self.range(-3.0, 1.0)],
                size: [self.range(0.3, 12.0), self.range(0.3, 3.0), self.range(0.5, 4.0)],
                yaw,
            }
        }
    }

    fn assert_same_box(a: &Box3D, b: &Box3D, tol: f64) {
        for k in 0..3 {
            assert!((a.center[k] - b.center[k]).abs() < tol, "{a:?} vs {b:?}");
            assert!((a.size[k] - b.size[k]).abs() < tol, "{a:?} vs {b:?}");
        }
        assert!(wrap_angle(a.yaw - b.yaw).abs() < tol, "{a:?} vs {b:?}");
        assert!(a.yaw > -PI && a.yaw <= PI);
    }

    #[test]
    fn hand_computed_code() {
        // anchor 3 × 4 footprint: d = 5
        let a = Box3D { center: [1.0, 2.0, -1.0], size: [3.0, 4.0, 2.0], yaw: 0.5 };
        let g = Box3D { center: [6.0, -8.0, 0.0], size: [6.0, 4.0, 1.0], yaw: -0.25 };
        let t = encode(&a, &g).unwrap();
        let want = [1.0, -2.0, 0.5, 2f64.ln(), 0.0, 0.5f64.ln(), -0.75];
        for (x, w) in t.iter().zip(want) {
            assert!((x - w).abs() < 1e-12, "{t:?}");
        }
        assert_same_box(&decode(&a, &t).unwrap(), &g, 1e-12);
    }

    #[test]
    fn round_trip_on_random_boxes() {
        let mut rng = XorShift(0x1234_5678_9ABC_DEF1);
        let near_pi = [PI, -PI + 1e-12, PI - 1e-12, -PI + 1e-7, PI - 1e-7];
        let mut anchors = Vec::new();
        let mut gts = Vec::new();
        for i in 0..2000 {
            let yaw_a = if i % 7 == 0 { near_pi[i % 5] } else { rng.range(-PI, PI) };
            let yaw_g = if i % 3 == 0 { near_pi[(i / 3) % 5] } else { rng.range(-PI, PI) };
            let a = rng.boxed(wrap_angle(yaw_a));
            let g = rng.boxed(wrap_angle(yaw_g));
            let back = decode(&a, &encode(&a, &g).unwrap()).unwrap();
            assert_same_box(&back, &g, 1e-9);
            anchors.push(a);
            gts.push(g);
        }
        let codes = encode_batch(&anchors, &gts).unwrap();
        let back = decode_batch(&anchors, &codes).unwrap();
        for (b, g) in back.iter().zip(&gts) {
            assert_same_box(b, g, 1e-9);
        }
    }

    #[test]
    fn f32_rows_round_trip() {
        let a = [10.0f32, 2.0, -1.0, 3.9, 1.6, 1.56, 1.5707964];
        let g = [10.5f32, 1.5, -0.8, 4.2, 1.7, 1.5, -3.1];
        let mut anchors = a.to_vec();
        anchors.extend_from_slice(&a);
        let mut gts = g.to_vec();
        gts.extend_from_slice(&a);
        let t = encode_batch_f32(&anchors, &gts).unwrap();
        assert_eq!(t.len(), 14);
        assert!(t[7..].iter().all(|v| v.abs() < 1e-6), "{t:?}");
        let back = decode_batch_f32(&anchors, &t).unwrap();
        for (x, y) in back[..6].iter().zip(&g[..6]) {
            assert!((x - y).abs() < 1e-5, "{back:?}");
        }
        assert!(wrap_angle(f64::from(back[6]) - f64::from(g[6])).abs() < 1e-5);
        assert!(encode_batch_f32(&anchors[..13], &gts).is_err());
        assert!(decode_batch_f32(&anchors, &t[..7]).is_err());
    }

    #[test]
    fn invalid_anchors_and_boxes_are_errors() {
        let good = Box3D { center: [0.0; 3], size: [3.9, 1.6, 1.56], yaw: 0.0 };
        let zero = Box3D { size: [0.0, 1.6, 1.56], ..good };
        let flat = Box3D { size: [3.9, 1.6, 0.0], ..good };
        let neg = Box3D { size: [3.9, -1.6, 1.56], ..good };
        let nan = Box3D { yaw: f64::NAN, ..good };
        for bad in [zero, flat, neg, nan] {
            assert!(encode(&bad, &good).is_err());
            assert!(encode(&good, &bad).is_err());
            assert!(decode(&bad, &[0.0; 7]).is_err());
        }
        assert!(matches!(
            encode_batch(&[good, zero], &[good, good]),
            Err(CoderError::InvalidBox { index: 1, .. })
        ));
        assert!(encode_batch(&[good], &[good, good]).is_err());
        assert!(decode_batch(&[good], &[]).is_err());
        // an absurd code decodes without panicking
        let b = decode(&good, &[0.0, 0.0, 0.0, 1e6, f64::NAN, 0.0, 0.0]).unwrap();
        assert!(b.size[0].is_infinite() && b.size[1].is_nan());
    }

    #[test]
    fn limit_period_matches_openpcdet() {
        assert!((limit_period(4.0, 0.5, PI) - (4.0 - PI)).abs() < 1e-12);
        assert!((limit_period(-0.1, 0.0, PI) - (PI - 0.1)).abs() < 1e-12);
        assert!((limit_period(0.3, 0.0, 2.0 * PI) - 0.3).abs() < 1e-12);
        assert!((limit_period(-7.0, 0.0, 2.0 * PI) - (-7.0 + 4.0 * PI)).abs() < 1e-12);
        let mut rng = XorShift(7);
        for _ in 0..1000 {
            let v = rng.range(-20.0, 20.0);
            for off in [0.0, 0.5, 1.0] {
                let r = limit_period(v, off, PI);
                assert!(r >= -off * PI - 1e-12 && r < (1.0 - off) * PI + 1e-12);
                assert!(((v - r) / PI - ((v - r) / PI).round()).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn direction_bins_restore_the_heading() {
        let bins = DirectionBins::kitti();
        assert_eq!(bins.num_bins(), 2);
        // hand cases: bin 0 covers headings in [off, off + π), bin 1 the rest
        assert_eq!(bins.target_bin(1.0), 0);
        assert_eq!(bins.target_bin(0.0), 1);
        assert_eq!(bins.target_bin(-2.0), 1);
        assert_eq!(bins.target_bin(3.0), 0);
        assert_eq!(bins.target_bin(f64::NAN), 0);
        let mut rng = XorShift(99);
        for nb in [1usize, 2, 3, 4] {
            let bins = DirectionBins::new(nb, 0.78539, 0.0).unwrap();
            let p = bins.period();
            for _ in 0..2000 {
                let g = rng.range(-PI, PI);
                // skip headings within rounding of a bin edge
                let edge = limit_period(g - 0.78539, 0.0, p);
                if edge < 1e-9 || p - edge < 1e-9 {
                    continue;
                }
                let bin = bins.target_bin(g);
                assert!(bin < nb);
                // the regression only knows the heading modulo P
                let k = (rng.range(-3.0, 3.0)).round();
                let r = bins.restore_heading(g + k * p, bin);
                assert!(wrap_angle(r - g).abs() < 1e-9, "bins {nb} g {g} k {k} r {r}");
                assert!(r > -PI && r <= PI);
            }
        }
        assert!(DirectionBins::new(0, 0.0, 0.0).is_err());
        assert!(DirectionBins::new(2, f64::NAN, 0.0).is_err());
        assert!(DirectionBins::new(2, 0.0, 1.5).is_err());
    }
}
