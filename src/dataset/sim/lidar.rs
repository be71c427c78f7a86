//! A rotating multi-beam LiDAR: sensor presets and ray casting of a scene.
//!
//! Model, per ray (one beam at one azimuth column):
//! * geometry: nearest hit among the bodies whose azimuth span contains the
//!   column (culled through 0.5° azimuth bins, sorted by distance so the
//!   search stops at the first body farther than the current hit), then the
//!   ground height field up to that distance;
//! * detection: the return power ∝ albedo·√cos(incidence)/range² is compared
//!   with the power of a 10 %-albedo target at `range_10pct_m`, through a soft
//!   threshold, so dark and grazing surfaces vanish first at long range (the
//!   HDL-64E data sheet: ~50 m for pavement, ~120 m for cars and foliage);
//!   plus a small random dropout;
//! * intensity: Lambertian-ish `albedo · (0.5 + 0.5·cos(incidence))` plus
//!   noise, in KITTI's 0..1 reflectance scale; retroreflectors (licence
//!   plates) read 0.85–1 at any angle;
//! * range: Gaussian noise of σ = `range_noise_m` along the ray, clamped at
//!   ±2.5 σ.
//!
//! Every column draws from its own random stream (`Rng::stream(seed,
//! column)`) and columns are cast in parallel chunks whose results are joined
//! in column order, so the cloud is bit-for-bit the same for any thread count.
//! The scene is a snapshot: motion during the 0.1 s sweep is not modelled,
//! but each point carries its firing time within the sweep.

use std::collections::BTreeMap;
use std::f64::consts::PI;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::raycast::{dot, Body, Material, MaterialKind, Ray};
use super::scene::{Pose, Scene, Snapshot, StaticKind};
use super::{ensure, Rng, SimError};
use crate::cloud::{Point, Points};

/// KITTI object clouds keep the front camera's view: |atan2(y, x)| ≤ 45°.
pub const KITTI_CAMERA_HALF_FOV_DEG: f64 = 45.0;

/// The angular window of KITTI's left colour camera image (1242 × 375,
/// P2: fx = fy = 721.5, cx = 609.6, cy = 172.9) seen from the LiDAR:
/// azimuth -41.2°..40.2° (right..left), elevation -15.6°..13.5°. KITTI's
/// "reduced" object clouds (as in ../shared/data/kitti_000008) keep the
/// points that project into the image, which is this window up to the
/// 0.27 m camera–LiDAR offset; use it to compare point counts with them.
pub const KITTI_IMAGE_WINDOW_DEG: FovWindow =
    FovWindow { azimuth_min: -41.2, azimuth_max: 40.2, elevation_min: -15.6, elevation_max: 13.5 };

/// An (azimuth, elevation) window in degrees, sensor frame.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FovWindow {
    pub azimuth_min: f64,
    pub azimuth_max: f64,
    pub elevation_min: f64,
    pub elevation_max: f64,
}

impl FovWindow {
    /// Keeps the points inside the window.
    pub fn crop(&self, points: &Points) -> Points {
        let keep = self.mask(points);
        let mut out = points.clone();
        out.retain_mask(&keep);
        out
    }

    fn mask(&self, p: &Points) -> Vec<bool> {
        (0..p.len())
            .map(|i| {
                let (x, y, z) = (p.x[i] as f64, p.y[i] as f64, p.z[i] as f64);
                let az = y.atan2(x).to_degrees();
                let el = z.atan2(x.hypot(y)).to_degrees();
                x > 0.0 && (self.azimuth_min..=self.azimuth_max).contains(&az) && (self.elevation_min..=self.elevation_max).contains(&el)
            })
            .collect()
    }
}

