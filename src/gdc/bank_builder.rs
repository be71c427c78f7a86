//! Builds a Gaussian class bank from image folders: `ROOT/<class>/*.png|jpg`
//! (few-shot and one-shot GDC from real images; generated images use the same
//! path once a generator writes them). Classes are the sub-folder names in
//! sorted order, images are read in sorted order, so a bank is reproducible.

use super::bank::{BankError, EmbeddingSpec, FitOptions, GaussianBank, Samples, DEFAULT_FOLDS};
use super::augment;
use super::encoder::{EncoderError, ImageEncoder};
use crate::image::RgbImage;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{path}: {reason}")]
    Folder { path: PathBuf, reason: String },
    #[error("{path}: not a readable image: {reason}")]
    Image { path: PathBuf, reason: String },
    #[error(transparent)]
    Encoder(#[from] EncoderError),
    #[error(transparent)]
    Bank(#[from] BankError),
}

const IMAGE_EXTENSIONS: [&str; 4] = ["png", "jpg", "jpeg", "ppm"];

/// The classes under `root` and their image files, both sorted by name.
pub fn images_by_class(root: &Path) -> Result<Vec<(String, Vec<PathBuf>)>, BuildError> {
    let folder = |path: &Path, e: std::io::Error| BuildError::Folder { path: path.to_owned(), reason: e.to_string() };
    let mut classes = Vec::new();
    for entry in std::fs::read_dir(root).map_err(|e| folder(root, e))? {
        let dir = entry.map_err(|e| folder(root, e))?.path();
        if !dir.is_dir() {
            continue;
        }
        let mut images: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| folder(&dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().and_then(|e| e.to_str()).is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
            })
            .collect();
        images.sort();
        if images.is_empty() {
            return Err(BuildError::Folder { path: dir, reason: "class folder has no .png/.jpg images".into() });
        }
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        classes.push((name, images));
    }
    classes.sort();
    if classes.is_empty() {
        return Err(BuildError::Folder { path: root.to_owned(), reason: "no class sub-folders".into() });
    }
    Ok(classes)
}

pub fn read_rgb(path: &Path) -> Result<RgbImage, BuildError> {
    let img = ::image::open(path).map_err(|e| BuildError::Image { path: path.to_owned(), reason: e.to_string() })?.to_rgb8();
    Ok(RgbImage { width: img.width(), height: img.height(), data: img.into_raw() })
}

/// Embeds every image under `root` and fits one Gaussian per class.
/// `progress(done, total)` is called after each batch.
pub fn build_bank(
    root: &Path,
    encoder: &dyn ImageEncoder,
    options: FitOptions,
    batch: usize,
    progress: impl FnMut(usize, usize),
) -> Result<GaussianBank, BuildError> {
    fit_bank(&images_by_class(root)?, encoder, options, batch, progress)
}

/// Augmented copies of every bank image ([`super::augment`]); `copies` = 0: none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Augmentation {
    pub copies: usize,
    pub seed: u64,
}

/// Embeds the listed images of each class, fits one Gaussian per class
/// (generated images use this with their cache files) and calibrates it by
/// [`DEFAULT_FOLDS`]-fold cross-validation (held-out distances for the
/// "unknown" answer, the fitted temperature; bank/open_set.rs). A bank whose
/// calibration fails is kept uncalibrated, with a warning.
pub fn fit_bank(
    classes: &[(String, Vec<PathBuf>)],
    encoder: &dyn ImageEncoder,
    options: FitOptions,
    batch: usize,
    progress: impl FnMut(usize, usize),
) -> Result<GaussianBank, BuildError> {
    fit_bank_augmented(classes, encoder, options, batch, Augmentation::default(), progress)
}

/// [`fit_bank`] with `augmentation.copies` augmented copies of every image
/// embedded after it; the cross-validation keeps an image and its copies in
/// one fold ([`GaussianBank::calibrate_grouped`]).
pub fn fit_bank_augmented(
    classes: &[(String, Vec<PathBuf>)],
    encoder: &dyn ImageEncoder,
    options: FitOptions,
    batch: usize,
    augmentation: Augmentation,
    mut progress: impl FnMut(usize, usize),
) -> Result<GaussianBank, BuildError> {
    let total: usize = classes.iter().map(|(_, v)| v.len()).sum();
    let mut done = 0;
    let mut embeddings = Vec::with_capacity(classes.len());
    for (_, paths) in classes {
        let mut rows = Vec::with_capacity(paths.len() * (1 + augmentation.copies));
        for chunk in paths.chunks(batch.max(1)) {
            let mut images = Vec::with_capacity(chunk.len() * (1 + augmentation.copies));
            for (k, p) in chunk.iter().enumerate() {
                let image = read_rgb(p)?;
                let copies = augment::augmented_copies(&image, augmentation.copies, augmentation.seed, (done + k) as u64);
                images.push(image);
                images.extend(copies);
            }
            rows.extend(encoder.embed_images(&images, batch)?);
            done += chunk.len();
            progress(done, total);
        }
        embeddings.push(rows);
    }
    let names: Vec<&str> = classes.iter().map(|(n, _)| n.as_str()).collect();
    fit_calibrated_or_warn(EmbeddingSpec::new(encoder.backbone_id(), encoder.recipe().id()), &names, &embeddings, options, 1 + augmentation.copies)
}

/// Fits one Gaussian per class from its embeddings (runs of `group` per
/// source image) and calibrates it; a failed calibration leaves the bank
/// uncalibrated, with a warning.
pub fn fit_calibrated_or_warn(
    spec: EmbeddingSpec,
    names: &[&str],
    embeddings: &[Vec<Vec<f32>>],
    options: FitOptions,
    group: usize,
) -> Result<GaussianBank, BuildError> {
    let samples: Vec<(&str, Samples)> = names.iter().zip(embeddings).map(|(name, rows)| (*name, Samples::from(rows.as_slice()))).collect();
    let mut bank = GaussianBank::fit(spec, &samples, options)?;
    match bank.calibrate_grouped(&samples, DEFAULT_FOLDS, group) {
        Ok(r) => tracing::info!(
            folds = DEFAULT_FOLDS,
            scored = r.scored,
            heldout_accuracy = r.heldout_accuracy,
            temperature = r.temperature,
            nll_at_1 = r.nll_at_one,
            nll_fitted = r.nll_fitted,
            "GDC bank calibrated on held-out images"
        ),
        Err(e) => tracing::warn!("GDC bank not calibrated (no unknown answer, temperature 1): {e}"),
    }
    Ok(bank)
}
