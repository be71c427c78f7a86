//! A pinhole colour camera rendering the same world as the LiDAR.
//!
//! The camera is KITTI's left colour camera (`image_2`): intrinsics from the
//! calibration's `P2`, pose from the LiDAR–camera extrinsics (`R0_rect`,
//! `Tr_velo_to_cam`), so a frame's image, cloud and labels agree through the
//! same [`Calibration`] that is written to `calib/*.txt`. The LiDAR sits
//! `lidar_height_m` above the ego reference point ([`Snapshot::sensor_pose`]),
//! the camera where the calibration puts it relative to the LiDAR.
//!
//! Rendering is per-pixel ray casting with the LiDAR's primitives
//! ([`Body::intersect`], [`HeightField::intersect`]):
//! * pixel `(u, v)` (integer coordinates are pixel centres, as KITTI's 2D
//!   boxes use them) looks along `P2⁻¹·(u, v, 1)` from `P2`'s optical centre;
//! * culling: every body's bounding box is projected once per frame into a
//!   screen rectangle; a pixel tests only the bodies whose rectangle holds it,
//!   nearest first, and stops at the first body farther than its hit;
//! * shading: Lambert from a sun direction plus ambient light on the
//!   material colour ([`Material::colour`]), a little deterministic texture
//!   (hash of the hit position), distance haze, and a sky gradient where the
//!   ray hits nothing within [`CameraModel::max_range_m`]; contact shadows
//!   under objects, Fresnel sky reflections on paint and glass, and vehicle
//!   lamps ([`super::camera_look`]). No cast shadows.
//!
//! Rows are rendered in parallel (rayon) and each pixel is a pure function of
//! its ray, so the image is bit-for-bit the same for any thread count.
//! Besides the RGB image the renderer returns a depth buffer (range along the
//! ray) and an object-id buffer, which [`super::labels`] uses for occlusion.

use rayon::prelude::*;

use super::camera_look;
use super::raycast::{dot, normalize, Body, Material, MaterialKind, Ray, Vec3};
use super::scene::{Pose, Scene, Snapshot};
use super::{ensure, mix64, SimError};
use crate::dataset::kitti::{Calibration, KITTI_IMAGE_HEIGHT, KITTI_IMAGE_WIDTH, KITTI_LIDAR_HEIGHT_M};

/// Object-id buffer value of pixels that show no labelled object.
pub const NO_OBJECT: u32 = u32::MAX;

/// A camera ready to render: intrinsics and its pose in the LiDAR frame.
#[derive(Debug, Clone, PartialEq)]
pub struct CameraModel {
    calib: Calibration,
    width: u32,
    height: u32,
    /// LiDAR height above the ego reference point (the camera hangs off it).
    lidar_height_m: f64,
    /// `P2`'s optical centre in the LiDAR frame.
    origin: Vec3,
    /// LiDAR-frame images of the rectified camera axes scaled by `P2⁻¹`: the
    /// ray of pixel (u, v) is `du·u + dv·v + d0` (not normalised).
    du: Vec3,
    dv: Vec3,
    d0: Vec3,
    /// Unit vector towards the sun (world frame) and the light levels.
    pub sun: Vec3,
    pub ambient: f64,
    pub diffuse: f64,
    /// Rays hit nothing beyond this range (sky).
    pub max_range_m: f64,
}

/// One rendered frame. Buffers are row-major, `width × height`.
#[derive(Debug, Clone, PartialEq)]
pub struct CameraFrame {
    pub image: ::image::RgbImage,
    /// Range along the pixel's ray in metres; `f32::INFINITY` for sky.
    pub depth: Vec<f32>,
    /// Id of the labelled object seen at the pixel, or [`NO_OBJECT`].
    pub object: Vec<u32>,
}

impl CameraFrame {
    pub fn width(&self) -> u32 {
        self.image.width()
    }

    pub fn height(&self) -> u32 {
        self.image.height()
    }

    /// Object id at pixel (u, v), [`NO_OBJECT`] outside the image too.
    pub fn object_at(&self, u: u32, v: u32) -> u32 {
        if u >= self.width() || v >= self.height() {
            return NO_OBJECT;
        }
        self.object[(v * self.width() + u) as usize]
    }
}