/// Sensor description. Ring 0 is the lowest beam (as the ROS Velodyne driver
/// numbers them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LidarConfig {
    pub name: String,
    /// Beam elevations in degrees (positive up), one per ring, ascending.
    pub elevations_deg: Vec<f64>,
    /// Horizontal step between firings.
    pub azimuth_resolution_deg: f64,
    /// Revolutions per second; a frame is one revolution.
    pub rotation_hz: f64,
    /// Sensor height above the ground under the ego reference point.
    pub mount_height_m: f64,
    pub min_range_m: f64,
    pub max_range_m: f64,
    /// σ of the Gaussian range error.
    pub range_noise_m: f64,
    /// σ of the additive intensity noise (0..1 scale).
    pub intensity_noise: f64,
    /// Probability that any return is lost regardless of power.
    pub random_dropout: f64,
    /// Range at which a 10 % albedo target at normal incidence is detected
    /// half of the time.
    pub range_10pct_m: f64,
    /// Gain on the reported reflectance (clamped to 1): sensors and drivers
    /// calibrate intensity differently (1 for the presets).
    #[serde(default = "unit_gain")]
    pub intensity_scale: f64,
    /// How a surface's albedo becomes the reported intensity.
    #[serde(default)]
    pub intensity_model: IntensityModel,
}

/// The reflectance model of [`Lidar::scan`].
///
/// * `lambert` (the presets' default, what every data set before issue 14
///   was made with): `albedo · (0.5 + 0.5·cos(incidence))` for every surface.
/// * `kitti`: fitted to the real KITTI frame 000008 by `eloss sim-realism`
///   (docs/simulator.md, "Intensity"). Ground surfaces (asphalt, markings,
///   concrete, grass) read `1.3 · albedo · (0.75 + 0.25·cos)` (KITTI's road
///   sits at ~0.3 whatever the angle); glossy ones (paint, glass, metal)
///   return little diffusely and a specular glint near normal incidence,
///   `0.2 · albedo · (0.5 + 0.5·cos) + 0.6 · cos¹⁶`, which gives KITTI's
///   near-zero cars and bright spots facing the sensor; the rest (walls,
///   foliage, people) `0.8 · albedo · (0.5 + 0.5·cos)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntensityModel {
    #[default]
    Lambert,
    Kitti,
}

impl std::str::FromStr for IntensityModel {
    type Err = SimError;
    fn from_str(s: &str) -> Result<Self, SimError> {
        match s {
            "lambert" => Ok(Self::Lambert),
            "kitti" => Ok(Self::Kitti),
            other => Err(SimError::InvalidConfig { what: "intensity model", why: format!("`{other}` (expected lambert or kitti)") }),
        }
    }
}

impl IntensityModel {
    /// The noiseless intensity of a non-retroreflective surface.
    fn intensity(self, material: &Material, cos_incidence: f64) -> f64 {
        let albedo = material.albedo as f64;
        match self {
            Self::Lambert => albedo * (0.5 + 0.5 * cos_incidence),
            Self::Kitti => match material.kind {
                MaterialKind::Paint | MaterialKind::Glass | MaterialKind::Metal => {
                    0.2 * albedo * (0.5 + 0.5 * cos_incidence) + 0.6 * cos_incidence.powi(16)
                }
                MaterialKind::Asphalt | MaterialKind::LaneMarking | MaterialKind::Concrete | MaterialKind::Grass => {
                    1.3 * albedo * (0.75 + 0.25 * cos_incidence)
                }
                _ => 0.8 * albedo * (0.5 + 0.5 * cos_incidence),
            },
        }
    }
}

fn unit_gain() -> f64 {
    1.0
}

