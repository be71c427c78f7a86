//! LiDAR anomaly injection for the Eloss monitor.
//!
//! Each [`Anomaly`] corrupts a cloud in the sensor frame with a severity in
//! [0, 1] (named levels: low 0.25, medium 0.5, high 1.0) and a seed, and
//! reports an [`AnomalyTag`] (kind + severity, serde-serialisable for frame
//! labels) plus where it acted ([`AnomalyEffect`]).
//!
//! Severity is monotonic by construction: every random quantity is drawn
//! from the seed independently of the severity, and severity only moves a
//! threshold (how many of the pre-drawn noise points are added, how wide the
//! pre-placed sector is, which pre-drawn points are replaced…). So for one
//! seed, a higher severity changes a superset of what a lower one changes.
//!
//! | kind | what happens at severity s |
//! |---|---|
//! | noise | s·max_fraction·N uniform random points within 50 m |
//! | sector_dropout | points in an azimuth sector of width s·max_width_deg removed |
//! | beam_dropout | round(s·max_fraction·beams) whole rings removed |
//! | fog / rain / snow | returns replaced by near-range, low-intensity backscatter (fog 30 %·s, rain 8 %·s, snow 15 %·s of points); far returns attenuated and lost |
//! | phantom | a car-sized cluster of s·max_points points 8–25 m ahead (a spoofing attack) |
//! | occlusion | a solid-angle patch (dirt on the window) of half-widths s·max_half_width_deg × 0.4·that removed |
//! | miscalibration | the cloud rotated by s·(roll, pitch, yaw) maxima (extrinsic error) |
//! | intensity_corruption | intensity ← (1 − s)·intensity + s·uniform |
//! | stale_frame | (sequences) a fraction s·max_fraction of frames repeat the previous frame |

use std::f64::consts::PI;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{ensure, Rng, SimError};
use crate::cloud::{Point, Points};
use crate::geometry::{wrap_angle, Box3D};

/// A severity in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Severity(f64);

impl Severity {
    pub const LOW: Severity = Severity(0.25);
    pub const MEDIUM: Severity = Severity(0.5);
    pub const HIGH: Severity = Severity(1.0);

    pub fn new(v: f64) -> Result<Self, SimError> {
        if (0.0..=1.0).contains(&v) {
            Ok(Self(v))
        } else {
            Err(SimError::SeverityOutOfRange(v))
        }
    }

    pub fn value(self) -> f64 {
        self.0
    }
}

impl TryFrom<f64> for Severity {
    type Error = SimError;
    fn try_from(v: f64) -> Result<Self, SimError> {
        Self::new(v)
    }
}

impl From<Severity> for f64 {
    fn from(s: Severity) -> f64 {
        s.0
    }
}

impl FromStr for Severity {
    type Err = SimError;
    /// "low", "medium", "high" or a number in [0, 1].
    fn from_str(s: &str) -> Result<Self, SimError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "low" => Ok(Self::LOW),
            "medium" => Ok(Self::MEDIUM),
            "high" => Ok(Self::HIGH),
            other => other.parse::<f64>().map_err(|_| SimError::UnknownSeverity(s.to_string())).and_then(Self::new),
        }
    }
}

/// The anomaly kinds, as written in labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyKind {
    Noise,
    SectorDropout,
    BeamDropout,
    Fog,
    Rain,
    Snow,
    Phantom,
    Occlusion,
    Miscalibration,
    IntensityCorruption,
    StaleFrame,
}

/// Which anomaly applies to a frame, and how strongly (for labels).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AnomalyTag {
    pub kind: AnomalyKind,
    pub severity: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeatherKind {
    Fog,
    Rain,
    Snow,
}

