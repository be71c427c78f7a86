//! The interface between image backbones and the Gaussian bank: a backbone
//! names itself (the id stored in bank files, so a bank is never queried with
//! another backbone), says how it wants images preprocessed, and embeds
//! batches.

use super::backbone::dinov2::{Dinov2, Dinov2Error};
use super::backbone::efficientnet_lite::{EfficientNetError, EfficientNetLite0};
use super::backbone::EmbeddingRecipe;
use super::preprocess::{Preprocess, PreprocessError};
use crate::image::RgbImage;
use sha2::{Digest, Sha256};
use std::path::Path;
use tch::{Device, Kind, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum EncoderError {
    #[error(transparent)]
    Dinov2(#[from] Dinov2Error),
    #[error(transparent)]
    EfficientNet(#[from] EfficientNetError),
    #[error(transparent)]
    Preprocess(#[from] PreprocessError),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("backbone {backbone} has no embedding recipe {recipe:?}")]
    Recipe { backbone: String, recipe: String },
}

pub trait ImageEncoder {
    /// Identity of the weights: architecture, checkpoint name and content hash.
    fn backbone_id(&self) -> &str;
    fn preprocess(&self) -> &Preprocess;
    fn recipe(&self) -> EmbeddingRecipe;
    /// [n, 3, H, W] preprocessed pixels → [n, dim] embeddings (CPU, f32).
    fn embed_pixels(&self, pixels: &Tensor) -> Result<Tensor, EncoderError>;

    /// Preprocesses and embeds images in batches of `batch`; one row per image.
    fn embed_images(&self, images: &[RgbImage], batch: usize) -> Result<Vec<Vec<f32>>, EncoderError> {
        let mut rows = Vec::with_capacity(images.len());
        for chunk in images.chunks(batch.max(1)) {
            let e = self.embed_pixels(&self.preprocess().batch(chunk)?)?.to_kind(Kind::Float).to_device(Device::Cpu);
            let (n, d) = e.size2().unwrap_or((0, 0));
            let flat: Vec<f32> = Vec::try_from(e.flatten(0, -1)).unwrap_or_default();
            rows.extend(flat.chunks(d.max(1) as usize).take(n as usize).map(|r| r.to_vec()));
        }
        Ok(rows)
    }
}

/// First 12 hex digits of the SHA-256 of a file: ties a bank to exact weights.
pub fn file_digest(path: &Path) -> Result<String, EncoderError> {
    let bytes = std::fs::read(path).map_err(|source| EncoderError::Io { path: path.display().to_string(), source })?;
    Ok(Sha256::digest(&bytes).iter().take(6).map(|b| format!("{b:02x}")).collect())
}

/// DINOv2 from a Hugging Face folder, with the reference preprocessing.
pub struct Dinov2Encoder {
    model: Dinov2,
    preprocess: Preprocess,
    recipe: EmbeddingRecipe,
    id: String,
}

impl Dinov2Encoder {
    pub fn load(dir: &Path, recipe: EmbeddingRecipe, device: Device) -> Result<Self, EncoderError> {
        let model = Dinov2::load(dir, device)?;
        let c = &model.config;
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let id = format!(
            "dinov2[{name}; d={} L={} p={} reg={}; {}]",
            c.hidden_size,
            c.num_hidden_layers,
            c.patch_size,
            c.num_register_tokens,
            file_digest(&dir.join("model.safetensors"))?
        );
        Ok(Self { model, preprocess: Preprocess::dinov2(), recipe, id })
    }
}

impl ImageEncoder for Dinov2Encoder {
    fn backbone_id(&self) -> &str {
        &self.id
    }
    fn preprocess(&self) -> &Preprocess {
        &self.preprocess
    }
    fn recipe(&self) -> EmbeddingRecipe {
        self.recipe
    }
    fn embed_pixels(&self, pixels: &Tensor) -> Result<Tensor, EncoderError> {
        Ok(self.model.embed(pixels, self.recipe)?.to_device(Device::Cpu))
    }
}

// SAFETY (the two `Sync` impls below): tch marks `Tensor` `Send` but not
// `Sync` because some of its `&self` methods change the tensor (autograd,
// `set_requires_grad`). Through `&Dinov2Encoder` / `&EfficientNetLite0Encoder`
// only the [`ImageEncoder`] methods are reachable (the models are private
// fields): they read the weights with out-of-place operations under
// `tch::no_grad` (batch norm in inference mode: running statistics are not
// updated) and create new tensors; libtorch tensors' reference counts are
// atomic, so concurrent forward passes over the same weights are sound (the
// same reasoning makes tch's own `CModule` `Sync`). Sharing one encoder lets
// `~/relabel` and `gdc.auto_relabel` embed at the same time without a lock.
unsafe impl Sync for Dinov2Encoder {}

/// EfficientNet-Lite0 (ImageNet weights that ship offline; the default
/// backbone): pooled 1280-d features, its training-recipe preprocessing.
pub struct EfficientNetLite0Encoder {
    model: EfficientNetLite0,
    preprocess: Preprocess,
    id: String,
}

impl EfficientNetLite0Encoder {
    pub fn load(weights: &Path, device: Device) -> Result<Self, EncoderError> {
        let model = EfficientNetLite0::load(weights, device)?;
        let id = format!("efficientnet-lite0[{}]", file_digest(weights)?);
        Ok(Self { model, preprocess: Preprocess::efficientnet_lite0(), id })
    }
}

// SAFETY: as for `Dinov2Encoder` above.
unsafe impl Sync for EfficientNetLite0Encoder {}

impl ImageEncoder for EfficientNetLite0Encoder {
    fn backbone_id(&self) -> &str {
        &self.id
    }
    fn preprocess(&self) -> &Preprocess {
        &self.preprocess
    }
    fn recipe(&self) -> EmbeddingRecipe {
        EmbeddingRecipe::Pooled
    }
    fn embed_pixels(&self, pixels: &Tensor) -> Result<Tensor, EncoderError> {
        Ok(self.model.forward_features(pixels)?.to_device(Device::Cpu))
    }
}

/// Loads the backbone at `path`: a folder is a Hugging Face DINOv2 model
/// (embedding `recipe`), a file EfficientNet-Lite0 safetensors (always pooled).
pub fn load_encoder(path: &Path, recipe: EmbeddingRecipe, device: Device) -> Result<Box<dyn ImageEncoder + Send + Sync>, EncoderError> {
    if path.is_dir() {
        Ok(Box::new(Dinov2Encoder::load(path, recipe, device)?))
    } else if recipe == EmbeddingRecipe::Pooled {
        Ok(Box::new(EfficientNetLite0Encoder::load(path, device)?))
    } else {
        Err(EncoderError::Recipe { backbone: path.display().to_string(), recipe: recipe.id().into() })
    }
}

/// A tiny DINOv2 (random weights, 2 layers of 32 channels) for tests.
#[cfg(test)]
pub(crate) fn tiny_dinov2() -> Dinov2Encoder {
    use super::backbone::dinov2::Dinov2Config;
    let config = Dinov2Config { hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 2, image_size: 28, ..Dinov2Config::vit_s14() };
    let model = Dinov2::new(config, Device::Cpu).expect("tiny DINOv2 config");
    Dinov2Encoder { model, preprocess: Preprocess::dinov2(), recipe: EmbeddingRecipe::Cls, id: "dinov2[tiny test]".into() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn images() -> Vec<RgbImage> {
        (0..3u8)
            .map(|k| {
                let (w, h) = (20 + 7 * k as u32, 30);
                let data = (0..w * h * 3).map(|i| (i as u8).wrapping_mul(31).wrapping_add(k * 70)).collect();
                RgbImage { width: w, height: h, data }
            })
            .collect()
    }

    /// The `Sync` impls in practice: threads embedding with one shared
    /// encoder at the same time get exactly what one thread gets alone.
    #[test]
    fn one_encoder_embeds_from_several_threads_at_once() {
        let encoder: Arc<dyn ImageEncoder + Send + Sync> = Arc::new(tiny_dinov2());
        let imgs = Arc::new(images());
        let alone = encoder.embed_images(&imgs, 2).unwrap();
        assert_eq!(alone.len(), 3);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (encoder, imgs) = (encoder.clone(), imgs.clone());
                std::thread::spawn(move || (0..5).map(|_| encoder.embed_images(&imgs, 2).unwrap()).collect::<Vec<_>>())
            })
            .collect();
        for t in threads {
            for rows in t.join().unwrap() {
                assert_eq!(rows, alone);
            }
        }
    }
}
