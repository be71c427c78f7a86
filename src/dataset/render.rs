//! Pictures of a KITTI-format frame (real or simulated), for `eloss render`:
//! * a bird's-eye view: points coloured by height, ground-truth boxes as
//!   oriented rectangles with a heading tick, on a metric grid
//!   ([`BevOptions`]: 0.1 m/pixel over x 0..80 m, y ±40 m by default);
//! * the camera image with each labelled box's 12 edges projected through
//!   `P2` (edges are clipped at the near plane).
//!
//! Colours by class: Car green, Van/Truck cyan, Pedestrian red, Cyclist
//! yellow, others magenta; DontCare boxes are drawn grey in the camera image
//! only (they have no 3D box).

use std::path::{Path, PathBuf};

use ::image::{Rgb, RgbImage};

use crate::cloud::Points;
use crate::dataset::kitti::{Calibration, ObjectClass, ObjectLabel, NEAR_PLANE_M};
use crate::geometry::Box3D;

/// The bird's-eye-view window and scale (LiDAR frame).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BevOptions {
    pub metres_per_pixel: f64,
    pub x_range: [f64; 2],
    pub y_range: [f64; 2],
    /// Heights mapped onto the colour ramp (LiDAR z, metres).
    pub z_range: [f64; 2],
}

impl Default for BevOptions {
    fn default() -> Self {
        Self { metres_per_pixel: 0.1, x_range: [0.0, 80.0], y_range: [-40.0, 40.0], z_range: [-2.0, 1.0] }
    }
}

impl BevOptions {
    /// Image size in pixels (width along -y, height along -x: forward is up).
    pub fn size(&self) -> (u32, u32) {
        let w = ((self.y_range[1] - self.y_range[0]) / self.metres_per_pixel).round().max(1.0) as u32;
        let h = ((self.x_range[1] - self.x_range[0]) / self.metres_per_pixel).round().max(1.0) as u32;
        (w, h)
    }

    /// Pixel (column, row) of LiDAR point (x, y); forward up, left to the left.
    pub fn to_pixel(&self, x: f64, y: f64) -> (f64, f64) {
        ((self.y_range[1] - y) / self.metres_per_pixel, (self.x_range[1] - x) / self.metres_per_pixel)
    }
}

/// Colour of a class's boxes.
pub fn class_colour(class: ObjectClass) -> Rgb<u8> {
    match class {
        ObjectClass::Car => Rgb([60, 230, 60]),
        ObjectClass::Van | ObjectClass::Truck => Rgb([40, 210, 230]),
        ObjectClass::Pedestrian | ObjectClass::PersonSitting => Rgb([250, 60, 60]),
        ObjectClass::Cyclist => Rgb([250, 220, 40]),
        ObjectClass::DontCare => Rgb([150, 150, 150]),
        _ => Rgb([230, 60, 230]),
    }
}

/// The bird's-eye view of `points` with the labels' 3D boxes.
pub fn render_bev(points: &Points, labels: &[ObjectLabel], calib: &Calibration, opts: &BevOptions) -> RgbImage {
    let (w, h) = opts.size();
    let mut img = RgbImage::from_pixel(w, h, Rgb([12, 12, 16]));
    // 10 m grid.
    let grid = Rgb([40, 40, 48]);
    let mut gx = (opts.x_range[0] / 10.0).ceil() * 10.0;
    while gx <= opts.x_range[1] {
        let (c0, r) = opts.to_pixel(gx, opts.y_range[1]);
        let (c1, _) = opts.to_pixel(gx, opts.y_range[0]);
        draw_line(&mut img, (c0, r), (c1, r), grid, 1);
        gx += 10.0;
    }
    let mut gy = (opts.y_range[0] / 10.0).ceil() * 10.0;
    while gy <= opts.y_range[1] {
        let (c, r0) = opts.to_pixel(opts.x_range[1], gy);
        let (_, r1) = opts.to_pixel(opts.x_range[0], gy);
        draw_line(&mut img, (c, r0), (c, r1), grid, 1);
        gy += 10.0;
    }
    for i in 0..points.len() {
        let (x, y, z) = (f64::from(points.x[i]), f64::from(points.y[i]), f64::from(points.z[i]));
        let (c, r) = opts.to_pixel(x, y);
        if c >= 0.0 && r >= 0.0 && (c as u32) < w && (r as u32) < h {
            let t = ((z - opts.z_range[0]) / (opts.z_range[1] - opts.z_range[0])).clamp(0.0, 1.0);
            img.put_pixel(c as u32, r as u32, height_colour(t));
        }
    }
    for l in labels.iter().filter(|l| l.class != ObjectClass::DontCare) {
        draw_bev_box(&mut img, &l.to_lidar_box(calib), opts, class_colour(l.class));
    }
    img
}