/// An anomaly with its parameters (the effect at severity 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Anomaly {
    Noise { max_fraction: f64 },
    SectorDropout { max_width_deg: f64 },
    BeamDropout { max_fraction: f64 },
    Weather { weather: WeatherKind },
    Phantom { max_points: usize },
    Occlusion { max_half_width_deg: f64 },
    Miscalibration { max_roll_deg: f64, max_pitch_deg: f64, max_yaw_deg: f64 },
    IntensityCorruption,
    Stale { max_fraction: f64 },
}

/// An (azimuth, elevation) window in the sensor frame, degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AngularWindow {
    pub azimuth_deg: f64,
    pub half_azimuth_deg: f64,
    pub elevation_deg: f64,
    /// 90 for a full-height sector.
    pub half_elevation_deg: f64,
}

impl AngularWindow {
    pub fn contains(&self, x: f64, y: f64, z: f64) -> bool {
        let az = y.atan2(x);
        let el = z.atan2(x.hypot(y));
        wrap_angle(az - self.azimuth_deg.to_radians()).abs() <= self.half_azimuth_deg.to_radians()
            && (el - self.elevation_deg.to_radians()).abs() <= self.half_elevation_deg.to_radians()
    }
}

/// What an application did: the tag and, where meaningful, where.
#[derive(Debug, Clone, PartialEq)]
pub struct AnomalyEffect {
    pub tag: AnomalyTag,
    /// Phantom: the spoofed cluster's box (sensor frame).
    pub region: Option<Box3D>,
    /// Sector dropout, occlusion: the emptied window.
    pub window: Option<AngularWindow>,
    /// Beam dropout: the rings removed.
    pub beams: Vec<u16>,
    /// Miscalibration: the applied (roll, pitch, yaw) in degrees; points were
    /// mapped p → Rz(yaw)·Ry(pitch)·Rx(roll)·p.
    pub rotation_rpy_deg: Option<[f64; 3]>,
}

impl AnomalyEffect {
    fn tag_only(tag: AnomalyTag) -> Self {
        Self { tag, region: None, window: None, beams: Vec::new(), rotation_rpy_deg: None }
    }
}

impl Anomaly {
    /// Every kind with its default parameters (weather once per kind).
    pub fn defaults() -> Vec<Anomaly> {
        vec![
            Anomaly::Noise { max_fraction: 0.05 },
            Anomaly::SectorDropout { max_width_deg: 120.0 },
            Anomaly::BeamDropout { max_fraction: 0.5 },
            Anomaly::Weather { weather: WeatherKind::Fog },
            Anomaly::Weather { weather: WeatherKind::Rain },
            Anomaly::Weather { weather: WeatherKind::Snow },
            Anomaly::Phantom { max_points: 400 },
            Anomaly::Occlusion { max_half_width_deg: 30.0 },
            Anomaly::Miscalibration { max_roll_deg: 2.0, max_pitch_deg: 2.0, max_yaw_deg: 5.0 },
            Anomaly::IntensityCorruption,
            Anomaly::Stale { max_fraction: 0.5 },
        ]
    }

    /// The default anomaly of a kind.
    pub fn default_for(kind: AnomalyKind) -> Anomaly {
        Self::defaults().into_iter().find(|a| a.kind() == kind).unwrap_or(Anomaly::IntensityCorruption)
    }

    pub fn kind(&self) -> AnomalyKind {
        match self {
            Anomaly::Noise { .. } => AnomalyKind::Noise,
            Anomaly::SectorDropout { .. } => AnomalyKind::SectorDropout,
            Anomaly::BeamDropout { .. } => AnomalyKind::BeamDropout,
            Anomaly::Weather { weather: WeatherKind::Fog } => AnomalyKind::Fog,
            Anomaly::Weather { weather: WeatherKind::Rain } => AnomalyKind::Rain,
            Anomaly::Weather { weather: WeatherKind::Snow } => AnomalyKind::Snow,
            Anomaly::Phantom { .. } => AnomalyKind::Phantom,
            Anomaly::Occlusion { .. } => AnomalyKind::Occlusion,
            Anomaly::Miscalibration { .. } => AnomalyKind::Miscalibration,
            Anomaly::IntensityCorruption => AnomalyKind::IntensityCorruption,
            Anomaly::Stale { .. } => AnomalyKind::StaleFrame,
        }
    }

