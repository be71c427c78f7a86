//! Per-frame randomisation of the LiDAR for sim-to-real training data
//! (issue 14, item 4): what differs between vehicles is drawn anew for every
//! frame, so a detector trained on the frames does not learn one sensor.
//!
//! What varies (each can be switched on alone, `eloss simulate --vary-sensor
//! beams,fov,mount,intensity,dropout` or `all`):
//! * `beams`: the beam count, one of 32 / 64 / 128;
//! * `fov`: the vertical field of view: top beam +2°..+15°, bottom beam
//!   −25°..−15° (HDL-64E: +2/−24.8, VLP-32C: +15/−25, OS-1-128: ±22.5
//!   cropped, VLS-128: +15/−25);
//! * `mount`: the mounting height above the ground, 1.5–2.0 m (the camera is
//!   rigidly attached, so it moves with the LiDAR: KITTI's Tr_velo_to_cam
//!   stays valid);
//! * `intensity`: a gain on the reflectance, 0.6–1.4 (clamped to 1): sensors
//!   and drivers calibrate intensity differently;
//! * `dropout`: random loss of returns, 0–10 %.
//!
//! With `beams` or `fov` varied the beams are spread evenly between the
//! bottom and the top (what most 32/128-beam sensors do); otherwise the base
//! preset's layout is kept. A frame's sensor is a pure function of its seed
//! (its own random stream), so data sets stay reproducible.

use serde::{Deserialize, Serialize};

use super::lidar::LidarConfig;
use super::{ensure, Rng, SimError};

/// Which sensor properties vary, and over what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SensorVariation {
    /// Beam counts to choose from (uniformly); empty: the preset's beams.
    pub beams: Vec<usize>,
    /// Range of the top beam's elevation (degrees); `None`: the preset's FOV.
    pub top_deg: Option<[f64; 2]>,
    /// Range of the bottom beam's elevation (degrees), with `top_deg`.
    pub bottom_deg: Option<[f64; 2]>,
    pub mount_height_m: Option<[f64; 2]>,
    pub intensity_scale: Option<[f64; 2]>,
    pub dropout: Option<[f64; 2]>,
}

/// The names `--vary-sensor` accepts.
pub const VARIATION_NAMES: [&str; 5] = ["beams", "fov", "mount", "intensity", "dropout"];

/// What one frame's sensor was (the `sensors.json` entry of a data set).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SensorDraw {
    pub beams: usize,
    pub top_deg: f64,
    pub bottom_deg: f64,
    pub mount_height_m: f64,
    pub intensity_scale: f64,
    pub dropout: f64,
}

impl SensorDraw {
    pub fn of(config: &LidarConfig) -> Self {
        let el = &config.elevations_deg;
        Self {
            beams: el.len(),
            top_deg: el.last().copied().unwrap_or(0.0),
            bottom_deg: el.first().copied().unwrap_or(0.0),
            mount_height_m: config.mount_height_m,
            intensity_scale: config.intensity_scale,
            dropout: config.random_dropout,
        }
    }
}

impl SensorVariation {
    /// Nothing varies.
    pub fn none() -> Self {
        Self { beams: Vec::new(), top_deg: None, bottom_deg: None, mount_height_m: None, intensity_scale: None, dropout: None }
    }

    /// Every property over the ranges of the module docs.
    pub fn all() -> Self {
        Self::from_names(&VARIATION_NAMES).expect("the names are known")
    }

    /// `beams`, `fov`, `mount`, `intensity`, `dropout` (any subset) or `all`.
    pub fn parse(list: &str) -> Result<Self, SimError> {
        let names: Vec<&str> = list.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
        if names == ["all"] {
            return Ok(Self::all());
        }
        Self::from_names(&names)
    }