/// An oriented rectangle (the box's footprint) with a tick from its centre
/// to the middle of its front edge.
pub fn draw_bev_box(img: &mut RgbImage, b: &Box3D, opts: &BevOptions, colour: Rgb<u8>) {
    let c = b.corners();
    let px: Vec<(f64, f64)> = c[..4].iter().map(|p| opts.to_pixel(p[0], p[1])).collect();
    for k in 0..4 {
        draw_line(img, px[k], px[(k + 1) % 4], colour, 2);
    }
    let (s, co) = b.yaw.sin_cos();
    let half = b.size[0] / 2.0;
    let front = opts.to_pixel(b.center[0] + co * half, b.center[1] + s * half);
    draw_line(img, opts.to_pixel(b.center[0], b.center[1]), front, colour, 2);
}

/// Blue (low) → green → yellow → red (high).
fn height_colour(t: f64) -> Rgb<u8> {
    let ramp = [[40.0, 90.0, 255.0], [40.0, 220.0, 120.0], [250.0, 230.0, 40.0], [255.0, 60.0, 40.0]];
    let x = t * 3.0;
    let i = (x.floor() as usize).min(2);
    let f = x - i as f64;
    let (a, b) = (ramp[i], ramp[i + 1]);
    Rgb([0, 1, 2].map(|k| (a[k] + (b[k] - a[k]) * f) as u8))
}

/// Draws the labels into `image`: 3D boxes as 12 projected edges, DontCare
/// regions as grey 2D rectangles.
pub fn draw_camera_boxes(image: &mut RgbImage, labels: &[ObjectLabel], calib: &Calibration) {
    const EDGES: [(usize, usize); 12] =
        [(0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4), (0, 4), (1, 5), (2, 6), (3, 7)];
    for l in labels {
        let colour = class_colour(l.class);
        if l.class == ObjectClass::DontCare {
            let [x1, y1, x2, y2] = l.bbox;
            for (a, b) in [((x1, y1), (x2, y1)), ((x2, y1), (x2, y2)), ((x2, y2), (x1, y2)), ((x1, y2), (x1, y1))] {
                draw_line(image, a, b, colour, 1);
            }
            continue;
        }
        let cam = l.to_lidar_box(calib).corners().map(|c| calib.lidar_to_cam(c));
        for (i, j) in EDGES {
            let (mut a, mut b) = (cam[i], cam[j]);
            if a[2] < NEAR_PLANE_M && b[2] < NEAR_PLANE_M {
                continue;
            }
            // Clip the edge at the near plane.
            for (p, q) in [(&mut a, b), (&mut b, cam[i])] {
                if p[2] < NEAR_PLANE_M {
                    let t = (NEAR_PLANE_M - p[2]) / (q[2] - p[2]);
                    *p = [p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1]), NEAR_PLANE_M];
                }
            }
            if let (Some(pa), Some(pb)) = (calib.cam_to_image(a), calib.cam_to_image(b)) {
                draw_line(image, (pa[0], pa[1]), (pb[0], pb[1]), colour, 2);
            }
        }
    }
}

/// A line of `width` pixels, clipped to the image (DDA; long lines are
/// limited to 20 000 steps so that far-off endpoints cost nothing).
pub fn draw_line(img: &mut RgbImage, a: (f64, f64), b: (f64, f64), colour: Rgb<u8>, width: u32) {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    if !(dx.is_finite() && dy.is_finite() && a.0.is_finite() && a.1.is_finite()) {
        return;
    }
    let steps = dx.abs().max(dy.abs()).ceil().clamp(1.0, 20_000.0) as usize;
    let (w, h) = (img.width() as i64, img.height() as i64);
    let r0 = -((width as i64 - 1) / 2);
    let r1 = width as i64 / 2;
    for s in 0..=steps {
        let t = s as f64 / steps as f64;
        let (x, y) = ((a.0 + t * dx).round() as i64, (a.1 + t * dy).round() as i64);
        for oy in r0..=r1 {
            for ox in r0..=r1 {
                let (px, py) = (x + ox, y + oy);
                if px >= 0 && py >= 0 && px < w && py < h {
                    img.put_pixel(px as u32, py as u32, colour);
                }
            }
        }
    }
}