impl LidarConfig {
    /// Velodyne HDL-64E as mounted on the KITTI car: 1.73 m above the ground,
    /// 10 Hz, 120 m. Vertical layout: the upper block of 32 lasers from +2° to
    /// -8.33° in 1/3° steps and the lower block of 32 from -8.83° to -24.8°
    /// (≈0.5° steps), the published two-block geometry of the sensor (data
    /// sheet: +2° to -24.8°, upper block 1/3°, lower block 1/2°; the per-unit
    /// calibration differs slightly). 0.17° azimuth at 10 Hz gives 2118
    /// columns, 135,552 rays per revolution (~120k returns in a street).
    pub fn hdl64e() -> Self {
        let mut el: Vec<f64> = (0..32).map(|i| 2.0 - i as f64 / 3.0).collect();
        let lower_step = (24.8 - 8.83) / 31.0;
        el.extend((0..32).map(|j| -8.83 - j as f64 * lower_step));
        el.sort_by(f64::total_cmp);
        Self {
            name: "hdl64e".into(),
            elevations_deg: el,
            azimuth_resolution_deg: 0.17,
            rotation_hz: 10.0,
            mount_height_m: 1.73,
            min_range_m: 0.9,
            max_range_m: 120.0,
            range_noise_m: 0.02,
            intensity_noise: 0.02,
            // KITTI: ~1.3 M points/s, i.e. at most ~130k per revolution and
            // ~120k in practice; 3 % random loss lands the street scenes there.
            random_dropout: 0.03,
            range_10pct_m: 50.0,
            intensity_scale: 1.0,
            intensity_model: IntensityModel::Lambert,
        }
    }

    /// A Velodyne VLP-32C-like sensor (the VLP-32C's non-uniform elevations,
    /// -25° to +15°, dense around the horizon), 0.2° at 10 Hz, 200 m, at the
    /// same mounting height so scenes are comparable.
    pub fn vlp32() -> Self {
        let el = vec![
            -25.0, -15.639, -11.31, -8.843, -7.254, -6.148, -5.333, -4.667, -4.0, -3.667, -3.333, -3.0, -2.667, -2.333,
            -2.0, -1.667, -1.333, -1.0, -0.667, -0.333, 0.0, 0.333, 0.667, 1.0, 1.333, 1.667, 2.333, 3.333, 4.667, 7.0,
            10.333, 15.0,
        ];
        Self {
            name: "vlp32".into(),
            elevations_deg: el,
            azimuth_resolution_deg: 0.2,
            rotation_hz: 10.0,
            mount_height_m: 1.73,
            min_range_m: 1.0,
            max_range_m: 200.0,
            range_noise_m: 0.03,
            intensity_noise: 0.02,
            random_dropout: 0.01,
            range_10pct_m: 80.0,
            intensity_scale: 1.0,
            intensity_model: IntensityModel::Lambert,
        }
    }

    pub fn validate(&self) -> Result<(), SimError> {
        let n = self.elevations_deg.len();
        ensure(n > 0 && n <= 512, "beam count", || format!("{n} beams (need 1..=512)"))?;
        ensure(
            self.elevations_deg.iter().all(|e| e.is_finite() && e.abs() < 90.0),
            "elevations_deg",
            || "every elevation must be finite and within (-90°, 90°)".into(),
        )?;
        ensure(
            self.elevations_deg.windows(2).all(|w| w[0] <= w[1]),
            "elevations_deg",
            || "elevations must be ascending (ring 0 = lowest beam)".into(),
        )?;
        let r = self.azimuth_resolution_deg;
        ensure(r.is_finite() && r >= 0.01 && r <= 10.0, "azimuth_resolution_deg", || format!("{r} not in [0.01, 10]"))?;
        ensure(self.rotation_hz.is_finite() && self.rotation_hz > 0.0, "rotation_hz", || format!("{} must be > 0", self.rotation_hz))?;
        ensure(self.max_range_m.is_finite() && self.max_range_m > 0.0, "max_range_m", || format!("{} must be > 0", self.max_range_m))?;
        ensure(
            self.min_range_m.is_finite() && self.min_range_m >= 0.0 && self.min_range_m < self.max_range_m,
            "min_range_m",
            || format!("{} must be in [0, max_range_m)", self.min_range_m),
        )?;
        ensure(
            self.mount_height_m.is_finite() && self.mount_height_m > 0.0 && self.mount_height_m < 10.0,
            "mount_height_m",
            || format!("{} not in (0, 10)", self.mount_height_m),
        )?;
        ensure(self.range_noise_m.is_finite() && (0.0..=1.0).contains(&self.range_noise_m), "range_noise_m", || {
            format!("{} not in [0, 1]", self.range_noise_m)
        })?;
        ensure(self.intensity_noise.is_finite() && (0.0..=1.0).contains(&self.intensity_noise), "intensity_noise", || {
            format!("{} not in [0, 1]", self.intensity_noise)
        })?;
        ensure((0.0..=1.0).contains(&self.random_dropout), "random_dropout", || format!("{} not in [0, 1]", self.random_dropout))?;
        ensure(self.range_10pct_m.is_finite() && self.range_10pct_m > 0.0, "range_10pct_m", || {
            format!("{} must be > 0", self.range_10pct_m)
        })?;
        ensure(self.intensity_scale.is_finite() && (0.0..=10.0).contains(&self.intensity_scale), "intensity_scale", || {
            format!("{} not in [0, 10]", self.intensity_scale)
        })?;
        Ok(())
    }
}