/// A body with its screen rectangle (inclusive pixel bounds) and a lower
/// bound on the range of any hit on it.
struct Target<'a> {
    body: &'a Body,
    object: u32,
    near: f64,
    rect: [i64; 4],
}

impl CameraModel {
    /// KITTI's left colour camera: [`Calibration::kitti_like_default`],
    /// 1242 × 375, LiDAR at KITTI's 1.73 m.
    pub fn kitti() -> Self {
        // The default calibration is valid by construction.
        Self::new(Calibration::kitti_like_default(), KITTI_IMAGE_WIDTH, KITTI_IMAGE_HEIGHT, KITTI_LIDAR_HEIGHT_M)
            .unwrap_or_else(|_| unreachable!("the KITTI-like default calibration is valid"))
    }

    /// A camera from a calibration's `P2` and extrinsics.
    pub fn new(calib: Calibration, width: u32, height: u32, lidar_height_m: f64) -> Result<Self, SimError> {
        ensure(width > 0 && height > 0 && width <= 16384 && height <= 16384, "camera size", || {
            format!("{width}x{height} (need 1..=16384 each)")
        })?;
        ensure(lidar_height_m.is_finite(), "lidar_height_m", || format!("{lidar_height_m} is not finite"))?;
        let p = calib.p2;
        let m = [p[0], p[1], p[2], p[4], p[5], p[6], p[8], p[9], p[10]];
        let inv = crate::geometry::mat3_inverse(&m).ok_or_else(|| SimError::InvalidConfig {
            what: "calibration P2",
            why: "its left 3x3 block is singular".into(),
        })?;
        // Optical centre: P2·[C; 1] = 0  ⇒  C = -M⁻¹·p4 (rectified camera-0 frame).
        let c_rect = mat3_mul(&inv, [-p[3], -p[7], -p[11]]);
        let origin = calib.cam_to_lidar(c_rect);
        if !origin.iter().all(|v| v.is_finite()) {
            return Err(SimError::InvalidConfig { what: "calibration", why: "extrinsics are not invertible".into() });
        }
        // Direction of rectified vector r in the LiDAR frame (linear part only).
        let dir = |r: Vec3| {
            let a = calib.cam_to_lidar([c_rect[0] + r[0], c_rect[1] + r[1], c_rect[2] + r[2]]);
            [a[0] - origin[0], a[1] - origin[1], a[2] - origin[2]]
        };
        let (du, dv, d0) = (dir([inv[0], inv[3], inv[6]]), dir([inv[1], inv[4], inv[7]]), dir([inv[2], inv[5], inv[8]]));
        Ok(Self {
            calib,
            width,
            height,
            lidar_height_m,
            origin,
            du,
            dv,
            d0,
            // Late-morning sun, from ahead-left, 40° up.
            sun: normalize([0.55, 0.45, 0.70]),
            ambient: 0.45,
            diffuse: 0.65,
            max_range_m: 250.0,
        })
    }

