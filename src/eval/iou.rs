//! The three overlap measures of the KITTI benchmark, on camera-frame labels
//! ([`ObjectLabel`]) as the devkit computes them.
//!
//! * image: axis-aligned `[x1, y1, x2, y2]` boxes, IoU or (for DontCare
//!   regions) the fraction of the first box's area that is covered;
//! * BEV: the rotated rectangle in the camera x/z plane (centre `(x, z)`,
//!   length `l` along the heading `(cos ry, -sin ry)`, width `w`), as the
//!   devkit's `toPolygon` and OpenPCDet's `rotate_iou`;
//! * 3D: BEV intersection times the overlap along camera y, where a box spans
//!   `[y - h, y]` (y is the bottom and points down).
//!
//! This is a private copy, independent of `detect::iou` (which works on
//! LiDAR-frame [`crate::geometry::Box3D`]s); the two may be merged later.

use crate::dataset::kitti::ObjectLabel;

/// Overlap of two image boxes `[x1, y1, x2, y2]`: IoU, or with
/// `of_first_area` the intersection over the first box's area (the devkit's
/// criterion 0, used for DontCare regions). Degenerate boxes give 0.
pub(crate) fn image_overlap(a: &[f64; 4], b: &[f64; 4], of_first_area: bool) -> f64 {
    let w = a[2].min(b[2]) - a[0].max(b[0]);
    let h = a[3].min(b[3]) - a[1].max(b[1]);
    if !(w > 0.0 && h > 0.0) {
        return 0.0;
    }
    let inter = w * h;
    let area_a = (a[2] - a[0]) * (a[3] - a[1]);
    let area_b = (b[2] - b[0]) * (b[3] - b[1]);
    let denom = if of_first_area {
        area_a
    } else {
        area_a + area_b - inter
    };
    ratio(inter, denom)
}

/// `num / den`, 0 when the denominator is not positive or the result not finite.
fn ratio(num: f64, den: f64) -> f64 {
    let r = num / den;
    if den > 0.0 && r.is_finite() {
        r.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// A rotated rectangle in a plane: centre, length (along the heading), width,
/// heading angle with the devkit's rotation `u' = cos·u + sin·v`, `v' = -sin·u + cos·v`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rect {
    pub cx: f64,
    pub cy: f64,
    pub l: f64,
    pub w: f64,
    pub angle: f64,
}

impl Rect {
    /// The BEV footprint of a KITTI label: camera (x, z), length, width, rotation_y.
    pub fn bev_of(label: &ObjectLabel) -> Self {
        let [_h, w, l] = label.dimensions;
        Self {
            cx: label.location[0],
            cy: label.location[2],
            l,
            w,
            angle: label.rotation_y,
        }
    }

    fn area(&self) -> f64 {
        self.l * self.w
    }

    fn valid(&self) -> bool {
        self.l > 0.0
            && self.w > 0.0
            && [self.cx, self.cy, self.l, self.w, self.angle]
                .iter()
                .all(|v| v.is_finite())
    }

    /// Corners counter-clockwise (positive signed area): the rotation has
    /// determinant 1, so it keeps the local order's orientation.
    fn corners(&self) -> [[f64; 2]; 4] {
        let (s, c) = self.angle.sin_cos();
        let (hl, hw) = (self.l / 2.0, self.w / 2.0);
        [(hl, hw), (-hl, hw), (-hl, -hw), (hl, -hw)]
            .map(|(u, v)| [self.cx + c * u + s * v, self.cy - s * u + c * v])
    }
}

fn cross(o: [f64; 2], a: [f64; 2], b: [f64; 2]) -> f64 {
    (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])
}

/// Area of the intersection of two rotated rectangles (Sutherland–Hodgman
/// clipping of one convex polygon by the other), 0 for degenerate input.
pub(crate) fn rect_intersection(a: &Rect, b: &Rect) -> f64 {
    if !(a.valid() && b.valid()) {
        return 0.0;
    }
    let clip = b.corners();
    let mut poly: Vec<[f64; 2]> = a.corners().to_vec();
    for k in 0..4 {
        if poly.is_empty() {
            return 0.0;
        }
        let (e0, e1) = (clip[k], clip[(k + 1) % 4]);
        let input = std::mem::take(&mut poly);
        for (idx, &cur) in input.iter().enumerate() {
            let prev = input[(idx + input.len() - 1) % input.len()];
            let (dc, dp) = (cross(e0, e1, cur), cross(e0, e1, prev));
            if dc >= 0.0 {
                if dp < 0.0 {
                    poly.push(intersect(prev, cur, dp, dc));
                }
                poly.push(cur);
            } else if dp >= 0.0 {
                poly.push(intersect(prev, cur, dp, dc));
            }
        }
    }
    // shoelace; the clipped polygon keeps the counter-clockwise order
    let n = poly.len();
    if n < 3 {
        return 0.0;
    }
    let twice: f64 = (0..n)
        .map(|i| {
            let (p, q) = (poly[i], poly[(i + 1) % n]);
            p[0] * q[1] - q[0] * p[1]
        })
        .sum();
    (twice / 2.0).abs().min(a.area()).min(b.area())
}

/// The point on segment p→q where the signed distance (dp at p, dq at q) is 0.
fn intersect(p: [f64; 2], q: [f64; 2], dp: f64, dq: f64) -> [f64; 2] {
    let t = dp / (dp - dq);
    [p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])]
}

/// IoU of two rotated rectangles.
pub(crate) fn rect_iou(a: &Rect, b: &Rect) -> f64 {
    let inter = rect_intersection(a, b);
    ratio(inter, a.area() + b.area() - inter)
}

/// Bird's-eye-view IoU of two KITTI labels (camera x/z plane, rotation_y).
pub(crate) fn bev_iou(a: &ObjectLabel, b: &ObjectLabel) -> f64 {
    rect_iou(&Rect::bev_of(a), &Rect::bev_of(b))
}

/// 3D IoU of two KITTI labels: BEV intersection × overlap of `[y - h, y]`.
pub(crate) fn iou_3d(a: &ObjectLabel, b: &ObjectLabel) -> f64 {
    let (ha, hb) = (a.dimensions[0], b.dimensions[0]);
    if !(ha > 0.0 && hb > 0.0) {
        return 0.0;
    }
    let (ya, yb) = (a.location[1], b.location[1]);
    let dy = ya.min(yb) - (ya - ha).max(yb - hb);
    if !(dy > 0.0) {
        return 0.0;
    }
    let (ra, rb) = (Rect::bev_of(a), Rect::bev_of(b));
    let inter = rect_intersection(&ra, &rb) * dy;
    ratio(inter, ra.area() * ha + rb.area() * hb - inter)
}
