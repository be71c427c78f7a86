//! The decoder half of diffusers' `AutoencoderKL` (Rombach et al. 2022):
//! `post_quant_conv`, then conv → mid block (resnet, single-head spatial
//! self-attention, resnet) → up blocks → GroupNorm/SiLU/conv to RGB in
//! [-1, 1]. The encoder is not built (text-to-image never encodes), so its
//! checkpoint keys are skipped by prefix while every decoder key is strict.

use super::unet::{group_norm, ResnetBlock2D, Upsample2D};
use super::{read_config, GeneratorError};
use serde::Deserialize;
use std::path::Path;
use tch::{nn, Device, Kind, Tensor};

#[derive(Debug, Clone, Deserialize)]
pub struct VaeConfig {
    #[serde(default = "default_out")]
    pub out_channels: i64,
    pub latent_channels: i64,
    pub block_out_channels: Vec<i64>,
    pub up_block_types: Vec<String>,
    #[serde(default = "default_layers")]
    pub layers_per_block: i64,
    #[serde(default = "default_groups")]
    pub norm_num_groups: i64,
    #[serde(default = "default_scaling")]
    pub scaling_factor: f64,
    /// SDXL's VAE overflows in fp16: the pipeline decodes in f32 when set.
    #[serde(default)]
    pub force_upcast: bool,
    #[serde(default = "default_true")]
    pub mid_block_add_attention: bool,
    #[serde(default = "default_true")]
    pub use_post_quant_conv: bool,
}

fn default_out() -> i64 {
    3
}
fn default_layers() -> i64 {
    1
}
fn default_groups() -> i64 {
    32
}
fn default_scaling() -> f64 {
    0.18215
}
fn default_true() -> bool {
    true
}

impl VaeConfig {
    fn validate(&self) -> Result<(), String> {
        if self.block_out_channels.is_empty() || self.up_block_types.len() != self.block_out_channels.len() {
            return Err("block_out_channels and up_block_types must have the same non-zero length".into());
        }
        if let Some(t) = self.up_block_types.iter().find(|t| *t != "UpDecoderBlock2D") {
            return Err(format!("up block type {t:?} unsupported (UpDecoderBlock2D)"));
        }
        if self.block_out_channels.iter().any(|&c| c <= 0 || c % self.norm_num_groups != 0) || self.latent_channels <= 0 || self.layers_per_block < 1 {
            return Err(format!("channels must be positive multiples of norm_num_groups {}", self.norm_num_groups));
        }
        if !self.mid_block_add_attention {
            return Err("mid_block_add_attention = false is not supported".into());
        }
        Ok(())
    }

    /// Pixels per latent along each side: 2^(blocks - 1).
    pub fn scale_factor(&self) -> i64 {
        1 << (self.block_out_channels.len() - 1)
    }
}

/// Checkpoints saved before diffusers 0.14 name the mid-block attention
/// `query/key/value/proj_attn` (diffusers renames them on load; so do we).
fn legacy_attention_key(key: String, t: Tensor) -> (String, Tensor) {
    const RENAMES: [(&str, &str); 4] = [(".query.", ".to_q."), (".key.", ".to_k."), (".value.", ".to_v."), (".proj_attn.", ".to_out.0.")];
    if !key.contains(".attentions.") {
        return (key, t);
    }
    match RENAMES.iter().find(|(old, _)| key.contains(old)) {
        // the oldest files keep them as 1x1 convolutions
        Some((old, new)) => (key.replace(old, new), if t.dim() == 4 { t.flatten(1, -1) } else { t }),
        None => (key, t),
    }
}

/// The mid block's attention over all pixels: one head as wide as the channels.
#[derive(Debug)]
struct SpatialAttention {
    group_norm: nn::GroupNorm,
    to_q: nn::Linear,
    to_k: nn::Linear,
    to_v: nn::Linear,
    to_out: nn::Linear,
}

impl SpatialAttention {
    fn new(p: &nn::Path, c: i64, groups: i64) -> Self {
        let l = |n: &str| nn::linear(p / n, c, c, Default::default());
        Self { group_norm: group_norm(p / "group_norm", groups, c, 1e-6), to_q: l("to_q"), to_k: l("to_k"), to_v: l("to_v"), to_out: nn::linear(p / "to_out" / 0, c, c, Default::default()) }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let (b, c, h, w) = x.size4().unwrap_or((1, 0, 0, 0));
        let t = x.apply(&self.group_norm).view([b, c, h * w]).transpose(1, 2);
        let head = |l: &nn::Linear| t.apply(l).unsqueeze(1);
        let a = Tensor::scaled_dot_product_attention(&head(&self.to_q), &head(&self.to_k), &head(&self.to_v), None::<Tensor>, 0.0, false, None, false);
        a.squeeze_dim(1).apply(&self.to_out).transpose(1, 2).reshape([b, c, h, w]) + x
    }
}

#[derive(Debug)]
pub struct VaeDecoder {
    pub config: VaeConfig,
    pub vs: nn::VarStore,
    post_quant_conv: Option<nn::Conv2D>,
    conv_in: nn::Conv2D,
    mid: (ResnetBlock2D, SpatialAttention, ResnetBlock2D),
    up: Vec<(Vec<ResnetBlock2D>, Option<Upsample2D>)>,
    conv_norm_out: nn::GroupNorm,
    conv_out: nn::Conv2D,
}

