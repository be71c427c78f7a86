//! Exact rotated IoU of two [`Box3D`]s, in bird's-eye view (BEV) and in 3D.
//!
//! Conventions are those of [`crate::geometry`]: LiDAR frame (x forward,
//! y left, z up), `center` = geometric centre, `size` = [l, w, h], `yaw`
//! about +z. The BEV footprint of a box is the rectangle of its first four
//! [`Box3D::corners`], listed counter-clockwise seen from above.
//!
//! Formulas:
//! - BEV intersection area `I_bev`: the footprint of `a` is clipped by the
//!   four edge half-planes of the footprint of `b` (Sutherland–Hodgman; both
//!   polygons are convex, so the result is their exact intersection polygon),
//!   and its area is taken with the shoelace formula
//!   `A = ½ |Σ (x_i y_{i+1} − x_{i+1} y_i)|`.
//! - `IoU_bev = I_bev / (l_a w_a + l_b w_b − I_bev)`.
//! - `IoU_3d = I_bev · dz / (V_a + V_b − I_bev · dz)`, with the z overlap
//!   `dz = max(0, min(top_a, top_b) − max(bottom_a, bottom_b))` and
//!   `V = l w h` (as OpenPCDet's `boxes_iou3d_gpu`).
//!
//! Degenerate input never yields NaN: a box with a non-finite field or a
//! length/width (and, for 3D, height) that is not strictly positive has IoU 0
//! with everything, itself included. Boxes whose circumscribed circles do
//! not meet are rejected before clipping (exactly 0, and cheap for the
//! anchors × ground-truth matrices of target assignment).
//!
//! Matrices are row-major: `m[i * b.len() + j] = iou(a[i], b[j])`.
//! Run the tests: `cargo test --no-default-features --lib detect::iou`.

use crate::geometry::Box3D;

/// Most vertices a clipped polygon can have: each of the four clipping steps
/// at most doubles the count (convex input gives at most n + 1, the bound
/// also covers rounding), 4 · 2⁴ = 64.
const MAX_VERTS: usize = 64;

/// A polygon in a fixed buffer, so that clipping does not allocate.
#[derive(Clone, Copy)]
struct Poly {
    pts: [[f64; 2]; MAX_VERTS],
    n: usize,
}

impl Poly {
    fn empty() -> Self {
        Poly { pts: [[0.0; 2]; MAX_VERTS], n: 0 }
    }

    fn push(&mut self, p: [f64; 2]) {
        if self.n < MAX_VERTS {
            self.pts[self.n] = p;
            self.n += 1;
        }
    }

    fn as_slice(&self) -> &[[f64; 2]] {
        &self.pts[..self.n]
    }
}

/// True when every field is finite and length and width are > 0.
fn valid_bev(b: &Box3D) -> bool {
    let finite = b.center.iter().chain(b.size.iter()).all(|v| v.is_finite()) && b.yaw.is_finite();
    finite && b.size[0] > 0.0 && b.size[1] > 0.0
}

/// The BEV footprint, counter-clockwise seen from above (+z).
fn footprint(b: &Box3D) -> [[f64; 2]; 4] {
    let c = b.corners();
    [[c[0][0], c[0][1]], [c[1][0], c[1][1]], [c[2][0], c[2][1]], [c[3][0], c[3][1]]]
}

/// Shoelace area (absolute value) of a simple polygon.
fn polygon_area(p: &[[f64; 2]]) -> f64 {
    if p.len() < 3 {
        return 0.0;
    }
    let mut twice = 0.0;
    for i in 0..p.len() {
        let [x0, y0] = p[i];
        let [x1, y1] = p[(i + 1) % p.len()];
        twice += x0 * y1 - x1 * y0;
    }
    (twice / 2.0).abs()
}

/// One Sutherland–Hodgman step: keeps the part of `input` on the left of (or
/// on) the directed line `a → b`, i.e. inside a counter-clockwise polygon.
fn clip_half_plane(input: &Poly, a: [f64; 2], b: [f64; 2], out: &mut Poly) {
    out.n = 0;
    if input.n == 0 {
        return;
    }
    // side(p) > 0: p is left of a→b; proportional to the distance to the line
    let side = |p: [f64; 2]| (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0]);
    // the crossing point of segment p→q with the line, from the two sides
    let cross = |p: [f64; 2], q: [f64; 2], sp: f64, sq: f64| {
        let t = sp / (sp - sq);
        [p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])]
    };
    let mut prev = input.pts[input.n - 1];
    let mut s_prev = side(prev);
    for &cur in input.as_slice() {
        let s_cur = side(cur);
        if s_cur >= 0.0 {
            if s_prev < 0.0 {
                out.push(cross(prev, cur, s_prev, s_cur));
            }
            out.push(cur);
        } else if s_prev >= 0.0 {
            out.push(cross(prev, cur, s_prev, s_cur));
        }
        prev = cur;
        s_prev = s_cur;
    }
}