    fn from_names(names: &[&str]) -> Result<Self, SimError> {
        let mut v = Self::none();
        for &name in names {
            match name {
                "beams" => v.beams = vec![32, 64, 128],
                "fov" => {
                    v.top_deg = Some([2.0, 15.0]);
                    v.bottom_deg = Some([-25.0, -15.0]);
                }
                "mount" => v.mount_height_m = Some([1.5, 2.0]),
                "intensity" => v.intensity_scale = Some([0.6, 1.4]),
                "dropout" => v.dropout = Some([0.0, 0.1]),
                other => {
                    return Err(SimError::InvalidConfig {
                        what: "vary-sensor",
                        why: format!("`{other}` (expected all or any of {})", VARIATION_NAMES.join(", ")),
                    })
                }
            }
        }
        v.validate()?;
        Ok(v)
    }

    pub fn is_none(&self) -> bool {
        *self == Self::none()
    }

    pub fn validate(&self) -> Result<(), SimError> {
        let range = |what: &'static str, r: Option<[f64; 2]>, lo: f64, hi: f64| {
            ensure(r.is_none_or(|[a, b]| a.is_finite() && b.is_finite() && lo <= a && a <= b && b <= hi), what, || {
                format!("{r:?} must be an ascending range within [{lo}, {hi}]")
            })
        };
        ensure(self.beams.iter().all(|b| (1..=512).contains(b)), "beams", || format!("{:?}: each in 1..=512", self.beams))?;
        range("top_deg", self.top_deg, -89.0, 89.0)?;
        range("bottom_deg", self.bottom_deg, -89.0, 89.0)?;
        ensure(self.top_deg.is_some() == self.bottom_deg.is_some(), "fov", || "top_deg and bottom_deg go together".into())?;
        if let (Some(t), Some(b)) = (self.top_deg, self.bottom_deg) {
            ensure(b[1] < t[0], "fov", || format!("bottom {b:?} must lie below top {t:?}"))?;
        }
        range("mount_height_m", self.mount_height_m, 0.1, 5.0)?;
        range("intensity_scale", self.intensity_scale, 0.0, 10.0)?;
        range("dropout", self.dropout, 0.0, 0.9)?;
        Ok(())
    }

    /// The sensor of the frame simulated with `seed`: `base` with the varied
    /// properties drawn from the frame's own random stream.
    pub fn draw(&self, base: &LidarConfig, seed: u64) -> LidarConfig {
        let mut rng = Rng::stream(seed, 0x5E_4503);
        let mut c = base.clone();
        // Draw every property whether or not it varies, so switching one on
        // does not change the others' values.
        let u_beams = rng.uniform();
        let beams = (!self.beams.is_empty()).then(|| self.beams[(u_beams * self.beams.len() as f64) as usize % self.beams.len()]);
        let (u_top, u_bottom) = (rng.uniform(), rng.uniform());
        let (u_mount, u_int, u_drop) = (rng.uniform(), rng.uniform(), rng.uniform());
        let lerp = |r: [f64; 2], u: f64| r[0] + (r[1] - r[0]) * u;
        if beams.is_some() || self.top_deg.is_some() {
            let n = beams.unwrap_or(base.elevations_deg.len());
            let top = self.top_deg.map_or(base.elevations_deg.last().copied().unwrap_or(2.0), |r| lerp(r, u_top));
            let bottom = self.bottom_deg.map_or(base.elevations_deg.first().copied().unwrap_or(-24.8), |r| lerp(r, u_bottom));
            c.elevations_deg = even_beams(n, bottom, top);
            c.name = format!("{}-{n}beams", base.name);
        }
        if let Some(r) = self.mount_height_m {
            c.mount_height_m = lerp(r, u_mount);
        }
        if let Some(r) = self.intensity_scale {
            c.intensity_scale = lerp(r, u_int);
        }
        if let Some(r) = self.dropout {
            c.random_dropout = lerp(r, u_drop);
        }
        c
    }
}