/// What a point hit. `Object` carries the object id (stable in a drive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PointSource {
    Ground,
    Static(StaticKind),
    Object(u32),
}

/// One revolution: points in the sensor frame (x, y, z, intensity 0..1,
/// ring = beam index, time = seconds since the start of the sweep) and, for
/// each point, what it hit.
#[derive(Debug, Clone, PartialEq)]
pub struct Scan {
    pub points: Points,
    pub sources: Vec<PointSource>,
    /// The sensor pose in the world when the scan was taken.
    pub sensor: Pose,
}

impl Scan {
    /// Number of points on each object that was hit (for labels).
    pub fn object_point_counts(&self) -> BTreeMap<u32, usize> {
        let mut out = BTreeMap::new();
        for s in &self.sources {
            if let PointSource::Object(id) = s {
                *out.entry(*id).or_insert(0) += 1;
            }
        }
        out
    }

    /// The scan restricted to a front camera's horizontal field of view
    /// (see [`crop_to_camera_fov`]), sources kept aligned.
    pub fn crop_to_camera_fov(&self, half_fov_deg: f64) -> Scan {
        self.keep(&fov_mask(&self.points, half_fov_deg))
    }

    /// The scan restricted to an angular window (e.g. [`KITTI_IMAGE_WINDOW_DEG`]).
    pub fn crop_to_window(&self, window: &FovWindow) -> Scan {
        self.keep(&window.mask(&self.points))
    }

    fn keep(&self, keep: &[bool]) -> Scan {
        let mut points = self.points.clone();
        points.retain_mask(keep);
        let sources = self.sources.iter().zip(keep).filter(|(_, k)| **k).map(|(s, _)| *s).collect();
        Scan { points, sources, sensor: self.sensor }
    }
}

/// Keeps the points in front of the sensor with |atan2(y, x)| ≤ half_fov_deg,
/// as KITTI's object clouds are cropped to the front camera
/// ([`KITTI_CAMERA_HALF_FOV_DEG`]).
pub fn crop_to_camera_fov(points: &Points, half_fov_deg: f64) -> Points {
    let keep = fov_mask(points, half_fov_deg);
    let mut out = points.clone();
    out.retain_mask(&keep);
    out
}

fn fov_mask(points: &Points, half_fov_deg: f64) -> Vec<bool> {
    let half = half_fov_deg.to_radians();
    points.x.iter().zip(&points.y).map(|(&x, &y)| x > 0.0 && (y as f64).atan2(x as f64).abs() <= half).collect()
}

/// A configured sensor, ready to scan.
#[derive(Debug, Clone)]
pub struct Lidar {
    config: LidarConfig,
    /// (cos, sin) of each beam's elevation.
    beams: Vec<(f64, f64)>,
    columns: usize,
}

/// Azimuth bins for culling (0.5° each).
const BINS: usize = 720;

struct Target<'a> {
    body: &'a Body,
    /// Horizontal distance from the sensor to the body's bounding circle: no
    /// hit on it can be nearer.
    near: f64,
    source: PointSource,
}