    pub fn validate(&self) -> Result<(), SimError> {
        let frac = |v: f64| (0.0..=1.0).contains(&v);
        match *self {
            Anomaly::Noise { max_fraction } => ensure(frac(max_fraction), "noise max_fraction", || format!("{max_fraction} not in [0, 1]")),
            Anomaly::BeamDropout { max_fraction } => {
                ensure(frac(max_fraction), "beam_dropout max_fraction", || format!("{max_fraction} not in [0, 1]"))
            }
            Anomaly::Stale { max_fraction } => ensure(frac(max_fraction), "stale max_fraction", || format!("{max_fraction} not in [0, 1]")),
            Anomaly::SectorDropout { max_width_deg } => ensure(
                max_width_deg.is_finite() && max_width_deg > 0.0 && max_width_deg <= 360.0,
                "sector_dropout max_width_deg",
                || format!("{max_width_deg} not in (0, 360]"),
            ),
            Anomaly::Occlusion { max_half_width_deg } => ensure(
                max_half_width_deg.is_finite() && max_half_width_deg > 0.0 && max_half_width_deg <= 90.0,
                "occlusion max_half_width_deg",
                || format!("{max_half_width_deg} not in (0, 90]"),
            ),
            Anomaly::Phantom { max_points } => {
                ensure(max_points <= 1_000_000, "phantom max_points", || format!("{max_points} > 1000000"))
            }
            Anomaly::Miscalibration { max_roll_deg, max_pitch_deg, max_yaw_deg } => ensure(
                [max_roll_deg, max_pitch_deg, max_yaw_deg].iter().all(|a| a.is_finite() && a.abs() <= 45.0),
                "miscalibration angles",
                || "each maximum must be finite and within ±45°".into(),
            ),
            Anomaly::Weather { .. } | Anomaly::IntensityCorruption => Ok(()),
        }
    }

