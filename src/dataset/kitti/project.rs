//! The 2D image box of a 3D box, as KITTI's `label_2` boxes are drawn, and
//! the truncation that goes with it.

use super::Calibration;
use crate::geometry::Box3D;

/// Parts of a box closer to the camera than this (camera-frame z, metres)
/// are cut off before projecting: nearer points project arbitrarily far out,
/// points behind the camera project mirrored.
pub const NEAR_PLANE_M: f64 = 0.1;

/// The 12 edges of [`Box3D::corners`]: bottom face, top face, verticals.
const EDGES: [(usize, usize); 12] =
    [(0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4), (0, 4), (1, 5), (2, 6), (3, 7)];

/// A 3D box's footprint in the image (all boxes `[x1, y1, x2, y2]`, pixels).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProjectedBox {
    /// The footprint clipped to the image, `[0, width-1] x [0, height-1]` as
    /// KITTI's labels are (their boxes end at 1241 and 374 for 1242 x 375).
    pub bbox_clipped: [f64; 4],
    /// The whole footprint, possibly beyond the image.
    pub bbox_unclipped: [f64; 4],
    /// `1 - area(clipped) / area(unclipped)`, in [0, 1].
    pub truncation: f64,
}

/// Projects LiDAR-frame box `b` into the left colour image (`P2`) of a
/// `width` x `height` camera. `None` when nothing of the box lies in front of
/// the near plane or its footprint misses the image.
///
/// The footprint is the bounding rectangle of the projected box, i.e. of its
/// 8 corners when it is wholly in front of the camera. A box that crosses the
/// near plane [`NEAR_PLANE_M`] is first cut by it: the clipped solid's
/// vertices are the corners in front plus the points where the 12 edges cross
/// the plane, so its footprint is exact (a convex solid stays convex under
/// projection in front of the camera), where dropping the corners behind
/// would shrink the box toward its far end.
///
/// Truncation approximates KITTI's (annotators estimated the fraction of the
/// object outside the image) by the fraction of the footprint rectangle's
/// area outside the image: exact for a box seen face-on, somewhat high for a
/// box seen diagonally, whose footprint has empty corners. On KITTI frame
/// 000008 it gives 0.881 and 0.339 for the two cars annotated 0.88 and 0.34.
pub fn project_box_to_image(b: &Box3D, calib: &Calibration, width: u32, height: u32) -> Option<ProjectedBox> {
    let cam = b.corners().map(|c| calib.lidar_to_cam(c));
    let mut vertices: Vec<[f64; 3]> = cam.iter().copied().filter(|c| c[2] >= NEAR_PLANE_M).collect();
    for (i, j) in EDGES {
        let (a, e) = (cam[i], cam[j]);
        if (a[2] >= NEAR_PLANE_M) != (e[2] >= NEAR_PLANE_M) {
            let t = (NEAR_PLANE_M - a[2]) / (e[2] - a[2]);
            vertices.push([a[0] + t * (e[0] - a[0]), a[1] + t * (e[1] - a[1]), NEAR_PLANE_M]);
        }
    }
    let mut unclipped = [f64::INFINITY, f64::INFINITY, f64::NEG_INFINITY, f64::NEG_INFINITY];
    for v in &vertices {
        let [u, w] = calib.cam_to_image(*v)?;
        unclipped = [unclipped[0].min(u), unclipped[1].min(w), unclipped[2].max(u), unclipped[3].max(w)];
    }
    let area = |r: &[f64; 4]| (r[2] - r[0]) * (r[3] - r[1]);
    let whole = area(&unclipped);
    // Empty `vertices` leaves the infinities, whose "area" is NaN: rejected here too.
    if !(whole > 0.0 && whole.is_finite()) {
        return None;
    }
    let (max_u, max_v) = (f64::from(width.max(1) - 1), f64::from(height.max(1) - 1));
    let clipped = [unclipped[0].max(0.0), unclipped[1].max(0.0), unclipped[2].min(max_u), unclipped[3].min(max_v)];
    if !(clipped[2] > clipped[0] && clipped[3] > clipped[1]) {
        return None;
    }
    let truncation = (1.0 - area(&clipped) / whole).clamp(0.0, 1.0);
    Some(ProjectedBox { bbox_clipped: clipped, bbox_unclipped: unclipped, truncation })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ideal camera 1 unit behind nothing: camera z = LiDAR x, camera x =
    /// -LiDAR y, camera y = -LiDAR z, f = 100 px, principal point (50, 50).
    fn ideal() -> Calibration {
        let text = "P2: 100 0 50 0 0 100 50 0 0 0 1 0\nR0_rect: 1 0 0 0 1 0 0 0 1\n\
                    Tr_velo_to_cam: 0 -1 0 0 0 0 -1 0 1 0 0 0\n";
        Calibration::parse(text).expect("valid")
    }

    #[test]
    fn box_in_front_projects_its_corners() {
        // Face-on 2 m cube at 10 m: x from 9 to 11, y and z from -1 to 1.
        let b = Box3D { center: [10.0, 0.0, 0.0], size: [2.0, 2.0, 2.0], yaw: 0.0 };
        let p = project_box_to_image(&b, &ideal(), 101, 101).expect("visible");
        // nearest face at 9 m: ±1 m → ±100/9 px
        let e = 100.0 / 9.0;
        let want = [50.0 - e, 50.0 - e, 50.0 + e, 50.0 + e];
        assert!(p.bbox_unclipped.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-9), "{p:?}");
        assert_eq!(p.bbox_clipped, p.bbox_unclipped);
        assert_eq!(p.truncation, 0.0);
    }

    #[test]
    fn box_across_the_image_border_is_truncated() {
        // Centred on the left image edge (u = 0 at camera x = -5 m at 10 m).
        let b = Box3D { center: [10.0, 5.0, 0.0], size: [0.02, 2.0, 2.0], yaw: 0.0 };
        let p = project_box_to_image(&b, &ideal(), 101, 101).expect("visible");
        assert_eq!(p.bbox_clipped[0], 0.0);
        assert!((p.truncation - 0.5).abs() < 0.01, "{p:?}");
        // Wholly off-image or behind: nothing.
        let off = Box3D { center: [10.0, 20.0, 0.0], ..b };
        assert_eq!(project_box_to_image(&off, &ideal(), 101, 101), None);
        let behind = Box3D { center: [-10.0, 0.0, 0.0], ..b };
        assert_eq!(project_box_to_image(&behind, &ideal(), 101, 101), None);
    }

    #[test]
    fn box_through_the_camera_plane_is_clipped_at_the_near_plane() {
        // A 10 m long box beside the car, from 5 m behind to 5 m ahead, 3 m to
        // the right. Its far end alone spans u = 50 + 100·(2.5..3.5)/5 = 100..120;
        // the edges cut at z = 0.1 m reach u = 50 + 100·2.5/0.1 = 2550.
        let b = Box3D { center: [0.0, -3.0, 0.0], size: [10.0, 1.0, 2.0], yaw: 0.0 };
        let p = project_box_to_image(&b, &ideal(), 1000, 101).expect("visible");
        assert!((p.bbox_unclipped[0] - 100.0).abs() < 1e-9, "{p:?}");
        assert!((p.bbox_unclipped[2] - 3550.0).abs() < 1e-6, "{p:?}");
        // height: ±1 m at 0.1 m → ±1000 px
        assert!((p.bbox_unclipped[1] + 950.0).abs() < 1e-6 && (p.bbox_unclipped[3] - 1050.0).abs() < 1e-6, "{p:?}");
        assert_eq!(p.bbox_clipped, [100.0, 0.0, 999.0, 100.0]);
        assert!(p.truncation > 0.95, "{p:?}");
    }
}
