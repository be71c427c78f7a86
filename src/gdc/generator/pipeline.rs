//! A diffusers text-to-image folder as one generator: `model_index.json`
//! says SD (`StableDiffusionPipeline`: one CLIP encoder, final-norm states)
//! or SDXL (`StableDiffusionXLPipeline`: two encoders' penultimate states
//! concatenated, pooled projection + size ids as extra UNet conditioning);
//! the components load from their sub-folders (fp16 `.fp16.safetensors`
//! variants preferred on CUDA, full precision on CPU; either is converted).
//!
//! The sampling loop follows the diffusers pipelines step for step:
//! latents × init_noise_sigma, per step scale → UNet → classifier-free
//! guidance when `guidance_scale > 1` (negative prompt "" for SD, zeros for
//! SDXL) → Euler(-ancestral) step; then VAE decode and map to [0, 1].
//! Turbo models run 1–4 steps without guidance.
//!
//! ```no_run
//! # use eloss_perception::gdc::generator::pipeline::{Pipeline, GenerateOptions};
//! let pipe = Pipeline::load("sdxl-turbo/".as_ref(), tch::Device::cuda_if_available()).unwrap();
//! let opts = GenerateOptions::turbo(&pipe);
//! let images = pipe.generate(&["a photo of a car.".to_string()], &[7], &opts).unwrap(); // [1, 3, 512, 512] in [0, 1]
//! ```

use super::clip_text::ClipTextModel;
use super::scheduler::{EulerScheduler, Sampler};
use super::tokenizer::ClipTokenizer;
use super::unet::{AddedCond, UNet2DConditionModel};
use super::vae::VaeDecoder;
use super::{read_config, GeneratorError};
use serde_json::Value;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Sd,
    Sdxl,
}

/// How to sample.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub steps: usize,
    /// Classifier-free guidance when > 1 (runs the UNet on twice the batch).
    pub guidance_scale: f64,
    pub height: i64,
    pub width: i64,
}

impl GenerateOptions {
    /// Turbo settings: 1 step, no guidance, the model's native size.
    pub fn turbo(p: &Pipeline) -> Self {
        let (height, width) = p.default_size();
        Self { steps: 1, guidance_scale: 0.0, height, width }
    }
}

/// Prompt conditioning for the UNet.
#[derive(Debug)]
pub struct Conditioning {
    /// [b, 77, cross_attention_dim]
    pub context: Tensor,
    /// SDXL: pooled projection [b, projection_dim].
    pub pooled: Option<Tensor>,
}

#[derive(Debug)]
pub struct Pipeline {
    pub family: Family,
    pub tokenizer: ClipTokenizer,
    pub text_encoder: ClipTextModel,
    pub tokenizer_2: Option<ClipTokenizer>,
    pub text_encoder_2: Option<ClipTextModel>,
    pub unet: UNet2DConditionModel,
    pub vae: VaeDecoder,
    scheduler_path: PathBuf,
    force_zeros_for_empty_prompt: bool,
    pub kind: Kind,
    pub device: Device,
}

impl Pipeline {
    /// Loads a diffusers folder; f32 on CPU, fp16 on CUDA (the VAE stays f32
    /// when its config says `force_upcast`, as SDXL's does).
    pub fn load(dir: &Path, device: Device) -> Result<Self, GeneratorError> {
        let (index, index_path): (Value, _) = read_config(&dir.join("model_index.json"))?;
        let class = index["_class_name"].as_str().unwrap_or_default();
        let family = match class {
            "StableDiffusionPipeline" => Family::Sd,
            "StableDiffusionXLPipeline" => Family::Sdxl,
            other => return Err(GeneratorError::Config { path: index_path, reason: format!("pipeline {other:?} unsupported (StableDiffusionPipeline, StableDiffusionXLPipeline)") }),
        };
        let kind = if device.is_cuda() { Kind::Half } else { Kind::Float };
        let sub = |name: &str| dir.join(name);
        let tokenizer = ClipTokenizer::load(&sub("tokenizer"))?;
        let text_encoder = ClipTextModel::load(&sub("text_encoder"), device, kind)?;
        let (tokenizer_2, text_encoder_2) = match family {
            Family::Sd => (None, None),
            Family::Sdxl => (Some(ClipTokenizer::load(&sub("tokenizer_2"))?), Some(ClipTextModel::load(&sub("text_encoder_2"), device, kind)?)),
        };
        let unet = UNet2DConditionModel::load(&sub("unet"), device, kind)?;
        let (vae_cfg, _): (Value, _) = read_config(&sub("vae").join("config.json"))?;
        let vae_kind = if vae_cfg["force_upcast"].as_bool().unwrap_or(false) { Kind::Float } else { kind };
        let vae = VaeDecoder::load(&sub("vae"), device, vae_kind)?;
        let scheduler_path = sub("scheduler").join("scheduler_config.json");
        EulerScheduler::load(&scheduler_path)?;
        let pipe = Self {
            family,
            tokenizer,
            text_encoder,
            tokenizer_2,
            text_encoder_2,
            unet,
            vae,
            scheduler_path,
            force_zeros_for_empty_prompt: index["force_zeros_for_empty_prompt"].as_bool().unwrap_or(true),
            kind,
            device,
        };
        pipe.check_dims().map_err(|reason| GeneratorError::Config { path: dir.display().to_string(), reason })?;
        Ok(pipe)
    }