    /// Corrupts one cloud (sensor frame). Sequence-only anomalies (stale
    /// frames) return [`SimError::NeedsSequence`].
    pub fn apply(&self, points: &mut Points, severity: Severity, seed: u64) -> Result<AnomalyEffect, SimError> {
        self.validate()?;
        let s = severity.value();
        let tag = AnomalyTag { kind: self.kind(), severity: s };
        let mut rng = Rng::stream(seed, 0xA770 + self.kind() as u64);
        let mut effect = AnomalyEffect::tag_only(tag);
        match *self {
            Anomaly::Noise { max_fraction } => {
                let n = (s * max_fraction * points.len() as f64).round() as usize;
                let rings = RingTable::of(points);
                let t_max = max_time(points);
                for _ in 0..n {
                    let (r, az, z) = (rng.range(1.0, 50.0), rng.range(-PI, PI), rng.range(-2.5, 3.0));
                    let (x, y) = (r * az.cos(), r * az.sin());
                    let intensity = rng.uniform() as f32;
                    let time = (rng.uniform() * t_max) as f32;
                    points.push(Point { x: x as f32, y: y as f32, z: z as f32, intensity, ring: rings.nearest(x, y, z), time });
                }
            }
            Anomaly::SectorDropout { max_width_deg } => {
                let window = AngularWindow {
                    azimuth_deg: rng.range(-180.0, 180.0),
                    half_azimuth_deg: s * max_width_deg / 2.0,
                    elevation_deg: 0.0,
                    half_elevation_deg: 90.0,
                };
                remove_window(points, &window);
                effect.window = Some(window);
            }
            Anomaly::Occlusion { max_half_width_deg } => {
                // A patch in front of the vehicle, at or below the horizon,
                // where dirt hides the most useful points.
                let window = AngularWindow {
                    azimuth_deg: rng.range(-60.0, 60.0),
                    half_azimuth_deg: s * max_half_width_deg,
                    elevation_deg: rng.range(-15.0, -2.0),
                    half_elevation_deg: 0.4 * s * max_half_width_deg,
                };
                remove_window(points, &window);
                effect.window = Some(window);
            }
            Anomaly::BeamDropout { max_fraction } => {
                let rings = ring_ids(points);
                let beams = rings.iter().copied().max().map_or(0, |m| m as usize + 1);
                // A seeded permutation; severity takes a prefix of it.
                let mut order: Vec<u16> = (0..beams as u16).collect();
                for i in (1..order.len()).rev() {
                    order.swap(i, rng.below(i + 1));
                }
                let k = (s * max_fraction * beams as f64).round() as usize;
                let mut dropped = vec![false; beams];
                for &b in &order[..k.min(beams)] {
                    dropped[b as usize] = true;
                }
                let keep: Vec<bool> = rings.iter().map(|&r| !dropped[r as usize]).collect();
                points.retain_mask(&keep);
                effect.beams = order[..k.min(beams)].to_vec();
                effect.beams.sort_unstable();
            }
            Anomaly::Weather { weather } => weather_apply(points, weather, s, &mut rng),
            Anomaly::Phantom { max_points } => {
                effect.region = Some(phantom_apply(points, s, max_points, &mut rng));
            }
            Anomaly::Miscalibration { max_roll_deg, max_pitch_deg, max_yaw_deg } => {
                let mut sign = || if rng.chance(0.5) { 1.0 } else { -1.0 };
                let rpy = [s * max_roll_deg * sign(), s * max_pitch_deg * sign(), s * max_yaw_deg * sign()];
                let m = rotation_rpy(rpy);
                for i in 0..points.len() {
                    let p = [points.x[i] as f64, points.y[i] as f64, points.z[i] as f64];
                    let q = [0, 1, 2].map(|r| m[r][0] * p[0] + m[r][1] * p[1] + m[r][2] * p[2]);
                    points.x[i] = q[0] as f32;
                    points.y[i] = q[1] as f32;
                    points.z[i] = q[2] as f32;
                }
                effect.rotation_rpy_deg = Some(rpy);
            }
            Anomaly::IntensityCorruption => {
                for v in points.intensity.iter_mut() {
                    let u = rng.uniform() as f32;
                    *v = (1.0 - s as f32) * *v + s as f32 * u;
                }
            }
            Anomaly::Stale { .. } => return Err(SimError::NeedsSequence("stale_frame")),
        }
        Ok(effect)
    }

    /// Applies the anomaly across a sequence of frames and returns, per frame,
    /// the tag when the frame was changed. Stale frames repeat the previous
    /// (possibly already stale) frame; the other kinds hit every frame, each
    /// with its own random stream.
    pub fn apply_sequence(&self, frames: &mut [Points], severity: Severity, seed: u64) -> Result<Vec<Option<AnomalyTag>>, SimError> {
        self.validate()?;
        let s = severity.value();
        if let Anomaly::Stale { max_fraction } = *self {
            let mut rng = Rng::stream(seed, 0x57A1E);
            let mut tags = vec![None; frames.len()];
            for i in 0..frames.len() {
                let u = rng.uniform();
                if i > 0 && u < s * max_fraction {
                    frames[i] = frames[i - 1].clone();
                    tags[i] = Some(AnomalyTag { kind: AnomalyKind::StaleFrame, severity: s });
                }
            }
            return Ok(tags);
        }
        frames
            .iter_mut()
            .enumerate()
            .map(|(i, f)| self.apply(f, severity, super::mix64(seed ^ i as u64)).map(|e| Some(e.tag)))
            .collect()
    }
}