/// One ray's result before it becomes a point.
struct Return {
    point: Point,
    source: PointSource,
}

impl Lidar {
    pub fn new(config: LidarConfig) -> Result<Self, SimError> {
        config.validate()?;
        let beams = config.elevations_deg.iter().map(|e| (e.to_radians().cos(), e.to_radians().sin())).collect();
        let columns = (360.0 / config.azimuth_resolution_deg).round().max(1.0) as usize;
        Ok(Self { config, beams, columns })
    }

    pub fn config(&self) -> &LidarConfig {
        &self.config
    }

    /// Azimuth columns per revolution.
    pub fn columns(&self) -> usize {
        self.columns
    }

    /// Rays fired per revolution (columns × beams).
    pub fn rays_per_revolution(&self) -> usize {
        self.columns * self.beams.len()
    }

    /// Casts one revolution at the snapshot's ego pose. Deterministic in
    /// (scene, snapshot, seed) whatever rayon's thread count.
    pub fn scan(&self, scene: &Scene, snapshot: &Snapshot, seed: u64) -> Scan {
        let sensor = snapshot.sensor_pose(self.config.mount_height_m);
        let mut targets: Vec<Target> = Vec::with_capacity(scene.statics.len() + snapshot.objects.len());
        for s in &scene.statics {
            targets.push(self.target(&s.body, PointSource::Static(s.kind), &sensor));
        }
        for o in &snapshot.objects {
            targets.push(self.target(&o.body, PointSource::Object(o.id), &sensor));
        }
        targets.sort_by(|a, b| a.near.total_cmp(&b.near));
        let bins = azimuth_bins(&targets, &sensor);

        // Chunks of columns are the unit of parallel work; results are joined
        // in column order (rayon's indexed collect), hence thread-independent.
        const CHUNK: usize = 32;
        let chunks = self.columns.div_ceil(CHUNK);
        let parts: Vec<Vec<Return>> = (0..chunks)
            .into_par_iter()
            .map(|k| {
                let mut out = Vec::with_capacity(CHUNK * self.beams.len());
                for c in k * CHUNK..((k + 1) * CHUNK).min(self.columns) {
                    self.cast_column(c, scene, &targets, &bins, &sensor, seed, &mut out);
                }
                out
            })
            .collect();
        let n = parts.iter().map(Vec::len).sum();
        let mut points = Points::with_capacity(n, true, true);
        let mut sources = Vec::with_capacity(n);
        for r in parts.into_iter().flatten() {
            points.push(r.point);
            sources.push(r.source);
        }
        Scan { points, sources, sensor }
    }

