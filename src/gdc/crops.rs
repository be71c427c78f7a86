//! Camera crops of 3D detections for GDC relabelling.
//!
//! A LiDAR-frame box is projected with the camera's projection matrix and the
//! LiDAR → camera extrinsic ([`Calibration`]: from a KITTI calib file, or
//! [`Calibration::from_camera`] with a CameraInfo's P and the params' extrinsic),
//! cut at the near plane, clipped to the image, grown by a margin and padded
//! to a square around its centre (pixels outside the image are filled with
//! grey), so the classifier sees the object at its true aspect ratio.
//! Boxes behind the camera, outside the image or too small are skipped with
//! the reason. Images are matched to clouds by nearest stamp within a tolerance.

use crate::dataset::kitti::{project_box_to_image, Calibration};
use crate::geometry::Box3D;
use crate::image::RgbImage;

#[derive(Debug, Clone, PartialEq)]
pub struct CropConfig {
    /// Skip boxes whose clipped image box is smaller than this on its shorter side [px].
    pub min_size_px: f64,
    /// Grow the box by this fraction of its longer side before squaring (context around the object).
    pub margin: f64,
    /// Fill value for the parts of a square crop that lie outside the image.
    pub fill: [u8; 3],
}

impl Default for CropConfig {
    fn default() -> Self {
        Self { min_size_px: 8.0, margin: 0.1, fill: [124, 116, 104] } // ImageNet mean: neutral after normalisation
    }
}