    pub fn calibration(&self) -> &Calibration {
        &self.calib
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    pub fn lidar_height_m(&self) -> f64 {
        self.lidar_height_m
    }

    /// The LiDAR pose in the world for a snapshot (the frame of the labels).
    pub fn lidar_pose(&self, snapshot: &Snapshot) -> Pose {
        snapshot.sensor_pose(self.lidar_height_m)
    }

    /// World-frame ray through pixel (u, v) (pixel centres at integers) for
    /// the LiDAR at `lidar`.
    pub fn ray(&self, lidar: &Pose, u: f64, v: f64) -> Ray {
        let d = [0, 1, 2].map(|k| self.du[k] * u + self.dv[k] * v + self.d0[k]);
        let (s, c) = lidar.yaw.sin_cos();
        let dir = normalize([c * d[0] - s * d[1], s * d[0] + c * d[1], d[2]]);
        Ray { origin: lidar.to_world(self.origin), dir }
    }

    /// Renders the snapshot.
    pub fn render(&self, scene: &Scene, snapshot: &Snapshot) -> CameraFrame {
        let lidar = self.lidar_pose(snapshot);
        let mut targets: Vec<Target> = Vec::with_capacity(scene.statics.len() + snapshot.objects.len());
        for s in &scene.statics {
            if let Some(t) = self.target(&s.body, NO_OBJECT, &lidar) {
                targets.push(t);
            }
        }
        for o in &snapshot.objects {
            if let Some(t) = self.target(&o.body, o.id, &lidar) {
                targets.push(t);
            }
        }
        targets.sort_by(|a, b| a.near.total_cmp(&b.near));
        // labelled objects darken the ground they stand on (camera_look)
        let casters: Vec<&Body> = snapshot.objects.iter().map(|o| &o.body).collect();
        let (w, h) = (self.width as usize, self.height as usize);
        let rows: Vec<(Vec<u8>, Vec<f32>, Vec<u32>)> = (0..h)
            .into_par_iter()
            .map(|v| {
                let row_targets: Vec<&Target> =
                    targets.iter().filter(|t| t.rect[1] <= v as i64 && v as i64 <= t.rect[3]).collect();
                let mut rgb = Vec::with_capacity(3 * w);
                let mut depth = Vec::with_capacity(w);
                let mut object = Vec::with_capacity(w);
                for u in 0..w {
                    let (c, d, o) = self.shade_pixel(scene, &row_targets, &casters, &lidar, u, v);
                    rgb.extend_from_slice(&c);
                    depth.push(d);
                    object.push(o);
                }
                (rgb, depth, object)
            })
            .collect();
        let mut data = Vec::with_capacity(3 * w * h);
        let mut depth = Vec::with_capacity(w * h);
        let mut object = Vec::with_capacity(w * h);
        for (r, d, o) in rows {
            data.extend(r);
            depth.extend(d);
            object.extend(o);
        }
        let image = ::image::RgbImage::from_raw(self.width, self.height, data)
            .unwrap_or_else(|| unreachable!("the buffer has width x height x 3 bytes"));
        CameraFrame { image, depth, object }
    }

    /// Whether `body` alone covers pixel (u, v): the silhouette test used for
    /// occlusion (a body hidden behind others still covers its pixels).
    pub fn body_covers(&self, body: &Body, lidar: &Pose, u: u32, v: u32) -> bool {
        body.intersect(&self.ray(lidar, f64::from(u), f64::from(v)), self.max_range_m).is_some()
    }

    /// Screen rectangle of a body's bounding box, or `None` when it is wholly
    /// behind the camera or off the image.
    fn target<'a>(&self, body: &'a Body, object: u32, lidar: &Pose) -> Option<Target<'a>> {
        let (lo, hi) = body.local_bounds();
        let cam_origin = lidar.to_world(self.origin);
        let mut rect = [f64::INFINITY, f64::INFINITY, f64::NEG_INFINITY, f64::NEG_INFINITY];
        let mut behind = 0;
        for i in 0..8 {
            let local = [if i & 1 == 0 { lo[0] } else { hi[0] }, if i & 2 == 0 { lo[1] } else { hi[1] }, if i & 4 == 0 { lo[2] } else { hi[2] }];
            let (s, c) = body.yaw.sin_cos();
            let world =
                [body.origin[0] + c * local[0] - s * local[1], body.origin[1] + s * local[0] + c * local[1], body.origin[2] + local[2]];
            let in_lidar = lidar.to_local(world);
            let cam = self.calib.lidar_to_cam(in_lidar);
            match self.calib.cam_to_image(cam).filter(|_| cam[2] > 0.05) {
                Some([u, v]) => rect = [rect[0].min(u), rect[1].min(v), rect[2].max(u), rect[3].max(v)],
                None => behind += 1,
            }
        }
        if behind == 8 {
            return None;
        }
        let (w, h) = (self.width as i64, self.height as i64);
        // A box straddling the camera plane can cover anything: keep it whole.
        let rect = if behind > 0 {
            [0, 0, w - 1, h - 1]
        } else {
            [rect[0].floor() as i64 - 1, rect[1].floor() as i64 - 1, rect[2].ceil() as i64 + 1, rect[3].ceil() as i64 + 1]
        };
        if rect[2] < 0 || rect[3] < 0 || rect[0] >= w || rect[1] >= h {
            return None;
        }
        let d = [body.origin[0] - cam_origin[0], body.origin[1] - cam_origin[1], body.origin[2] - cam_origin[2]];
        let radius = {
            let (lo, hi) = body.local_bounds();
            let ext = [0, 1, 2].map(|k| lo[k].abs().max(hi[k].abs()));
            dot(ext, ext).sqrt()
        };
        Some(Target { body, object, near: (dot(d, d).sqrt() - radius).max(0.0), rect })
    }

    fn shade_pixel(&self, scene: &Scene, targets: &[&Target], casters: &[&Body], lidar: &Pose, u: usize, v: usize) -> ([u8; 3], f32, u32) {
        let ray = self.ray(lidar, u as f64, v as f64);
        let mut best_t = self.max_range_m;
        let mut hit: Option<(Vec3, Material, u32, Option<&Body>)> = None;
        for t in targets {
            if t.near >= best_t {
                break;
            }
            if (u as i64) < t.rect[0] || (u as i64) > t.rect[2] {
                continue;
            }
            if let Some(h) = t.body.intersect(&ray, best_t) {
                best_t = h.t;
                hit = Some((h.normal, h.material, t.object, Some(t.body)));
            }
        }
        let mut ground = false;
        if let Some((t, n)) = scene.ground.intersect(&ray, best_t) {
            let p = ray.at(t);
            best_t = t;
            ground = true;
            hit = Some((n, scene.ground_material(p[0], p[1]), NO_OBJECT, None));
        }
        let Some((normal, material, object, body)) = hit else {
            return (self.sky(ray.dir), f32::INFINITY, NO_OBJECT);
        };
        let p = ray.at(best_t);
        // Light the side facing the camera.
        let n = if dot(normal, ray.dir) > 0.0 { [-normal[0], -normal[1], -normal[2]] } else { normal };
        let mut light = self.ambient + self.diffuse * dot(n, self.sun).max(0.0);
        if ground {
            light *= camera_look::contact_shadow(p, casters);
        }
        let lamp = match body {
            Some(b) if object != NO_OBJECT => camera_look::lamp(b, b.to_local(p), b.dir_to_local(normal), &material),
            _ => None,
        };
        let mut rgb = match lamp {
            Some(c) => c.map(|c| c * (0.6 + 0.4 * light)),
            None => material.colour.map(|c| f64::from(c) * light),
        };
        // Texture: ±6 % per 5 cm cell (asphalt grain, foliage, fabric), and a
        // specular-ish sheen on glass and paint facing the sun; paint and glass
        // mirror the sky more the more grazing the view (camera_look).
        let grain = texture(p, material.kind);
        let refl = camera_look::reflect(ray.dir, n);
        let sheen = match material.kind {
            MaterialKind::Glass | MaterialKind::Paint | MaterialKind::Metal => 40.0 * dot(refl, self.sun).max(0.0).powi(16),
            _ => 0.0,
        };
        let mirror = if lamp.is_some() { 0.0 } else { camera_look::fresnel(material.kind, -dot(ray.dir, n)) };
        let env = if refl[2] > 0.0 { self.sky(refl).map(f64::from) } else { HORIZON.map(|c| f64::from(c) * 0.45) };
        for (k, c) in rgb.iter_mut().enumerate() {
            *c = (*c * grain) * (1.0 - mirror) + env[k] * mirror + sheen;
        }
        // Haze: blend towards the horizon colour with distance.
        let haze = 1.0 - (-best_t / 400.0).exp();
        let horizon = HORIZON.map(f64::from);
        let out = [0, 1, 2].map(|k| (rgb[k] * (1.0 - haze) + horizon[k] * haze).round().clamp(0.0, 255.0) as u8);
        (out, best_t as f32, object)
    }

    /// Sky colour by elevation: pale at the horizon, deeper blue above.
    fn sky(&self, dir: Vec3) -> [u8; 3] {
        let e = dir[2].clamp(0.0, 1.0).powf(0.6);
        [0, 1, 2].map(|k| (f64::from(HORIZON[k]) * (1.0 - e) + f64::from(ZENITH[k]) * e).round() as u8)
    }
}