/// Ring of each point: the stored ring, or (no ring channel) the elevation
/// quantised to 0.4° bins as a stand-in for beams.
fn ring_ids(points: &Points) -> Vec<u16> {
    match &points.ring {
        Some(r) => r.clone(),
        None => (0..points.len())
            .map(|i| {
                let el = (points.z[i] as f64).atan2((points.x[i] as f64).hypot(points.y[i] as f64)).to_degrees();
                ((el + 90.0) / 0.4).clamp(0.0, u16::MAX as f64) as u16
            })
            .collect(),
    }
}

/// Mean elevation per ring, to give injected points a plausible ring.
struct RingTable {
    elevations: Vec<(u16, f64)>,
}

impl RingTable {
    fn of(points: &Points) -> Self {
        let Some(rings) = &points.ring else { return Self { elevations: Vec::new() } };
        let mut acc: std::collections::BTreeMap<u16, (f64, usize)> = Default::default();
        for (i, &r) in rings.iter().enumerate() {
            let el = (points.z[i] as f64).atan2((points.x[i] as f64).hypot(points.y[i] as f64));
            let e = acc.entry(r).or_insert((0.0, 0));
            e.0 += el;
            e.1 += 1;
        }
        Self { elevations: acc.into_iter().map(|(r, (s, n))| (r, s / n as f64)).collect() }
    }

    fn nearest(&self, x: f64, y: f64, z: f64) -> u16 {
        let el = z.atan2(x.hypot(y));
        self.elevations.iter().min_by(|a, b| (a.1 - el).abs().total_cmp(&(b.1 - el).abs())).map_or(0, |e| e.0)
    }
}

fn max_time(points: &Points) -> f64 {
    points.time.as_ref().and_then(|t| t.iter().copied().reduce(f32::max)).map_or(0.1, |t| t as f64)
}

fn remove_window(points: &mut Points, w: &AngularWindow) {
    let keep: Vec<bool> =
        (0..points.len()).map(|i| !w.contains(points.x[i] as f64, points.y[i] as f64, points.z[i] as f64)).collect();
    points.retain_mask(&keep);
}

/// Backscatter and attenuation. Every point draws the same four numbers
/// whatever the severity (see the module docs on monotonicity).
fn weather_apply(points: &mut Points, weather: WeatherKind, s: f64, rng: &mut Rng) {
    // (fraction replaced at s = 1, extinction per metre at s = 1)
    let (p_max, alpha_max) = match weather {
        WeatherKind::Fog => (0.30, 0.04),
        WeatherKind::Rain => (0.08, 0.01),
        WeatherKind::Snow => (0.15, 0.02),
    };
    let (p, alpha) = (s * p_max, s * alpha_max);
    let mut keep = vec![true; points.len()];
    for i in 0..points.len() {
        let (u, v, a, b) = (rng.uniform(), rng.uniform(), rng.uniform(), rng.uniform());
        let (x, y, z) = (points.x[i] as f64, points.y[i] as f64, points.z[i] as f64);
        let r = (x * x + y * y + z * z).sqrt().max(1e-6);
        if u < p {
            // The beam scatters off droplets/flakes close to the sensor.
            let (rb, ib) = match weather {
                WeatherKind::Fog => ((0.5 - 2.0 * (1.0 - a).ln()).min(8.0), 0.04 * b),
                WeatherKind::Rain => (1.0 + 24.0 * a * a, 0.08 * b),
                WeatherKind::Snow => (1.0 + 14.0 * a, 0.05 + 0.3 * b),
            };
            let k = (rb / r).min(1.0);
            points.x[i] = (x * k) as f32;
            points.y[i] = (y * k) as f32;
            points.z[i] = (z * k) as f32;
            points.intensity[i] = ib as f32;
            continue;
        }
        // Two-way extinction: far returns weaken and drop out.
        let trans = (-2.0 * alpha * r).exp();
        if v > trans {
            keep[i] = false;
        }
        points.intensity[i] *= trans as f32;
    }
    points.retain_mask(&keep);
}

