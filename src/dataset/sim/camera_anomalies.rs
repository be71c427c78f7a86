//! Camera-side anomalies on a rendered RGB image, each with a [`Severity`]:
//!
//! * **blur** (defocus / motion smear): three passes of a separable box blur
//!   of radius `1 + round(8·s)` px, close to a Gaussian of σ ≈ radius;
//! * **glare** (sun in the lens): a bright veil centred at a seeded point in
//!   the upper half of the image, `s·255` at its centre, falling off as a
//!   Gaussian of σ = (0.08 + 0.30·s)·width, plus a horizontal streak;
//! * **lens occlusion** (dirt, a leaf, a drop of mud): a dark soft-edged
//!   ellipse at a seeded place, covering ≈ 3 % of the image at s → 0 up to
//!   ≈ 30 % at s = 1.
//!
//! The random placement depends on the seed only, never on the severity, so
//! for a fixed seed the effect grows monotonically with the severity (the
//! tests check it). Severity 0 leaves the image unchanged.

use serde::{Deserialize, Serialize};

use super::anomalies::Severity;
use super::Rng;

/// The camera anomaly kinds, as written in `anomalies.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CameraAnomalyKind {
    Blur,
    Glare,
    LensOcclusion,
}

impl CameraAnomalyKind {
    pub const ALL: [CameraAnomalyKind; 3] = [Self::Blur, Self::Glare, Self::LensOcclusion];

    /// The name used on the command line and in `anomalies.json`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Blur => "blur",
            Self::Glare => "glare",
            Self::LensOcclusion => "lens_occlusion",
        }
    }

    /// Parses a name ([`name`](Self::name), or `camera_occlusion`/`dirt` for lens occlusion).
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "blur" => Some(Self::Blur),
            "glare" => Some(Self::Glare),
            "lens_occlusion" | "camera_occlusion" | "dirt" => Some(Self::LensOcclusion),
            _ => None,
        }
    }
}

/// Which camera anomaly a frame got, and how strongly.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CameraAnomalyTag {
    pub kind: CameraAnomalyKind,
    pub severity: f64,
}

/// Applies `kind` at `severity` to `image` in place.
pub fn apply(kind: CameraAnomalyKind, image: &mut ::image::RgbImage, severity: Severity, seed: u64) -> CameraAnomalyTag {
    let s = severity.value();
    let mut rng = Rng::stream(seed, 0xCA00 + kind as u64);
    if s > 0.0 {
        match kind {
            CameraAnomalyKind::Blur => blur(image, 1 + (8.0 * s).round() as usize),
            CameraAnomalyKind::Glare => glare(image, s, &mut rng),
            CameraAnomalyKind::LensOcclusion => lens_occlusion(image, s, &mut rng),
        }
    }
    CameraAnomalyTag { kind, severity: s }
}

/// Three passes of a separable box blur (edges clamp).
fn blur(image: &mut ::image::RgbImage, radius: usize) {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let mut buf: Vec<f32> = image.as_raw().iter().map(|&b| f32::from(b)).collect();
    let mut tmp = vec![0f32; buf.len()];
    for _ in 0..3 {
        box_pass(&buf, &mut tmp, w, h, radius, true);
        box_pass(&tmp, &mut buf, w, h, radius, false);
    }
    for (d, s) in image.iter_mut().zip(&buf) {
        *d = s.round().clamp(0.0, 255.0) as u8;
    }
}

/// One 1D box average along rows (`horizontal`) or columns, by running sums.
fn box_pass(src: &[f32], dst: &mut [f32], w: usize, h: usize, r: usize, horizontal: bool) {
    let (n, lines) = if horizontal { (w, h) } else { (h, w) };
    let idx = |line: usize, i: usize, c: usize| if horizontal { (line * w + i) * 3 + c } else { (i * w + line) * 3 + c };
    let norm = 1.0 / (2 * r + 1) as f32;
    for line in 0..lines {
        for c in 0..3 {
            let at = |i: isize| src[idx(line, i.clamp(0, n as isize - 1) as usize, c)];
            let mut sum: f32 = (-(r as isize)..=r as isize).map(at).sum();
            for i in 0..n {
                dst[idx(line, i, c)] = sum * norm;
                sum += at(i as isize + r as isize + 1) - at(i as isize - r as isize);
            }
        }
    }
}