    fn target<'a>(&self, body: &'a Body, source: PointSource, sensor: &Pose) -> Target<'a> {
        let local = sensor.to_local(body.origin);
        let d = local[0].hypot(local[1]);
        Target { body, near: (d - body.radius_xy()).max(0.0), source }
    }

    /// Firing azimuth of column `c`: the head spins clockwise seen from above
    /// (decreasing azimuth) starting behind the vehicle, where KITTI's sweeps
    /// start and end.
    fn azimuth(&self, c: usize) -> f64 {
        let a = PI - (c as f64 + 0.5) * (2.0 * PI / self.columns as f64);
        if a <= -PI { a + 2.0 * PI } else { a }
    }

    #[allow(clippy::too_many_arguments)]
    fn cast_column(
        &self,
        c: usize,
        scene: &Scene,
        targets: &[Target],
        bins: &[Vec<u32>],
        sensor: &Pose,
        seed: u64,
        out: &mut Vec<Return>,
    ) {
        let cfg = &self.config;
        let mut rng = Rng::stream(seed, c as u64);
        let az = self.azimuth(c);
        let (sa, ca) = az.sin_cos();
        let (sy, cy) = sensor.yaw.sin_cos();
        let bin = &bins[bin_of(az)];
        let time = (c as f64 / self.columns as f64 / cfg.rotation_hz) as f32;
        // Power of a 10 % target at range_10pct_m: the detection threshold.
        let threshold = 0.1 / (cfg.range_10pct_m * cfg.range_10pct_m);
        for (ring, &(ce, se)) in self.beams.iter().enumerate() {
            let local = [ce * ca, ce * sa, se];
            let dir = [cy * local[0] - sy * local[1], sy * local[0] + cy * local[1], local[2]];
            let ray = Ray { origin: sensor.position, dir };
            let mut best_t = cfg.max_range_m;
            let mut best: Option<(f64, [f64; 3], Material, PointSource)> = None;
            for &ti in bin {
                let t = &targets[ti as usize];
                if t.near >= best_t {
                    break;
                }
                if let Some(h) = t.body.intersect(&ray, best_t) {
                    best_t = h.t;
                    best = Some((h.t, h.normal, h.material, t.source));
                }
            }
            if let Some((t, n)) = scene.ground.intersect(&ray, best_t) {
                let p = ray.at(t);
                best = Some((t, n, scene.ground_material(p[0], p[1]), PointSource::Ground));
            }
            // Draw a fixed number of numbers per ray so that one ray's fate
            // does not shift the randomness of the rays after it.
            let (u_det, u_drop, n_range, n_int) = (rng.uniform(), rng.uniform(), rng.normal(), rng.normal());
            let Some((t, normal, mat, source)) = best else { continue };
            if t < cfg.min_range_m {
                continue;
            }
            let cos_inc = dot(normal, dir).abs().min(1.0);
            let effective = if mat.retroreflective { 8.0 } else { mat.albedo as f64 * cos_inc.sqrt() };
            let power = effective / (t * t);
            let p_detect = 1.0 / (1.0 + (-(power / threshold).ln() / 0.3).exp());
            if u_det >= p_detect || u_drop < cfg.random_dropout {
                continue;
            }
            // Range error clamped at 2.5 σ: time-of-flight errors are bounded
            // in practice, and an unbounded tail would throw a few points of
            // every object outside its (5 cm margin) label box.
            let r = t + cfg.range_noise_m * n_range.clamp(-2.5, 2.5);
            let intensity = if mat.retroreflective {
                0.85 + 0.15 * (0.5 + 0.5 * n_int.tanh())
            } else {
                // Half Lambertian, half incidence-independent: KITTI's
                // reflectance is partly normalised by the sensor, so grazing
                // road returns stay around 0.1–0.3 rather than near zero.
                (cfg.intensity_model.intensity(&mat, cos_inc) + cfg.intensity_noise * n_int).clamp(0.0, 1.0)
            };
            let intensity = if cfg.intensity_scale == 1.0 { intensity } else { (intensity * cfg.intensity_scale).min(1.0) };
            out.push(Return {
                point: Point {
                    x: (local[0] * r) as f32,
                    y: (local[1] * r) as f32,
                    z: (local[2] * r) as f32,
                    intensity: intensity as f32,
                    ring: ring as u16,
                    time,
                },
                source,
            });
        }
    }
}

fn bin_of(az: f64) -> usize {
    (((az + PI) / (2.0 * PI) * BINS as f64) as usize).min(BINS - 1)
}