    fn check_dims(&self) -> Result<(), String> {
        let u = &self.unet.config;
        let ctx = self.text_encoder.config.hidden_size + self.text_encoder_2.as_ref().map_or(0, |t| t.config.hidden_size);
        if ctx != u.cross_attention_dim {
            return Err(format!("text encoders give {ctx}-d states, the UNet attends to {}-d", u.cross_attention_dim));
        }
        if u.in_channels != self.vae.config.latent_channels {
            return Err(format!("UNet takes {} latent channels, the VAE decodes {}", u.in_channels, self.vae.config.latent_channels));
        }
        if let (Family::Sdxl, Some(te2)) = (self.family, &self.text_encoder_2) {
            if te2.config.projection_dim.is_none() || !u.is_sdxl() {
                return Err("SDXL needs a projected second text encoder and a text_time UNet".into());
            }
        }
        Ok(())
    }

    /// A fresh scheduler from the folder's config (its steps are per call).
    pub fn scheduler(&self) -> Result<EulerScheduler, GeneratorError> {
        EulerScheduler::load(&self.scheduler_path)
    }

    /// The trained image size: UNet sample size × VAE scale factor.
    pub fn default_size(&self) -> (i64, i64) {
        let s = self.unet.config.sample_size * self.vae.config.scale_factor();
        (s, s)
    }

    /// Image sides must be multiples of this.
    pub fn size_multiple(&self) -> i64 {
        self.vae.config.scale_factor() * self.unet.size_multiple()
    }

    fn ids(tok: &ClipTokenizer, prompts: &[String]) -> Tensor {
        let rows: Vec<Tensor> = prompts.iter().map(|p| Tensor::from_slice(&tok.encode(p))).collect();
        Tensor::stack(&rows, 0)
    }

    /// Conditioning of `prompts` as the pipeline's `encode_prompt` computes it.
    pub fn encode_prompts(&self, prompts: &[String]) -> Result<Conditioning, GeneratorError> {
        let out = self.text_encoder.forward(&Self::ids(&self.tokenizer, prompts))?;
        match (&self.tokenizer_2, &self.text_encoder_2) {
            (Some(tok2), Some(te2)) => {
                let out2 = te2.forward(&Self::ids(tok2, prompts))?;
                let context = Tensor::cat(&[out.penultimate, out2.penultimate], -1);
                Ok(Conditioning { context, pooled: out2.text_embeds })
            }
            _ => Ok(Conditioning { context: out.last, pooled: None }),
        }
    }

    /// Negative conditioning for guidance: "" for SD; zeros for SDXL unless
    /// the folder turned `force_zeros_for_empty_prompt` off.
    fn negative(&self, like: &Conditioning, n: usize) -> Result<Conditioning, GeneratorError> {
        if self.family == Family::Sdxl && self.force_zeros_for_empty_prompt {
            return Ok(Conditioning { context: like.context.zeros_like(), pooled: like.pooled.as_ref().map(|p| p.zeros_like()) });
        }
        self.encode_prompts(&vec![String::new(); n])
    }

    /// Initial latents and per-step ancestral noise for one image, from its
    /// own seed: the same image whatever batch it is generated in. Drawn from
    /// a generator owned by this call, not libtorch's global one, which any
    /// other thread (another request, a parallel test) may reseed or advance.
    pub fn image_noise(&self, seed: u64, opts: &GenerateOptions) -> (Tensor, Tensor) {
        let f = self.vae.config.scale_factor();
        let shape = [1, self.unet.config.in_channels, opts.height / f, opts.width / f];
        let mut rng = crate::dataset::sim::Rng::new(seed);
        let mut normal = |dims: [i64; 4]| {
            let n: i64 = dims.iter().product();
            let values: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
            Tensor::from_slice(&values).view(dims)
        };
        let latents = normal(shape);
        let noise = normal([opts.steps as i64, shape[1], shape[2], shape[3]]);
        (latents, noise)
    }

