//! The demo's default GDC class bank: EfficientNet-Lite0 (pooled features)
//! fitted on camera crops of simulated objects (Car, Van, Truck,
//! Pedestrian, Cyclist), with shared covariance (ridge 0.1) and the cross-validated
//! open-set calibration (the `unknown` answer at `gdc.unknown_rate`, the
//! fitted temperature; docs/gdc_bank.md). Scenes are drawn with more vans,
//! trucks and cyclists than a normal street so every class gets its crops
//! in a few dozen frames; crops follow `eloss gdc crops`' rules (labelled
//! 2D box at least 25 px high, truncation ≤ 0.5, occlusion ≤ 1, square with
//! a 10 % margin). Seeds start at [`BankConfig::seed`], far from the demo
//! drive's, so the bank never sees the frames it labels.

use crate::dataset::kitti::{Calibration, ObjectClass, KITTI_IMAGE_HEIGHT, KITTI_IMAGE_WIDTH};
use crate::dataset::sim::camera::CameraModel;
use crate::dataset::sim::labels::{frame_labels, LabelRules};
use crate::dataset::sim::scene::CountRange;
use crate::dataset::sim::{Lidar, LidarConfig, SceneConfig};
use crate::gdc::bank::{CovarianceKind, EmbeddingSpec, FitOptions, GaussianBank, Samples, DEFAULT_FOLDS, IMAGE_BANK_RIDGE_REL};
use crate::gdc::crops::{crop_pixels, CropConfig};
use crate::gdc::encoder::{file_digest, ImageEncoder};
use crate::image::RgbImage;
use anyhow::{bail, Context as _};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// 2: ridge [`IMAGE_BANK_RIDGE_REL`] (was 1e-3).
pub const BANK_FORMAT: u32 = 2;
pub const CLASSES: [ObjectClass; 5] = [ObjectClass::Car, ObjectClass::Van, ObjectClass::Truck, ObjectClass::Pedestrian, ObjectClass::Cyclist];

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BankConfig {
    pub seed: u64,
    /// Crops per class (≥ 20 so that every class can answer `unknown` at α = 0.05).
    pub per_class: usize,
    /// Give up after this many frames.
    pub max_frames: usize,
    pub min_height_px: f64,
}

impl Default for BankConfig {
    fn default() -> Self {
        Self { seed: 7_000_000, per_class: 30, max_frames: 200, min_height_px: 25.0 }
    }
}

/// What [`build`] did.
#[derive(Debug, Clone)]
pub struct BankReport {
    pub frames: usize,
    pub crops: BTreeMap<String, usize>,
    pub temperature: Option<f64>,
    pub heldout_accuracy: Option<f64>,
}

fn balanced_scene() -> SceneConfig {
    SceneConfig {
        cars: CountRange::new(2, 6),
        vans: CountRange::new(1, 3),
        trucks: CountRange::new(1, 3),
        pedestrians: CountRange::new(2, 6),
        cyclists: CountRange::new(1, 4),
        ..SceneConfig::default()
    }
}

/// Crops of simulated objects, per class (in [`CLASSES`] order), until each
/// class has `per_class` or `max_frames` frames were rendered.
pub fn simulated_crops(cfg: &BankConfig, mut progress: impl FnMut(usize, &BTreeMap<String, usize>)) -> anyhow::Result<(Vec<(String, Vec<RgbImage>)>, usize)> {
    let lidar = Lidar::new(LidarConfig::hdl64e())?;
    let camera = CameraModel::new(Calibration::kitti_like_default(), KITTI_IMAGE_WIDTH, KITTI_IMAGE_HEIGHT, lidar.config().mount_height_m)?;
    let scene_cfg = balanced_scene();
    let crop_cfg = CropConfig::default();
    let mut by_class: Vec<(ObjectClass, Vec<RgbImage>)> = CLASSES.iter().map(|c| (*c, Vec::new())).collect();
    let mut frames = 0;
    while frames < cfg.max_frames && by_class.iter().any(|(_, v)| v.len() < cfg.per_class) {
        let seed = cfg.seed + frames as u64;
        frames += 1;
        let scene = scene_cfg.generate(seed)?;
        let snapshot = scene.snapshot(0.0);
        let scan = lidar.scan(&scene, &snapshot, seed);
        let rendered = camera.render(&scene, &snapshot);
        let labels = frame_labels(&camera, &snapshot, &scan, &rendered, &LabelRules::default());
        let (w, h) = rendered.image.dimensions();
        let image = RgbImage { width: w, height: h, data: rendered.image.into_raw() };
        for l in labels.iter().map(|l| &l.label) {
            let Some((_, list)) = by_class.iter_mut().find(|(c, _)| *c == l.class) else { continue };
            if list.len() >= cfg.per_class || l.bbox[3] - l.bbox[1] < cfg.min_height_px || l.truncated > 0.5 || l.occluded > 1 {
                continue;
            }
            if let Ok(c) = crop_pixels(&image, l.bbox, &crop_cfg) {
                list.push(c.image);
            }
        }
        let counts = by_class.iter().map(|(c, v)| (c.as_str().to_string(), v.len())).collect();
        progress(frames, &counts);
    }
    if let Some((c, v)) = by_class.iter().find(|(_, v)| v.len() < 2) {
        bail!("only {} crops of {} in {frames} simulated frames", v.len(), c.as_str());
    }
    Ok((by_class.into_iter().map(|(c, v)| (c.as_str().to_string(), v)).collect(), frames))
}

/// Fits and calibrates the bank (shared covariance, ridge
/// [`IMAGE_BANK_RIDGE_REL`]) on the crops' embeddings.
pub fn build(cfg: &BankConfig, encoder: &dyn ImageEncoder, progress: impl FnMut(usize, &BTreeMap<String, usize>)) -> anyhow::Result<(GaussianBank, BankReport)> {
    let (crops, frames) = simulated_crops(cfg, progress)?;
    let mut embeddings = Vec::with_capacity(crops.len());
    for (_, images) in &crops {
        embeddings.push(encoder.embed_images(images, 16)?);
    }
    let samples: Vec<(&str, Samples)> =
        crops.iter().zip(&embeddings).map(|((name, _), rows)| (name.as_str(), Samples::from(rows.as_slice()))).collect();
    let spec = EmbeddingSpec::new(encoder.backbone_id(), encoder.recipe().id());
    let options = FitOptions::from(CovarianceKind::Shared { ridge_rel: IMAGE_BANK_RIDGE_REL });
    let mut bank = GaussianBank::fit(spec, &samples, options)?;
    let calibration = bank.calibrate(&samples, DEFAULT_FOLDS).context("calibrating the demo bank (open-set answer, temperature)")?;
    let report = BankReport {
        frames,
        crops: crops.iter().map(|(c, v)| (c.clone(), v.len())).collect(),
        temperature: Some(calibration.temperature),
        heldout_accuracy: Some(calibration.heldout_accuracy),
    };
    Ok((bank, report))
}

/// `cache/demo_bank-<key>.safetensors`, key = SHA-256 over the format, the
/// configuration and the backbone's weights digest.
pub fn cached_path(cfg: &BankConfig, weights: &Path, cache: &Path) -> anyhow::Result<PathBuf> {
    let mut h = Sha256::new();
    h.update(format!("demo bank v{BANK_FORMAT} {}", env!("CARGO_PKG_VERSION")).as_bytes());
    h.update(serde_json::to_vec(cfg)?);
    h.update(file_digest(weights)?.as_bytes());
    let key: String = h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect();
    Ok(cache.join(format!("demo_bank-{key}.safetensors")))
}