/// Why a box has no crop.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CropSkip {
    #[error("box is behind the camera or outside its field of view")]
    NotVisible,
    #[error("box is only {0:.1} px on its shorter side in the image")]
    TooSmall(f64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Crop {
    /// The square crop.
    pub image: RgbImage,
    /// The object's image box clipped to the image `[x1, y1, x2, y2]`.
    pub bbox: [f64; 4],
    /// The square's region in image coordinates (may extend past the image).
    pub square: [i64; 4],
}

/// Crops `image` around the projection of LiDAR-frame box `b`.
pub fn crop_box(image: &RgbImage, b: &Box3D, calib: &Calibration, cfg: &CropConfig) -> Result<Crop, CropSkip> {
    let proj = project_box_to_image(b, calib, image.width, image.height).ok_or(CropSkip::NotVisible)?;
    crop_pixels(image, proj.bbox_clipped, cfg)
}

/// Crops `image` around a pixel box `[x1, y1, x2, y2]` (explicit 2D requests).
pub fn crop_pixels(image: &RgbImage, bbox: [f64; 4], cfg: &CropConfig) -> Result<Crop, CropSkip> {
    let [x1, y1, x2, y2] = [
        bbox[0].max(0.0),
        bbox[1].max(0.0),
        bbox[2].min(image.width as f64 - 1.0),
        bbox[3].min(image.height as f64 - 1.0),
    ];
    if !(x2 > x1 && y2 > y1) {
        return Err(CropSkip::NotVisible);
    }
    let shorter = (x2 - x1).min(y2 - y1);
    if shorter < cfg.min_size_px {
        return Err(CropSkip::TooSmall(shorter));
    }
    let side = ((x2 - x1).max(y2 - y1) * (1.0 + cfg.margin)).ceil().max(1.0) as i64;
    let (cx, cy) = ((x1 + x2) / 2.0, (y1 + y2) / 2.0);
    let (left, top) = ((cx - side as f64 / 2.0).round() as i64, (cy - side as f64 / 2.0).round() as i64);
    let mut data = Vec::with_capacity((side * side * 3) as usize);
    for y in top..top + side {
        for x in left..left + side {
            let inside = x >= 0 && y >= 0 && x < image.width as i64 && y < image.height as i64;
            let px = if inside {
                let i = (y as usize * image.width as usize + x as usize) * 3;
                image.data.get(i..i + 3).map(|p| [p[0], p[1], p[2]]).unwrap_or(cfg.fill)
            } else {
                cfg.fill
            };
            data.extend_from_slice(&px);
        }
    }
    Ok(Crop {
        image: RgbImage { width: side as u32, height: side as u32, data },
        bbox: [x1, y1, x2, y2],
        square: [left, top, left + side, top + side],
    })
}

/// Index of the stamp nearest to `target` (nanoseconds) if it lies within
/// `tolerance_ns`; ties go to the earlier stamp.
pub fn nearest_stamp(stamps: &[i64], target: i64, tolerance_ns: i64) -> Option<usize> {
    stamps
        .iter()
        .enumerate()
        .map(|(i, &s)| (i, (s as i128 - target as i128).unsigned_abs()))
        .filter(|&(_, d)| d <= tolerance_ns.max(0) as u128)
        .min_by_key(|&(i, d)| (d, stamps[i]))
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: u32, h: u32) -> RgbImage {
        let mut data = Vec::new();
        for y in 0..h {
            for x in 0..w {
                data.extend_from_slice(&[x as u8, y as u8, 7]);
            }
        }
        RgbImage { width: w, height: h, data }
    }

    #[test]
    fn square_crop_keeps_pixels_and_pads_outside() {
        let img = gradient(100, 50);
        let cfg = CropConfig { margin: 0.0, ..Default::default() };
        let c = crop_pixels(&img, [10.0, 20.0, 30.0, 30.0], &cfg).unwrap();
        assert_eq!((c.image.width, c.image.height), (20, 20));
        assert_eq!(c.square, [10, 15, 30, 35]);
        // pixel (10, 15) of the image is the crop's top-left
        assert_eq!(&c.image.data[0..3], &[10, 15, 7]);
        // a box at the image corner pads with the fill colour
        let c = crop_pixels(&img, [0.0, 0.0, 40.0, 10.0], &cfg).unwrap();
        assert_eq!(&c.image.data[0..3], &cfg.fill);
        assert!(matches!(crop_pixels(&img, [0.0, 0.0, 40.0, 5.0], &cfg), Err(CropSkip::TooSmall(_))));
        assert!(matches!(crop_pixels(&img, [200.0, 0.0, 300.0, 40.0], &cfg), Err(CropSkip::NotVisible)));
    }

    #[test]
    fn boxes_behind_or_beside_the_camera_are_skipped() {
        let calib = Calibration::kitti_like_default();
        let img = gradient(1242, 375);
        let cfg = CropConfig::default();
        let ahead = Box3D { center: [10.0, 0.0, -0.9], size: [3.9, 1.6, 1.5], yaw: 0.0 };
        let c = crop_box(&img, &ahead, &calib, &cfg).unwrap();
        assert!(c.bbox[0] > 400.0 && c.bbox[2] < 850.0, "{:?}", c.bbox);
        let behind = Box3D { center: [-10.0, 0.0, -0.9], ..ahead };
        assert_eq!(crop_box(&img, &behind, &calib, &cfg), Err(CropSkip::NotVisible));
        let beside = Box3D { center: [0.0, 15.0, -0.9], ..ahead };
        assert_eq!(crop_box(&img, &beside, &calib, &cfg), Err(CropSkip::NotVisible));
        let far = Box3D { center: [150.0, 0.0, -0.9], size: [0.5, 0.5, 0.5], yaw: 0.0 };
        assert!(matches!(crop_box(&img, &far, &calib, &cfg), Err(CropSkip::TooSmall(_))));
        // from_camera with P2 and the combined extrinsic projects identically
        let same = Calibration::from_camera(calib.p2, calib.lidar_to_cam_matrix());
        assert_eq!(crop_box(&img, &ahead, &same, &cfg).unwrap().bbox, c.bbox);
    }

    #[test]
    fn nearest_stamp_respects_tolerance() {
        let s = [100, 200, 300];
        assert_eq!(nearest_stamp(&s, 240, 50), Some(1));
        assert_eq!(nearest_stamp(&s, 250, 50), Some(1));
        assert_eq!(nearest_stamp(&s, 260, 50), Some(2));
        assert_eq!(nearest_stamp(&s, 400, 50), None);
        assert_eq!(nearest_stamp(&[], 0, 50), None);
    }
}