fn glare(image: &mut ::image::RgbImage, s: f64, rng: &mut Rng) {
    let (w, h) = (f64::from(image.width()), f64::from(image.height()));
    let (cx, cy) = (rng.range(0.15, 0.85) * w, rng.range(0.0, 0.45) * h);
    let sigma = (0.08 + 0.30 * s) * w;
    let streak_sigma = 0.02 * h + 0.03 * h * s;
    for (x, y, p) in image.enumerate_pixels_mut() {
        let (dx, dy) = (f64::from(x) - cx, f64::from(y) - cy);
        let veil = (-(dx * dx + dy * dy) / (2.0 * sigma * sigma)).exp();
        let streak = 0.5 * (-(dy * dy) / (2.0 * streak_sigma * streak_sigma)).exp() * (-(dx.abs()) / (0.6 * w)).exp();
        let add = 255.0 * s * (veil + streak).min(1.0);
        // Warm white: a touch less blue.
        for (c, tint) in p.0.iter_mut().zip([1.0, 0.97, 0.88]) {
            *c = (f64::from(*c) + add * tint).round().min(255.0) as u8;
        }
    }
}

fn lens_occlusion(image: &mut ::image::RgbImage, s: f64, rng: &mut Rng) {
    let (w, h) = (f64::from(image.width()), f64::from(image.height()));
    let (cx, cy) = (rng.range(0.2, 0.8) * w, rng.range(0.3, 0.8) * h);
    let aspect = rng.range(0.6, 1.4);
    // Area fraction ≈ π·a·b / (w·h) from 3 % to 30 %.
    let frac = 0.03 + 0.27 * s;
    let ab = frac * w * h / std::f64::consts::PI;
    let (a, b) = ((ab * aspect).sqrt(), (ab / aspect).sqrt());
    let dirt = [58.0, 46.0, 32.0];
    for (x, y, p) in image.enumerate_pixels_mut() {
        let (dx, dy) = ((f64::from(x) - cx) / a, (f64::from(y) - cy) / b);
        let r = (dx * dx + dy * dy).sqrt();
        // Opaque core, soft edge over the outer 30 % of the radius.
        let alpha = ((1.15 - r) / 0.3).clamp(0.0, 1.0) * 0.95;
        if alpha > 0.0 {
            for (c, d) in p.0.iter_mut().zip(dirt) {
                *c = (f64::from(*c) * (1.0 - alpha) + d * alpha).round() as u8;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A textured test card: gradients and a checkerboard (edges for blur).
    fn card() -> ::image::RgbImage {
        ::image::RgbImage::from_fn(160, 60, |x, y| {
            let check = if (x / 8 + y / 8) % 2 == 0 { 60 } else { 180 };
            ::image::Rgb([check, (x * 255 / 159) as u8, (y * 255 / 59) as u8])
        })
    }

    fn mean_gradient(img: &::image::RgbImage) -> f64 {
        let mut sum = 0.0;
        for y in 0..img.height() {
            for x in 1..img.width() {
                sum += (f64::from(img.get_pixel(x, y)[0]) - f64::from(img.get_pixel(x - 1, y)[0])).abs();
            }
        }
        sum / f64::from(img.width() * img.height())
    }

    fn brightness(img: &::image::RgbImage) -> f64 {
        img.as_raw().iter().map(|&b| f64::from(b)).sum::<f64>() / img.as_raw().len() as f64
    }

    fn changed(a: &::image::RgbImage, b: &::image::RgbImage) -> usize {
        a.pixels().zip(b.pixels()).filter(|(p, q)| p != q).count()
    }

    #[test]
    fn each_camera_anomaly_grows_with_severity() {
        let base = card();
        let severities = [0.1, 0.4, 0.7, 1.0];
        for kind in CameraAnomalyKind::ALL {
            let mut zero = base.clone();
            apply(kind, &mut zero, Severity::new(0.0).expect("valid"), 5);
            assert_eq!(zero, base, "{kind:?} at severity 0 changed the image");
            let measure = |img: &::image::RgbImage| match kind {
                CameraAnomalyKind::Blur => mean_gradient(&base) - mean_gradient(img),
                CameraAnomalyKind::Glare => brightness(img) - brightness(&base),
                CameraAnomalyKind::LensOcclusion => changed(&base, img) as f64,
            };
            let mut last = 0.0;
            for s in severities {
                let mut img = base.clone();
                let tag = apply(kind, &mut img, Severity::new(s).expect("valid"), 5);
                assert_eq!(tag, CameraAnomalyTag { kind, severity: s });
                let m = measure(&img);
                assert!(m > last, "{kind:?}: severity {s} gives {m}, not above {last}");
                last = m;
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for k in CameraAnomalyKind::ALL {
            assert_eq!(CameraAnomalyKind::from_name(k.name()), Some(k));
            assert_eq!(serde_json::to_value(k).expect("serialises"), serde_json::Value::String(k.name().into()));
        }
        assert_eq!(CameraAnomalyKind::from_name("fog"), None);
    }
}