impl VaeDecoder {
    pub fn new(config: VaeConfig, device: Device) -> Result<Self, GeneratorError> {
        config.validate().map_err(|reason| GeneratorError::Config { path: "<vae config>".into(), reason })?;
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let (g, eps, z) = (config.norm_num_groups, 1e-6, config.latent_channels);
        let pad1 = nn::ConvConfig { padding: 1, ..Default::default() };
        let post_quant_conv = config.use_post_quant_conv.then(|| nn::conv2d(&root / "post_quant_conv", z, z, 1, Default::default()));
        let p = &root / "decoder";
        let rev: Vec<i64> = config.block_out_channels.iter().rev().copied().collect();
        let top = rev[0];
        let conv_in = nn::conv2d(&p / "conv_in", z, top, 3, pad1);
        let m = &p / "mid_block";
        let mid = (
            ResnetBlock2D::new(&(&m / "resnets" / 0), top, top, None, g, eps),
            SpatialAttention::new(&(&m / "attentions" / 0), top, g),
            ResnetBlock2D::new(&(&m / "resnets" / 1), top, top, None, g, eps),
        );
        let up = rev
            .iter()
            .enumerate()
            .map(|(i, &o)| {
                let b = &p / "up_blocks" / i as i64;
                let prev = if i == 0 { top } else { rev[i - 1] };
                let resnets = (0..config.layers_per_block + 1).map(|j| ResnetBlock2D::new(&(&b / "resnets" / j), if j == 0 { prev } else { o }, o, None, g, eps)).collect();
                (resnets, (i + 1 < rev.len()).then(|| Upsample2D::new(&b, o)))
            })
            .collect();
        let c0 = config.block_out_channels[0];
        let conv_norm_out = group_norm(&p / "conv_norm_out", g, c0, eps);
        let conv_out = nn::conv2d(&p / "conv_out", c0, config.out_channels, 3, pad1);
        Ok(Self { config, vs, post_quant_conv, conv_in, mid, up, conv_norm_out, conv_out })
    }

    /// Loads `dir/config.json` + `dir/diffusion_pytorch_model[.fp16].safetensors`, decoder keys only.
    pub fn load(dir: &Path, device: Device, kind: Kind) -> Result<Self, GeneratorError> {
        let (config, cfg_path): (VaeConfig, _) = read_config(&dir.join("config.json"))?;
        let mut model = Self::new(config, device).map_err(|e| e.at_config(&cfg_path))?;
        model.vs.set_kind(kind);
        let file = super::weights_file(dir, "diffusion_pytorch_model", device)?;
        let source = file.display().to_string();
        let tensors = Tensor::read_safetensors(&file)
            .map_err(|e| crate::weights::WeightsError::Unreadable { path: source.clone(), reason: e.to_string() })?
            .into_iter()
            .filter(|(k, _)| !k.starts_with("encoder.") && !k.starts_with("quant_conv."))
            .map(|(k, t)| legacy_attention_key(k, t))
            .collect();
        crate::weights::load_tensors(&mut model.vs, &source, tensors, &Default::default())?;
        Ok(model)
    }

    /// Scaled latents as the sampler leaves them [b, z, h, w] → RGB [b, 3, sh, sw] in [-1, 1] (unclamped).
    pub fn decode(&self, latents: &Tensor) -> Result<Tensor, GeneratorError> {
        let c = &self.config;
        if latents.dim() != 4 || latents.size()[1] != c.latent_channels {
            return Err(GeneratorError::Input(format!("latents {:?}: needs [b, {}, h, w]", latents.size(), c.latent_channels)));
        }
        let z = latents.to_device(self.vs.device()).to_kind(self.conv_in.ws.kind()) / c.scaling_factor;
        Ok(self.decode_unscaled(&z))
    }

    /// `AutoencoderKL.decode` itself (no scaling factor).
    pub fn decode_unscaled(&self, z: &Tensor) -> Tensor {
        tch::no_grad(|| {
            let z = z.to_device(self.vs.device()).to_kind(self.conv_in.ws.kind());
            let z = match &self.post_quant_conv {
                Some(c) => z.apply(c),
                None => z,
            };
            let x = z.apply(&self.conv_in);
            let x = self.mid.0.forward(&x, None);
            let x = self.mid.1.forward(&x);
            let mut x = self.mid.2.forward(&x, None);
            for (resnets, upsample) in &self.up {
                for r in resnets {
                    x = r.forward(&x, None);
                }
                if let Some(u) = upsample {
                    x = u.forward(&x);
                }
            }
            x.apply(&self.conv_norm_out).silu().apply(&self.conv_out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_attention_names_are_renamed() {
        let conv = Tensor::zeros([8, 8, 1, 1], (Kind::Float, Device::Cpu));
        let (k, t) = legacy_attention_key("decoder.mid_block.attentions.0.query.weight".into(), conv);
        assert_eq!((k.as_str(), t.size()), ("decoder.mid_block.attentions.0.to_q.weight", vec![8, 8]));
        let (k, _) = legacy_attention_key("decoder.mid_block.attentions.0.proj_attn.bias".into(), Tensor::zeros([8], (Kind::Float, Device::Cpu)));
        assert_eq!(k, "decoder.mid_block.attentions.0.to_out.0.bias");
        let (k, _) = legacy_attention_key("decoder.up_blocks.0.resnets.0.conv1.weight".into(), Tensor::zeros([1], (Kind::Float, Device::Cpu)));
        assert_eq!(k, "decoder.up_blocks.0.resnets.0.conv1.weight");
    }
}
