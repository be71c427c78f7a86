//! Text-to-image diffusion generators in tch: the images GDC fits its class
//! Gaussians on come from a class name and a prompt template (arXiv
//! 2412.12594 §3; SDXL-Turbo is the paper's main generator).
//!
//! Hugging Face diffusers folders load as they are (SD 1.x/2.x, SD-Turbo,
//! SDXL, SDXL-Turbo): [`pipeline`] reads `model_index.json` and the
//! components, [`tokenizer`] + [`clip_text`] turn prompts into conditioning,
//! [`unet`] predicts noise, [`scheduler`] steps the latents (Euler,
//! Euler-ancestral, turbo's trailing 1–4 steps), [`vae`] decodes them;
//! [`prompts`] holds the class-name templates and [`class_images`] generates,
//! caches and embeds a class's images for a bank; [`class_queue`] does
//! that in the background for classes a running node is asked to add. Parity with diffusers and
//! transformers on tiny random models: tests/generator_parity.rs; weights and
//! timings: docs/generators.md.

pub mod class_images;
pub mod class_queue;
pub mod clip_text;
pub mod pipeline;
pub mod prompts;
pub mod scheduler;
pub mod tokenizer;
pub mod unet;
pub mod vae;

use crate::weights::WeightsError;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum GeneratorError {
    #[error("{path}: {reason}")]
    Config { path: String, reason: String },
    #[error("{path}: tokenizer: {reason}")]
    Tokenizer { path: String, reason: String },
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error("invalid input: {0}")]
    Input(String),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    #[error("{path}: {reason}")]
    Io { path: PathBuf, reason: String },
}

/// Reads and parses a JSON config; errors name the file.
impl GeneratorError {
    /// A config error raised while building a model names the config file it came from.
    pub(crate) fn at_config(self, path: &str) -> Self {
        match self {
            GeneratorError::Config { reason, .. } => GeneratorError::Config { path: path.to_string(), reason },
            e => e,
        }
    }
}

pub(crate) fn read_config<T: DeserializeOwned>(path: &Path) -> Result<(T, String), GeneratorError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| GeneratorError::Config { path: p.clone(), reason: e.to_string() })?;
    let value = serde_json::from_str(&text).map_err(|e| GeneratorError::Config { path: p.clone(), reason: e.to_string() })?;
    Ok((value, p))
}

/// The weights file of a component: `stem.fp16.safetensors` first on CUDA
/// (half the bytes, loaded as fp16 anyway), `stem.safetensors` first on CPU.
pub fn weights_file(dir: &Path, stem: &str, device: tch::Device) -> Result<PathBuf, GeneratorError> {
    let full = dir.join(format!("{stem}.safetensors"));
    let half = dir.join(format!("{stem}.fp16.safetensors"));
    let order = if device.is_cuda() { [&half, &full] } else { [&full, &half] };
    let found = order.into_iter().find(|p| p.is_file()).cloned();
    found.ok_or_else(|| GeneratorError::Io {
        path: full.clone(),
        reason: format!("no weights: neither {} nor {} exists (sharded checkpoints are not supported)", full.display(), half.display()),
    })
}
