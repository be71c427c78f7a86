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
//! The rotated-rectangle geometry is `detect::iou`'s: a camera-frame label
//! maps exactly onto a [`Box3D`] in the (x, z) plane with yaw −rotation_y,
//! and height along −y.

use crate::dataset::kitti::ObjectLabel;
use crate::detect::iou as box_iou;
use crate::geometry::Box3D;

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

    /// The same rectangle as a box whose corners `(cx + c·u - s'·v, cy + s'·u + c·v)`
    /// with s' = sin(−angle) are the devkit's `(cx + c·u + s·v, cy − s·u + c·v)`;
    /// `vertical` is [centre, height] along the up axis (0-height for BEV use).
    fn to_box(self, vertical: [f64; 2]) -> Box3D {
        Box3D { center: [self.cx, self.cy, vertical[0]], size: [self.l, self.w, vertical[1]], yaw: -self.angle }
    }
}

/// IoU of two rotated rectangles.
pub(crate) fn rect_iou(a: &Rect, b: &Rect) -> f64 {
    box_iou::iou_bev(&a.to_box([0.0, 1.0]), &b.to_box([0.0, 1.0]))
}

/// Bird's-eye-view IoU of two KITTI labels (camera x/z plane, rotation_y).
pub(crate) fn bev_iou(a: &ObjectLabel, b: &ObjectLabel) -> f64 {
    rect_iou(&Rect::bev_of(a), &Rect::bev_of(b))
}

/// 3D IoU of two KITTI labels: BEV intersection × overlap of `[y - h, y]`
/// (camera y points down: the box spans `[-y, -y + h]` upwards).
pub(crate) fn iou_3d(a: &ObjectLabel, b: &ObjectLabel) -> f64 {
    let up = |l: &ObjectLabel| [-l.location[1] + l.dimensions[0] / 2.0, l.dimensions[0]];
    box_iou::iou_3d(&Rect::bev_of(a).to_box(up(a)), &Rect::bev_of(b).to_box(up(b)))
}