    /// One image per prompt, image `i` drawn from `seeds[i]`: [b, 3, H, W] in [0, 1], f32 on the CPU.
    pub fn generate(&self, prompts: &[String], seeds: &[u64], opts: &GenerateOptions) -> Result<Tensor, GeneratorError> {
        if prompts.len() != seeds.len() || prompts.is_empty() {
            return Err(GeneratorError::Input(format!("{} prompts for {} seeds", prompts.len(), seeds.len())));
        }
        let (latents, noise): (Vec<Tensor>, Vec<Tensor>) = seeds.iter().map(|&s| self.image_noise(s, opts)).unzip();
        let noise = Tensor::stack(&noise, 1); // [steps, b, c, h, w]
        self.generate_from_latents(prompts, &Tensor::cat(&latents, 0), Some(&noise), opts)
    }

    /// The sampling loop from given initial latents [b, c, h, w] (unit
    /// variance) and, for the ancestral sampler, noise [steps, b, c, h, w].
    pub fn generate_from_latents(&self, prompts: &[String], latents: &Tensor, noise: Option<&Tensor>, opts: &GenerateOptions) -> Result<Tensor, GeneratorError> {
        let m = self.size_multiple();
        if opts.height <= 0 || opts.width <= 0 || opts.height % m != 0 || opts.width % m != 0 {
            return Err(GeneratorError::Input(format!("image size {}x{} must be positive multiples of {m}", opts.height, opts.width)));
        }
        let b = prompts.len() as i64;
        let f = self.vae.config.scale_factor();
        let want = [b, self.unet.config.in_channels, opts.height / f, opts.width / f];
        if latents.size() != want {
            return Err(GeneratorError::Input(format!("latents {:?}, expected {want:?}", latents.size())));
        }
        let mut sched = self.scheduler()?;
        sched.set_timesteps(opts.steps)?;
        let cfg = opts.guidance_scale > 1.0;
        tch::no_grad(|| {
            let cond = self.encode_prompts(prompts)?;
            let (context, pooled) = if cfg {
                let neg = self.negative(&cond, prompts.len())?;
                let pooled = match (neg.pooled, &cond.pooled) {
                    (Some(n), Some(p)) => Some(Tensor::cat(&[n, p.shallow_clone()], 0)),
                    _ => None,
                };
                (Tensor::cat(&[neg.context, cond.context], 0), pooled)
            } else {
                (cond.context, cond.pooled)
            };
            let rows = if cfg { 2 * b } else { b };
            let time_ids = pooled.as_ref().map(|_| {
                let (h, w) = (opts.height as f64, opts.width as f64);
                // original size, crop top-left, target size
                Tensor::from_slice(&[h, w, 0.0, 0.0, h, w]).to_kind(self.kind).to_device(self.device).unsqueeze(0).repeat([rows, 1])
            });
            let mut x = (latents.to_device(self.device).to_kind(Kind::Float) * sched.init_noise_sigma()).to_kind(self.kind);
            for (i, &t) in sched.timesteps.clone().iter().enumerate() {
                let input = if cfg { Tensor::cat(&[&x, &x], 0) } else { x.shallow_clone() };
                let input = sched.scale_model_input(&input, i);
                let t = Tensor::from_slice(&[t]).to_device(self.device);
                let added = match (&pooled, &time_ids) {
                    (Some(p), Some(ids)) => Some(AddedCond { text_embeds: p, time_ids: ids }),
                    _ => None,
                };
                let pred = self.unet.forward(&input, &t, &context, added)?;
                let pred = if cfg {
                    let parts = pred.chunk(2, 0);
                    &parts[0] + (&parts[1] - &parts[0]) * opts.guidance_scale
                } else {
                    pred
                };
                let step_noise = match (sched.sampler, noise) {
                    (Sampler::EulerAncestral, Some(n)) => Some(n.get(i as i64).to_device(self.device)),
                    (Sampler::EulerAncestral, None) => Some(x.to_kind(Kind::Float).randn_like()),
                    (Sampler::Euler, _) => None,
                };
                x = sched.step(&pred, i, &x, step_noise.as_ref())?;
            }
            let images = self.vae.decode(&x)?;
            Ok((images.to_kind(Kind::Float) / 2.0 + 0.5).clamp(0.0, 1.0).to_device(Device::Cpu))
        })
    }
}