/// Why a render failed.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    Kitti(#[from] crate::dataset::kitti::KittiError),
    #[error("{path}: {source}")]
    Image { path: PathBuf, source: ::image::ImageError },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// The files [`render_files`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub bev: PathBuf,
    pub camera: Option<PathBuf>,
}

/// Renders one frame given by its files into `out_dir` as `<name>_bev.png`
/// and, when `image` is given, `<name>_camera.png`.
pub fn render_files(
    points: &Points,
    calib: &Calibration,
    labels: &[ObjectLabel],
    image: Option<&Path>,
    out_dir: &Path,
    name: &str,
    opts: &BevOptions,
) -> Result<Rendered, RenderError> {
    std::fs::create_dir_all(out_dir).map_err(|source| RenderError::Io { path: out_dir.to_owned(), source })?;
    let bev_path = out_dir.join(format!("{name}_bev.png"));
    render_bev(points, labels, calib, opts)
        .save(&bev_path)
        .map_err(|source| RenderError::Image { path: bev_path.clone(), source })?;
    let camera = match image {
        None => None,
        Some(path) => {
            let mut rgb = ::image::open(path).map_err(|source| RenderError::Image { path: path.to_owned(), source })?.to_rgb8();
            draw_camera_boxes(&mut rgb, labels, calib);
            let out = out_dir.join(format!("{name}_camera.png"));
            rgb.save(&out).map_err(|source| RenderError::Image { path: out.clone(), source })?;
            Some(out)
        }
    };
    Ok(Rendered { bev: bev_path, camera })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::kitti::ObjectLabel;

    #[test]
    fn bev_has_box_pixels_where_the_boxes_are() {
        let calib = Calibration::kitti_like_default();
        let b = Box3D { center: [20.0, 5.0, -0.9], size: [4.0, 1.8, 1.6], yaw: 0.3 };
        let label = ObjectLabel::from_lidar_box(ObjectClass::Car, &b, &calib, [0.0, 0.0, 10.0, 10.0], 0.0, 0);
        let opts = BevOptions::default();
        let img = render_bev(&Points::default(), &[label.clone()], &calib, &opts);
        assert_eq!(img.dimensions(), (800, 800));
        let green = class_colour(ObjectClass::Car);
        // Each corner of the footprint, and the front-edge midpoint (the tick), is drawn.
        let back = label.to_lidar_box(&calib);
        let mut probes: Vec<(f64, f64)> = back.corners()[..4].iter().map(|c| (c[0], c[1])).collect();
        let (s, c) = back.yaw.sin_cos();
        probes.push((back.center[0] + 2.0 * c, back.center[1] + 2.0 * s));
        for (x, y) in probes {
            let (col, row) = opts.to_pixel(x, y);
            let near = (-2i64..=2).any(|dy| {
                (-2i64..=2).any(|dx| *img.get_pixel((col as i64 + dx) as u32, (row as i64 + dy) as u32) == green)
            });
            assert!(near, "no box pixel near ({x}, {y})");
        }
        // Far from the box: background.
        let (col, row) = opts.to_pixel(60.0, -30.0);
        assert_ne!(*img.get_pixel(col as u32, row as u32), green);
        let total = img.pixels().filter(|p| **p == green).count();
        assert!(total > 100 && total < 2000, "{total} box pixels");
    }

    #[test]
    fn camera_boxes_land_on_the_label_2d_box() {
        let calib = Calibration::kitti_like_default();
        let b = Box3D { center: [15.0, 0.0, -0.9], size: [4.0, 1.8, 1.6], yaw: 0.0 };
        let p = crate::dataset::kitti::project_box_to_image(&b, &calib, 1242, 375).expect("visible");
        let label = ObjectLabel::from_lidar_box(ObjectClass::Car, &b, &calib, p.bbox_clipped, p.truncation, 0);
        let mut img = RgbImage::new(1242, 375);
        draw_camera_boxes(&mut img, &[label], &calib);
        let green = class_colour(ObjectClass::Car);
        let [x1, y1, x2, y2] = p.bbox_clipped;
        let drawn: Vec<(u32, u32)> = img.enumerate_pixels().filter(|(_, _, q)| **q == green).map(|(x, y, _)| (x, y)).collect();
        assert!(!drawn.is_empty());
        for (x, y) in drawn {
            assert!(f64::from(x) >= x1 - 2.0 && f64::from(x) <= x2 + 2.0 && f64::from(y) >= y1 - 2.0 && f64::from(y) <= y2 + 2.0);
        }
    }
}