/// `n` elevations evenly spaced from `bottom` to `top` (ascending).
pub fn even_beams(n: usize, bottom: f64, top: f64) -> Vec<f64> {
    if n <= 1 {
        return vec![(bottom + top) / 2.0; n];
    }
    (0..n).map(|i| bottom + (top - bottom) * i as f64 / (n - 1) as f64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::sim::lidar::Lidar;

    #[test]
    fn draws_stay_in_their_ranges_and_follow_the_seed() {
        let v = SensorVariation::all();
        let base = LidarConfig::hdl64e();
        let mut beam_counts = std::collections::BTreeSet::new();
        let mut mounts = Vec::new();
        for seed in 0..200 {
            let c = v.draw(&base, seed);
            Lidar::new(c.clone()).expect("a drawn sensor is valid");
            assert_eq!(c, v.draw(&base, seed), "same seed, same sensor");
            let d = SensorDraw::of(&c);
            beam_counts.insert(d.beams);
            assert!((2.0..=15.0).contains(&d.top_deg) && (-25.0..=-15.0).contains(&d.bottom_deg), "{d:?}");
            assert!((1.5..=2.0).contains(&d.mount_height_m) && (0.6..=1.4).contains(&d.intensity_scale), "{d:?}");
            assert!((0.0..=0.1).contains(&d.dropout), "{d:?}");
            mounts.push(d.mount_height_m);
        }
        assert_eq!(beam_counts.into_iter().collect::<Vec<_>>(), vec![32, 64, 128]);
        let spread = mounts.iter().copied().fold(f64::MIN, f64::max) - mounts.iter().copied().fold(f64::MAX, f64::min);
        assert!(spread > 0.4, "mounting heights cover the range: spread {spread}");
    }

    #[test]
    fn one_property_varies_alone_and_the_others_keep_the_preset() {
        let base = LidarConfig::hdl64e();
        let mount = SensorVariation::parse("mount").unwrap();
        let all = SensorVariation::all();
        for seed in 0..20 {
            let c = mount.draw(&base, seed);
            assert_eq!(c.elevations_deg, base.elevations_deg);
            assert_eq!((c.intensity_scale, c.random_dropout), (base.intensity_scale, base.random_dropout));
            assert_ne!(c.mount_height_m, base.mount_height_m);
            // the same draw as with everything varied
            assert_eq!(c.mount_height_m, all.draw(&base, seed).mount_height_m);
        }
        assert!(SensorVariation::parse("").unwrap().is_none());
        assert_eq!(SensorVariation::none().draw(&base, 3), base);
        assert!(SensorVariation::parse("beams,colour").is_err());
    }

    #[test]
    fn bad_ranges_are_refused() {
        let mut v = SensorVariation::all();
        v.mount_height_m = Some([2.0, 1.5]);
        assert!(v.validate().is_err());
        let mut v = SensorVariation::all();
        v.top_deg = Some([-30.0, -20.0]);
        assert!(v.validate().is_err());
        let mut v = SensorVariation::all();
        v.beams = vec![0];
        assert!(v.validate().is_err());
        let mut v = SensorVariation::all();
        v.dropout = Some([0.0, f64::NAN]);
        assert!(v.validate().is_err());
    }

    #[test]
    fn the_intensity_gain_and_the_beam_count_reach_the_scan() {
        let scene = crate::dataset::sim::tests::empty_config().generate(1).unwrap();
        let scan = |c: LidarConfig| Lidar::new(c).unwrap().scan(&scene, &scene.snapshot(0.0), 3).points;
        let base = LidarConfig::hdl64e();
        let mut half = base.clone();
        half.intensity_scale = 0.5;
        let (a, b) = (scan(base.clone()), scan(half));
        assert_eq!(a.len(), b.len(), "the gain changes intensities only");
        assert!(a.intensity.iter().zip(&b.intensity).all(|(x, y)| (x * 0.5 - y).abs() < 1e-6));
        let mut c32 = base.clone();
        c32.elevations_deg = even_beams(32, -24.8, 2.0);
        let rings = |p: &crate::cloud::Points| p.ring.as_ref().unwrap().iter().copied().max().unwrap();
        assert_eq!((rings(&a), rings(&scan(c32))), (63, 31));
    }

    #[test]
    fn even_beams_span_the_field_of_view() {
        let b = even_beams(32, -25.0, 15.0);
        assert_eq!(b.len(), 32);
        assert_eq!((b[0], b[31]), (-25.0, 15.0));
        assert!(b.windows(2).all(|w| (w[1] - w[0] - 40.0 / 31.0).abs() < 1e-9));
    }
}