/// For each azimuth bin, the targets whose bounding circle overlaps it, in
/// increasing `near` order (targets are sorted already).
fn azimuth_bins(targets: &[Target], sensor: &Pose) -> Vec<Vec<u32>> {
    let mut bins: Vec<Vec<u32>> = vec![Vec::new(); BINS];
    let bin_w = 2.0 * PI / BINS as f64;
    for (i, t) in targets.iter().enumerate() {
        let local = sensor.to_local(t.body.origin);
        let d = local[0].hypot(local[1]);
        let r = t.body.radius_xy() + 0.05;
        if d <= r {
            bins.iter_mut().for_each(|b| b.push(i as u32));
            continue;
        }
        let az = local[1].atan2(local[0]);
        let half = (r / d).asin();
        let first = bin_of(az - half + if az - half < -PI { 2.0 * PI } else { 0.0 }) as i64;
        let span = (2.0 * half / bin_w).ceil() as i64 + 2;
        for k in 0..=span {
            bins[(first + k).rem_euclid(BINS as i64) as usize].push(i as u32);
        }
    }
    bins
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_validate_and_bad_configs_fail() {
        let l = Lidar::new(LidarConfig::hdl64e()).unwrap();
        assert_eq!(l.config().elevations_deg.len(), 64);
        assert!((l.config().elevations_deg[63] - 2.0).abs() < 1e-9 && (l.config().elevations_deg[0] + 24.8).abs() < 1e-9);
        assert_eq!(Lidar::new(LidarConfig::vlp32()).unwrap().config().elevations_deg.len(), 32);
        let bad = |f: fn(&mut LidarConfig)| {
            let mut c = LidarConfig::hdl64e();
            f(&mut c);
            matches!(Lidar::new(c), Err(SimError::InvalidConfig { .. }))
        };
        assert!(bad(|c| c.elevations_deg.clear()));
        assert!(bad(|c| c.max_range_m = 0.0));
        assert!(bad(|c| c.max_range_m = -5.0));
        assert!(bad(|c| c.azimuth_resolution_deg = 0.0));
        assert!(bad(|c| c.random_dropout = 1.5));
        assert!(bad(|c| c.elevations_deg.reverse()));
    }

    #[test]
    fn the_kitti_intensity_model_darkens_glossy_surfaces_and_keeps_the_road_near_0_3() {
        let asphalt = Material::new(MaterialKind::Asphalt, 0.30, [0; 3]);
        let paint = Material::new(MaterialKind::Paint, 0.45, [0; 3]);
        let (lambert, kitti) = (IntensityModel::Lambert, IntensityModel::Kitti);
        // the road seen at grazing incidence (cos 0.1 .. 0.3)
        for cos in [0.1, 0.2, 0.3] {
            assert!((lambert.intensity(&asphalt, cos) - 0.3 * (0.5 + 0.5 * cos)).abs() < 1e-6);
            assert!((0.28..0.33).contains(&kitti.intensity(&asphalt, cos)), "{cos}");
        }
        // paint: dark away from the normal, a glint facing the sensor
        assert!(kitti.intensity(&paint, 0.5) < 0.08 && lambert.intensity(&paint, 0.5) > 0.3);
        assert!(kitti.intensity(&paint, 1.0) > 0.6);
        assert_eq!("kitti".parse::<IntensityModel>().unwrap(), kitti);
        assert!("phong".parse::<IntensityModel>().is_err());
        assert_eq!(LidarConfig::hdl64e().intensity_model, lambert);
    }

    #[test]
    fn flat_empty_world_gives_ground_rings_at_the_right_ranges() {
        let scene = crate::dataset::sim::tests::empty_config().generate(1).unwrap();
        let mut lc = LidarConfig::hdl64e();
        lc.range_noise_m = 0.0;
        let lidar = Lidar::new(lc).unwrap();
        let scan = lidar.scan(&scene, &scene.snapshot(0.0), 3);
        let ring0: Vec<f32> = (0..scan.points.len())
            .filter(|&i| scan.points.ring.as_ref().map(|r| r[i]) == Some(0) && scan.sources[i] == PointSource::Ground)
            .map(|i| scan.points.z[i])
            .collect();
        assert!(!ring0.is_empty());
        // The ground on the road is 1.73 m below the sensor (sidewalks are
        // kerb-height higher).
        assert!(ring0.iter().any(|z| (z + 1.73).abs() < 1e-3));
        let r = ring0.iter().filter(|z| (*z + 1.73).abs() < 1e-3).count();
        assert!(r > 100);
        // Times lie within one sweep.
        let times = scan.points.time.as_ref().unwrap();
        assert!(times.iter().all(|t| (0.0..0.1).contains(t)));
    }
}