/// Area of the intersection of the BEV footprints of `a` and `b` (m²);
/// 0 for invalid boxes (see the module header).
pub fn bev_intersection_area(a: &Box3D, b: &Box3D) -> f64 {
    if !valid_bev(a) || !valid_bev(b) {
        return 0.0;
    }
    // circumscribed circles apart → no overlap
    let ra = 0.5 * a.size[0].hypot(a.size[1]);
    let rb = 0.5 * b.size[0].hypot(b.size[1]);
    let d = (a.center[0] - b.center[0]).hypot(a.center[1] - b.center[1]);
    if d > ra + rb {
        return 0.0;
    }
    let mut cur = Poly::empty();
    for p in footprint(a) {
        cur.push(p);
    }
    let clip = footprint(b);
    let mut next = Poly::empty();
    for i in 0..4 {
        clip_half_plane(&cur, clip[i], clip[(i + 1) % 4], &mut next);
        std::mem::swap(&mut cur, &mut next);
        if cur.n == 0 {
            return 0.0;
        }
    }
    // the intersection cannot exceed either footprint; clamp rounding only
    polygon_area(cur.as_slice()).min(a.size[0] * a.size[1]).min(b.size[0] * b.size[1])
}

/// Rotated BEV IoU in [0, 1]; 0 for invalid boxes.
pub fn iou_bev(a: &Box3D, b: &Box3D) -> f64 {
    let inter = bev_intersection_area(a, b);
    if inter <= 0.0 {
        return 0.0;
    }
    let union = a.size[0] * a.size[1] + b.size[0] * b.size[1] - inter;
    if union > 0.0 { (inter / union).clamp(0.0, 1.0) } else { 0.0 }
}

/// Overlap of the z extents of `a` and `b` (m), ≥ 0.
fn z_overlap(a: &Box3D, b: &Box3D) -> f64 {
    let top = (a.center[2] + a.size[2] / 2.0).min(b.center[2] + b.size[2] / 2.0);
    let bottom = (a.center[2] - a.size[2] / 2.0).max(b.center[2] - b.size[2] / 2.0);
    (top - bottom).max(0.0)
}

/// Rotated 3D IoU in [0, 1]: BEV intersection × z overlap over the union
/// volume; 0 for invalid boxes (including a height that is not > 0).
pub fn iou_3d(a: &Box3D, b: &Box3D) -> f64 {
    if !(a.size[2] > 0.0 && b.size[2] > 0.0) {
        return 0.0;
    }
    let dz = z_overlap(a, b);
    if dz <= 0.0 {
        return 0.0;
    }
    let inter = bev_intersection_area(a, b) * dz;
    if inter <= 0.0 {
        return 0.0;
    }
    let vol = |x: &Box3D| x.size[0] * x.size[1] * x.size[2];
    let union = vol(a) + vol(b) - inter;
    if union > 0.0 { (inter / union).clamp(0.0, 1.0) } else { 0.0 }
}

/// Pairwise BEV IoU, row-major `a.len() × b.len()`.
pub fn iou_bev_matrix(a: &[Box3D], b: &[Box3D]) -> Vec<f64> {
    pairwise(a, b, iou_bev)
}

/// Pairwise 3D IoU, row-major `a.len() × b.len()`.
pub fn iou_3d_matrix(a: &[Box3D], b: &[Box3D]) -> Vec<f64> {
    pairwise(a, b, iou_3d)
}