const HORIZON: [u8; 3] = [205, 218, 230];
const ZENITH: [u8; 3] = [95, 140, 200];

/// A brightness factor from a hash of the 5 cm cell around `p`; its spread
/// depends on the material (asphalt and foliage grainy, glass smooth).
fn texture(p: Vec3, kind: MaterialKind) -> f64 {
    let amp = match kind {
        MaterialKind::Asphalt | MaterialKind::Concrete => 0.08,
        MaterialKind::Grass | MaterialKind::Foliage | MaterialKind::Bark => 0.18,
        MaterialKind::Brick => 0.10,
        MaterialKind::Cloth => 0.06,
        _ => 0.02,
    };
    let cell = |x: f64| (x * 20.0).floor() as i64 as u64;
    let h = mix64(cell(p[0]) ^ mix64(cell(p[1]) ^ mix64(cell(p[2]))));
    1.0 + amp * ((h >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0)
}

fn mat3_mul(m: &[f64; 9], p: Vec3) -> Vec3 {
    [0, 1, 2].map(|i| m[3 * i] * p[0] + m[3 * i + 1] * p[1] + m[3 * i + 2] * p[2])
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::sim::SceneConfig;

    #[test]
    fn pixel_rays_reproject_onto_their_pixels() {
        let cam = CameraModel::kitti();
        let calib = cam.calibration().clone();
        let lidar = Pose { position: [0.0, 0.0, 0.0], yaw: 0.0 };
        for (u, v) in [(0.0, 0.0), (620.0, 180.0), (1241.0, 374.0), (100.0, 300.0)] {
            let r = cam.ray(&lidar, u, v);
            let p = r.at(20.0);
            let [pu, pv] = calib.lidar_to_image(p).expect("in front");
            assert!((pu - u).abs() < 1e-6 && (pv - v).abs() < 1e-6, "({u}, {v}) -> ({pu}, {pv})");
        }
    }

    #[test]
    fn render_is_deterministic_and_sees_road_sky_and_objects() {
        let scene = SceneConfig::default().generate(3).expect("scene");
        let snap = scene.snapshot(0.0);
        let cam = CameraModel::kitti();
        let a = cam.render(&scene, &snap);
        let b = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("pool").install(|| cam.render(&scene, &snap));
        assert_eq!(a, b);
        let (w, h) = (a.width(), a.height());
        // Top rows: mostly sky or buildings; bottom centre: road right ahead.
        let bottom = a.depth[((h - 1) * w + w / 2) as usize];
        assert!(bottom.is_finite() && bottom < 10.0, "bottom centre depth {bottom}");
        let objects = a.object.iter().filter(|&&o| o != NO_OBJECT).count();
        assert!(objects > 100, "only {objects} object pixels");
    }
}

#[cfg(test)]
mod timing {
    use super::*;
    use crate::dataset::sim::{Lidar, LidarConfig, SceneConfig};

    /// `cargo test --release --lib sim::camera::timing -- --ignored --nocapture`
    #[test]
    #[ignore = "timing report, run in release"]
    fn report_render_speed() {
        let cam = CameraModel::kitti();
        let lidar = Lidar::new(LidarConfig::hdl64e()).expect("preset");
        let (mut cam_s, mut lidar_s) = (0.0, 0.0);
        let n = 20;
        for seed in 0..n {
            let scene = SceneConfig::default().generate(seed).expect("scene");
            let snap = scene.snapshot(0.0);
            let t = std::time::Instant::now();
            let f = cam.render(&scene, &snap);
            cam_s += t.elapsed().as_secs_f64();
            let t = std::time::Instant::now();
            let s = lidar.scan(&scene, &snap, seed);
            lidar_s += t.elapsed().as_secs_f64();
            assert!(f.depth.len() > 0 && s.points.len() > 0);
        }
        println!(
            "{} threads: camera {:.1} ms/frame, lidar {:.1} ms/frame ({:.1} frames/s)",
            rayon::current_num_threads(),
            1e3 * cam_s / n as f64,
            1e3 * lidar_s / n as f64,
            n as f64 / lidar_s
        );
    }
}
