//! The camera field of view of a KITTI frame. KITTI labels only objects seen
//! by the left colour camera, so training and evaluation keep only the points
//! that project into that image (OpenPCDet's `FOV_POINTS_ONLY`); otherwise
//! unlabelled cars beside and behind the vehicle would be taught as
//! background.

use super::calib::{Calibration, KITTI_IMAGE_HEIGHT, KITTI_IMAGE_WIDTH};
use super::KittiFrame;
use crate::cloud::Points;
use std::path::Path;

/// The size of `image_2/<id>.png` from its header, or KITTI's usual size
/// when the frame has no image.
pub fn image_size(image: Option<&Path>) -> (u32, u32) {
    image.and_then(|p| image::image_dimensions(p).ok()).unwrap_or((KITTI_IMAGE_WIDTH, KITTI_IMAGE_HEIGHT))
}

/// Cuts a frame's cloud to what its camera sees (image size from the
/// frame's image, else KITTI's); returns that image size.
pub fn cut_to_camera_view(frame: &mut KittiFrame) -> (u32, u32) {
    let (w, h) = image_size(frame.image_path.as_deref());
    retain_in_image(&mut frame.points, &frame.calib, w, h);
    (w, h)
}

/// Keeps the points in front of the camera whose projection falls inside the
/// `width` x `height` image.
pub fn retain_in_image(points: &mut Points, calib: &Calibration, width: u32, height: u32) {
    let keep: Vec<bool> = (0..points.len())
        .map(|i| {
            let p = [points.x[i] as f64, points.y[i] as f64, points.z[i] as f64];
            calib.lidar_to_image(p).is_some_and(|[u, v]| u >= 0.0 && v >= 0.0 && u < width as f64 && v < height as f64)
        })
        .collect();
    points.retain_mask(&keep);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::Point;

    #[test]
    fn keeps_what_the_camera_sees() {
        let calib = Calibration::kitti_like_default();
        let mut pts = Points::with_capacity(4, false, false);
        for (x, y, z) in [(10.0, 0.0, -1.0), (-10.0, 0.0, -1.0), (10.0, 30.0, -1.0), (40.0, -5.0, 0.0)] {
            pts.push(Point { x, y, z, intensity: 0.0, ring: 0, time: 0.0 });
        }
        retain_in_image(&mut pts, &calib, 1242, 375);
        assert_eq!(pts.x, [10.0, 40.0], "ahead: kept; behind and far to the side: dropped");
    }
}