fn pairwise(a: &[Box3D], b: &[Box3D], f: fn(&Box3D, &Box3D) -> f64) -> Vec<f64> {
    let mut m = Vec::with_capacity(a.len() * b.len());
    for x in a {
        for y in b {
            m.push(f(x, y));
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::{FRAC_PI_2, FRAC_PI_4, PI};

    fn bx(x: f64, y: f64, z: f64, l: f64, w: f64, h: f64, yaw: f64) -> Box3D {
        Box3D { center: [x, y, z], size: [l, w, h], yaw }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn identical_boxes_have_iou_one() {
        for yaw in [0.0, 0.3, FRAC_PI_2, -2.9, PI] {
            let b = bx(5.0, -3.0, -1.0, 3.9, 1.6, 1.56, yaw);
            assert!(close(iou_bev(&b, &b), 1.0), "yaw {yaw}: {}", iou_bev(&b, &b));
            assert!(close(iou_3d(&b, &b), 1.0));
        }
    }

    #[test]
    fn disjoint_boxes_have_iou_zero() {
        let a = bx(0.0, 0.0, 0.0, 2.0, 2.0, 2.0, 0.0);
        let b = bx(10.0, 0.0, 0.0, 2.0, 2.0, 2.0, 0.7);
        // circumscribed circles meet, footprints do not (diamond beside a square)
        let c = bx(2.6, 0.0, 0.0, 2.0, 2.0, 2.0, FRAC_PI_4);
        for o in [b, c] {
            assert_eq!(iou_bev(&a, &o), 0.0);
            assert_eq!(iou_3d(&a, &o), 0.0);
        }
    }

    #[test]
    fn squares_offset_by_one_have_iou_one_third() {
        let a = bx(0.0, 0.0, 0.0, 2.0, 2.0, 1.0, 0.0);
        let b = bx(1.0, 0.0, 0.0, 2.0, 2.0, 1.0, 0.0);
        // intersection 1 × 2 = 2, union 4 + 4 − 2 = 6
        assert!(close(bev_intersection_area(&a, &b), 2.0));
        assert!(close(iou_bev(&a, &b), 1.0 / 3.0));
        assert!(close(iou_3d(&a, &b), 1.0 / 3.0));
        // the same pair turned by 90° about a common centre, yaw also 90°
        let a2 = bx(0.0, 0.0, 0.0, 2.0, 2.0, 1.0, FRAC_PI_2);
        let b2 = bx(0.0, 1.0, 0.0, 2.0, 2.0, 1.0, FRAC_PI_2);
        assert!(close(iou_bev(&a2, &b2), 1.0 / 3.0));
    }

    #[test]
    fn square_and_its_45_degree_rotation() {
        // Unit squares about the same centre: the intersection is a regular
        // octagon of inradius r = 1/2, area 8 r² tan(π/8) = 2(√2 − 1);
        // union = 2 − 2(√2 − 1), so IoU = (√2 − 1)/(2 − √2) = 1/√2.
        let a = bx(1.0, 2.0, 0.0, 1.0, 1.0, 1.0, 0.0);
        let b = bx(1.0, 2.0, 0.0, 1.0, 1.0, 1.0, FRAC_PI_4);
        let inter = 2.0 * (2f64.sqrt() - 1.0);
        assert!(close(bev_intersection_area(&a, &b), inter));
        assert!(close(bev_intersection_area(&b, &a), inter));
        assert!(close(iou_bev(&a, &b), 1.0 / 2f64.sqrt()));
    }

    #[test]
    fn contained_box_iou_is_area_ratio() {
        let outer = bx(0.0, 0.0, 0.0, 4.0, 4.0, 2.0, 0.2);
        let inner = bx(0.3, -0.2, 0.0, 1.0, 2.0, 1.0, 1.1);
        assert!(close(bev_intersection_area(&outer, &inner), 2.0));
        assert!(close(iou_bev(&outer, &inner), 2.0 / 16.0));
        assert!(close(iou_bev(&inner, &outer), 2.0 / 16.0));
        // 3D: inner volume 2, outer 32
        assert!(close(iou_3d(&outer, &inner), 2.0 / 32.0));
    }

    #[test]
    fn partial_z_overlap_in_3d() {
        // same footprint 2 × 2, heights 2: z in [-1, 1] and [0, 2] → overlap 1
        let a = bx(0.0, 0.0, 0.0, 2.0, 2.0, 2.0, 0.4);
        let b = bx(0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 0.4);
        assert!(close(iou_bev(&a, &b), 1.0));
        // inter 4 · 1 = 4, union 8 + 8 − 4 = 12
        assert!(close(iou_3d(&a, &b), 1.0 / 3.0));
        // plus a BEV offset of 1 in x (along the heading-free square): BEV inter 2
        let c = bx(1.0, 0.0, 1.0, 2.0, 2.0, 2.0, 0.0);
        let d = bx(0.0, 0.0, 0.0, 2.0, 2.0, 2.0, 0.0);
        assert!(close(iou_3d(&c, &d), 2.0 / 14.0));
        // stacked without overlap
        let e = bx(0.0, 0.0, 2.0, 2.0, 2.0, 2.0, 0.4);
        assert_eq!(iou_3d(&a, &e), 0.0);
    }

    #[test]
    fn touching_edges_and_corners_give_zero() {
        let a = bx(0.0, 0.0, 0.0, 2.0, 2.0, 2.0, 0.0);
        let edge = bx(2.0, 0.0, 0.0, 2.0, 2.0, 2.0, 0.0);
        let corner = bx(2.0, 2.0, 0.0, 2.0, 2.0, 2.0, 0.0);
        let face_z = bx(0.0, 0.0, 2.0, 2.0, 2.0, 2.0, 0.0);
        for o in [edge, corner] {
            assert!(iou_bev(&a, &o).abs() < 1e-12, "{}", iou_bev(&a, &o));
            assert!(iou_3d(&a, &o).abs() < 1e-12);
        }
        assert_eq!(iou_3d(&a, &face_z), 0.0);
    }

    #[test]
    fn degenerate_boxes_give_zero_not_nan() {
        let a = bx(0.0, 0.0, 0.0, 2.0, 2.0, 2.0, 0.0);
        let zero = bx(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
        let flat_l = bx(0.0, 0.0, 0.0, 0.0, 2.0, 2.0, 0.0);
        let flat_h = bx(0.0, 0.0, 0.0, 2.0, 2.0, 0.0, 0.0);
        let negative = bx(0.0, 0.0, 0.0, -2.0, 2.0, 2.0, 0.0);
        let nan = bx(f64::NAN, 0.0, 0.0, 2.0, 2.0, 2.0, 0.0);
        let inf = bx(0.0, 0.0, 0.0, f64::INFINITY, 2.0, 2.0, 0.0);
        for d in [zero, flat_l, negative, nan, inf] {
            assert_eq!(iou_bev(&a, &d), 0.0);
            assert_eq!(iou_bev(&d, &a), 0.0);
            assert_eq!(iou_bev(&d, &d), 0.0);
            assert_eq!(iou_3d(&a, &d), 0.0);
        }
        // zero height: a BEV footprint exists, the 3D box does not
        assert!(close(iou_bev(&a, &flat_h), 1.0));
        assert_eq!(iou_3d(&a, &flat_h), 0.0);
        assert_eq!(iou_3d(&flat_h, &flat_h), 0.0);
    }

    #[test]
    fn iou_is_symmetric_and_rigid_motion_invariant() {
        let a = bx(0.0, 0.0, 0.0, 4.0, 1.5, 1.0, 0.3);
        let b = bx(0.8, 0.5, 0.2, 3.0, 2.0, 1.2, -0.9);
        let base = iou_3d(&a, &b);
        assert!(base > 0.0 && base < 1.0);
        assert!(close(iou_3d(&b, &a), base));
        // rotate both about the origin by t and translate
        let t = 2.4f64;
        let (s, c) = t.sin_cos();
        let mv = |x: &Box3D| {
            let [px, py, pz] = x.center;
            Box3D {
                center: [c * px - s * py + 7.0, s * px + c * py - 3.0, pz],
                size: x.size,
                yaw: crate::geometry::wrap_angle(x.yaw + t),
            }
        };
        assert!(close(iou_3d(&mv(&a), &mv(&b)), base));
    }

    #[test]
    fn matrix_is_row_major() {
        let a = [bx(0.0, 0.0, 0.0, 2.0, 2.0, 1.0, 0.0), bx(50.0, 0.0, 0.0, 2.0, 2.0, 1.0, 0.0)];
        let b = [
            bx(1.0, 0.0, 0.0, 2.0, 2.0, 1.0, 0.0),
            bx(0.0, 0.0, 0.0, 2.0, 2.0, 1.0, 0.0),
            bx(50.0, 0.0, 0.0, 2.0, 2.0, 1.0, 0.0),
        ];
        let m = iou_bev_matrix(&a, &b);
        assert_eq!(m.len(), 6);
        let want = [1.0 / 3.0, 1.0, 0.0, 0.0, 0.0, 1.0];
        for (got, w) in m.iter().zip(want) {
            assert!(close(*got, w), "{m:?}");
        }
        let m3 = iou_3d_matrix(&a, &b);
        assert!(close(m3[0], 1.0 / 3.0) && close(m3[5], 1.0));
        assert!(iou_bev_matrix(&[], &b).is_empty());
    }
}