/// A car-sized cluster on the visible faces of a box 8–25 m ahead, standing
/// on the ground estimated from nearby points. Returns its box.
fn phantom_apply(points: &mut Points, s: f64, max_points: usize, rng: &mut Rng) -> Box3D {
    let az = rng.range(-30.0_f64, 30.0).to_radians();
    let range = rng.range(8.0, 25.0);
    let yaw = rng.range(-PI, PI);
    let size = [rng.range(3.6, 4.6), rng.range(1.6, 1.9), rng.range(1.4, 1.7)];
    let (cx, cy) = (range * az.cos(), range * az.sin());
    // Ground: the 10th percentile z of points within 3 m, else KITTI's mount.
    let mut near: Vec<f32> = (0..points.len())
        .filter(|&i| ((points.x[i] as f64 - cx).powi(2) + (points.y[i] as f64 - cy).powi(2)) < 9.0)
        .map(|i| points.z[i])
        .collect();
    near.sort_by(f32::total_cmp);
    let ground = near.get(near.len() / 10).map_or(-1.73, |z| *z as f64);
    let bbox = Box3D { center: [cx, cy, ground + size[2] / 2.0], size, yaw };
    // Visible faces: sides whose outward normal faces the sensor, and the top.
    let (sn, cs) = yaw.sin_cos();
    let (hl, hw, hh) = (size[0] / 2.0, size[1] / 2.0, size[2] / 2.0);
    // (face centre, half-extent vectors) in the box frame.
    let faces: [[[f64; 3]; 3]; 5] = [
        [[hl, 0.0, 0.0], [0.0, hw, 0.0], [0.0, 0.0, hh]],
        [[-hl, 0.0, 0.0], [0.0, hw, 0.0], [0.0, 0.0, hh]],
        [[0.0, hw, 0.0], [hl, 0.0, 0.0], [0.0, 0.0, hh]],
        [[0.0, -hw, 0.0], [hl, 0.0, 0.0], [0.0, 0.0, hh]],
        [[0.0, 0.0, hh], [hl, 0.0, 0.0], [0.0, hw, 0.0]],
    ];
    let to_world = |l: [f64; 3]| [cx + cs * l[0] - sn * l[1], cy + sn * l[0] + cs * l[1], bbox.center[2] + l[2]];
    let visible: Vec<[[f64; 3]; 3]> = faces
        .iter()
        .copied()
        .filter(|[c, ..]| {
            let w = to_world(*c);
            let n = [w[0] - cx, w[1] - cy, w[2] - bbox.center[2]];
            // Outward normal · (face centre - sensor) < 0 means it faces us.
            n[0] * w[0] + n[1] * w[1] + n[2] * w[2] < 0.0
        })
        .collect();
    let rings = RingTable::of(points);
    let n = (s * max_points as f64).round() as usize;
    for _ in 0..n {
        let [c, u, v] = visible.get(rng.below(visible.len())).copied().unwrap_or(faces[4]);
        let (a, b) = (rng.range(-1.0, 1.0), rng.range(-1.0, 1.0));
        let l = [c[0] + a * u[0] + b * v[0], c[1] + a * u[1] + b * v[1], c[2] + a * u[2] + b * v[2]];
        let w = to_world(l);
        let intensity = rng.range(0.1, 0.5) as f32;
        let time = ((PI - w[1].atan2(w[0])) / (2.0 * PI) * 0.1) as f32;
        points.push(Point { x: w[0] as f32, y: w[1] as f32, z: w[2] as f32, intensity, ring: rings.nearest(w[0], w[1], w[2]), time });
    }
    bbox
}

/// Rz(yaw)·Ry(pitch)·Rx(roll) from degrees.
fn rotation_rpy(rpy_deg: [f64; 3]) -> [[f64; 3]; 3] {
    let [r, p, y] = rpy_deg.map(f64::to_radians);
    let (sr, cr) = r.sin_cos();
    let (sp, cp) = p.sin_cos();
    let (sy, cy) = y.sin_cos();
    [
        [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
        [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
        [-sp, cp * sr, cp * cr],
    ]
}
