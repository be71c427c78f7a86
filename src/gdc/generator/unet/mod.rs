//! diffusers' `UNet2DConditionModel` (Rombach et al. 2022; SDXL: Podell et
//! al. 2023, arXiv 2307.01952): the noise predictor of Stable Diffusion 1.x,
//! 2.x (SD-Turbo) and SDXL (SDXL-Turbo), built from `unet/config.json` with
//! variable paths equal to the checkpoint keys
//! (`down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight`).
//!
//! SDXL's extra conditioning (`addition_embed_type: "text_time"`): the six
//! size/crop numbers are each embedded sinusoidally, concatenated with the
//! pooled text embedding and added to the timestep embedding. Configs using
//! other options (class embeddings, LCM's `time_cond_proj_dim`, ...) are
//! rejected by name rather than run wrongly.

mod attention;
mod blocks;
mod resnet;

pub(crate) use resnet::{group_norm, ResnetBlock2D, Upsample2D};

use super::{read_config, GeneratorError};
use attention::Transformer2DSpec;
use blocks::{BlockSpec, DownBlock, MidBlock, UpBlock};
use resnet::{timestep_embedding, TimestepMlp};
use serde::Deserialize;
use serde_json::Value;
use std::path::Path;
use tch::{nn, Device, Kind, Tensor};

/// A config value given once for all blocks or per block.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PerBlock {
    One(i64),
    Each(Vec<i64>),
}

impl PerBlock {
    fn expand(&self, n: usize, name: &str) -> Result<Vec<i64>, String> {
        match self {
            Self::One(v) => Ok(vec![*v; n]),
            Self::Each(v) if v.len() == n => Ok(v.clone()),
            Self::Each(v) => Err(format!("{name} has {} entries for {n} blocks", v.len())),
        }
    }
}

/// The fields of a diffusers `UNet2DConditionModel` config that shape the model.
#[derive(Debug, Clone, Deserialize)]
pub struct UNetConfig {
    pub in_channels: i64,
    pub out_channels: i64,
    pub block_out_channels: Vec<i64>,
    pub down_block_types: Vec<String>,
    pub up_block_types: Vec<String>,
    #[serde(default = "default_mid")]
    pub mid_block_type: Option<String>,
    pub layers_per_block: PerBlock,
    pub cross_attention_dim: i64,
    /// The number of heads per block, despite the name (a diffusers legacy).
    #[serde(default = "default_heads")]
    pub attention_head_dim: PerBlock,
    #[serde(default)]
    pub num_attention_heads: Option<PerBlock>,
    #[serde(default = "default_one")]
    pub transformer_layers_per_block: PerBlock,
    #[serde(default)]
    pub reverse_transformer_layers_per_block: Option<Vec<i64>>,
    #[serde(default)]
    pub use_linear_projection: bool,
    #[serde(default = "default_groups")]
    pub norm_num_groups: i64,
    #[serde(default = "default_eps")]
    pub norm_eps: f64,
    #[serde(default = "default_true")]
    pub flip_sin_to_cos: bool,
    #[serde(default)]
    pub freq_shift: f64,
    #[serde(default)]
    pub addition_embed_type: Option<String>,
    #[serde(default)]
    pub addition_time_embed_dim: Option<i64>,
    #[serde(default)]
    pub projection_class_embeddings_input_dim: Option<i64>,
    #[serde(default = "default_sample_size")]
    pub sample_size: i64,
    /// Every other key, checked for options this implementation lacks.
    #[serde(flatten)]
    pub other: serde_json::Map<String, Value>,
}

fn default_mid() -> Option<String> {
    Some("UNetMidBlock2DCrossAttn".into())
}
fn default_heads() -> PerBlock {
    PerBlock::One(8)
}
fn default_one() -> PerBlock {
    PerBlock::One(1)
}
fn default_groups() -> i64 {
    32
}
fn default_eps() -> f64 {
    1e-5
}
fn default_true() -> bool {
    true
}
fn default_sample_size() -> i64 {
    64
}

/// Per-block settings resolved from the config.
#[derive(Debug, Clone)]
struct Layout {
    cross_attn_down: Vec<bool>,
    cross_attn_up: Vec<bool>,
    layers: Vec<i64>,
    heads: Vec<i64>,
    transformer_layers: Vec<i64>,
    up_transformer_layers: Vec<i64>,
}

impl UNetConfig {
    fn layout(&self) -> Result<Layout, String> {
        let n = self.block_out_channels.len();
        if n == 0 || self.down_block_types.len() != n || self.up_block_types.len() != n {
            return Err(format!("block_out_channels, down_block_types and up_block_types must have the same non-zero length ({n})"));
        }
        let kind = |t: &str, plain: &str, cross: &str| match t {
            t if t == plain => Ok(false),
            t if t == cross => Ok(true),
            t => Err(format!("block type {t:?} unsupported ({plain}, {cross})")),
        };
        let cross_attn_down = self.down_block_types.iter().map(|t| kind(t, "DownBlock2D", "CrossAttnDownBlock2D")).collect::<Result<Vec<_>, _>>()?;
        let cross_attn_up = self.up_block_types.iter().map(|t| kind(t, "UpBlock2D", "CrossAttnUpBlock2D")).collect::<Result<Vec<_>, _>>()?;
        if self.mid_block_type.as_deref() != Some("UNetMidBlock2DCrossAttn") {
            return Err(format!("mid_block_type {:?} unsupported (UNetMidBlock2DCrossAttn)", self.mid_block_type));
        }
        let heads = self.num_attention_heads.as_ref().unwrap_or(&self.attention_head_dim).expand(n, "attention heads")?;
        let transformer_layers = self.transformer_layers_per_block.expand(n, "transformer_layers_per_block")?;
        let up_transformer_layers = match &self.reverse_transformer_layers_per_block {
            Some(r) if r.len() == n => r.clone(),
            Some(r) => return Err(format!("reverse_transformer_layers_per_block has {} entries for {n} blocks", r.len())),
            None => transformer_layers.iter().rev().copied().collect(),
        };
        let layout = Layout { cross_attn_down, cross_attn_up, layers: self.layers_per_block.expand(n, "layers_per_block")?, heads, transformer_layers, up_transformer_layers };
        for (i, &c) in self.block_out_channels.iter().enumerate() {
            if c <= 0 || c % self.norm_num_groups != 0 || layout.heads[i] <= 0 || c % layout.heads[i] != 0 {
                return Err(format!("block {i}: {c} channels must be positive and divisible by {} groups and {} heads", self.norm_num_groups, layout.heads[i]));
            }
        }
        if layout.layers.iter().chain(&layout.transformer_layers).chain(&layout.up_transformer_layers).any(|&l| l < 1) {
            return Err("layer counts must be >= 1".into());
        }
        match (self.addition_embed_type.as_deref(), self.addition_time_embed_dim, self.projection_class_embeddings_input_dim) {
            (None, _, _) => {}
            (Some("text_time"), Some(t), Some(p)) if t > 0 && p > 0 => {}
            (t, ..) => return Err(format!("addition_embed_type {t:?} unsupported or incomplete (null, or text_time with addition_time_embed_dim and projection_class_embeddings_input_dim)")),
        }
        self.reject_unsupported()?;
        Ok(layout)
    }

    /// Options that change the computation and are not implemented: their
    /// default values pass, anything else is an error naming the key.
    fn reject_unsupported(&self) -> Result<(), String> {
        let defaults: [(&str, Value); 20] = [
            ("act_fn", "silu".into()),
            ("center_input_sample", false.into()),
            ("class_embed_type", Value::Null),
            ("num_class_embeds", Value::Null),
            ("conv_in_kernel", 3.into()),
            ("conv_out_kernel", 3.into()),
            ("downsample_padding", 1.into()),
            ("dual_cross_attention", false.into()),
            ("encoder_hid_dim", Value::Null),
            ("encoder_hid_dim_type", Value::Null),
            ("mid_block_scale_factor", 1.into()),
            ("only_cross_attention", false.into()),
            ("resnet_out_scale_factor", 1.into()),
            ("resnet_skip_time_act", false.into()),
            ("resnet_time_scale_shift", "default".into()),
            ("time_cond_proj_dim", Value::Null),
            ("time_embedding_type", "positional".into()),
            ("time_embedding_dim", Value::Null),
            ("time_embedding_act_fn", Value::Null),
            ("timestep_post_act", Value::Null),
        ];
        for (key, default) in defaults {
            if let Some(v) = self.other.get(key) {
                let same = v == &default || (v.is_number() && default.is_number() && v.as_f64() == default.as_f64());
                if !same {
                    return Err(format!("{key} = {v} is not supported (only {default})"));
                }
            }
        }
        if let Some(v) = self.other.get("attention_type").filter(|v| v.as_str() != Some("default")) {
            return Err(format!("attention_type = {v} is not supported (only \"default\")"));
        }
        if self.other.get("cross_attention_norm").is_some_and(|v| !v.is_null()) {
            return Err("cross_attention_norm is not supported".into());
        }
        Ok(())
    }

    pub fn is_sdxl(&self) -> bool {
        self.addition_embed_type.as_deref() == Some("text_time")
    }
}

/// SDXL's extra conditioning: pooled text embedding and the six size/crop ids.
#[derive(Debug)]
pub struct AddedCond<'a> {
    pub text_embeds: &'a Tensor,
    pub time_ids: &'a Tensor,
}

#[derive(Debug)]
pub struct UNet2DConditionModel {
    pub config: UNetConfig,
    pub vs: nn::VarStore,
    conv_in: nn::Conv2D,
    time_embedding: TimestepMlp,
    add_embedding: Option<TimestepMlp>,
    down: Vec<DownBlock>,
    mid: MidBlock,
    up: Vec<UpBlock>,
    conv_norm_out: nn::GroupNorm,
    conv_out: nn::Conv2D,
}

impl UNet2DConditionModel {
    pub fn new(config: UNetConfig, device: Device) -> Result<Self, GeneratorError> {
        let l = config.layout().map_err(|reason| GeneratorError::Config { path: "<unet config>".into(), reason })?;
        let vs = nn::VarStore::new(device);
        let p = vs.root();
        let ch = &config.block_out_channels;
        let n = ch.len();
        let temb = ch[0] * 4;
        let (groups, eps) = (config.norm_num_groups, config.norm_eps);
        let pad1 = nn::ConvConfig { padding: 1, ..Default::default() };
        let attn = |i: usize, c: i64, layers: i64| Transformer2DSpec {
            channels: c,
            heads: l.heads[i],
            layers,
            context: config.cross_attention_dim,
            groups,
            linear_projection: config.use_linear_projection,
        };
        let conv_in = nn::conv2d(&p / "conv_in", config.in_channels, ch[0], 3, pad1);
        let time_embedding = TimestepMlp::new(&(&p / "time_embedding"), ch[0], temb);
        let add_embedding = config.projection_class_embeddings_input_dim.filter(|_| config.is_sdxl()).map(|d| TimestepMlp::new(&(&p / "add_embedding"), d, temb));
        let down = (0..n)
            .map(|i| {
                let spec = BlockSpec { layers: l.layers[i], temb, groups, eps, attention: l.cross_attn_down[i].then(|| attn(i, ch[i], l.transformer_layers[i])), resample: i + 1 < n };
                DownBlock::new(&(&p / "down_blocks" / i as i64), if i == 0 { ch[0] } else { ch[i - 1] }, ch[i], &spec)
            })
            .collect();
        let mid = MidBlock::new(&(&p / "mid_block"), ch[n - 1], temb, groups, eps, &attn(n - 1, ch[n - 1], l.transformer_layers[n - 1]));
        let up = (0..n)
            .map(|i| {
                let r = n - 1 - i; // the down block this up block mirrors
                let spec = BlockSpec {
                    layers: l.layers[r] + 1,
                    temb,
                    groups,
                    eps,
                    attention: l.cross_attn_up[i].then(|| attn(r, ch[r], l.up_transformer_layers[i])),
                    resample: i + 1 < n,
                };
                let prev = if i == 0 { ch[n - 1] } else { ch[r + 1] };
                let skip_in = ch[r.saturating_sub(1)];
                UpBlock::new(&(&p / "up_blocks" / i as i64), prev, ch[r], skip_in, &spec)
            })
            .collect();
        let conv_norm_out = group_norm(&p / "conv_norm_out", groups, ch[0], eps);
        let conv_out = nn::conv2d(&p / "conv_out", ch[0], config.out_channels, 3, pad1);
        Ok(Self { config, vs, conv_in, time_embedding, add_embedding, down, mid, up, conv_norm_out, conv_out })
    }

    /// Loads `dir/config.json` + `dir/diffusion_pytorch_model[.fp16].safetensors`.
    pub fn load(dir: &Path, device: Device, kind: Kind) -> Result<Self, GeneratorError> {
        let (config, cfg_path): (UNetConfig, _) = read_config(&dir.join("config.json"))?;
        let mut model = Self::new(config, device).map_err(|e| e.at_config(&cfg_path))?;
        model.vs.set_kind(kind);
        let file = crate::gdc::generator::weights_file(dir, "diffusion_pytorch_model", device)?;
        crate::weights::load_strict(&mut model.vs, &file, &Default::default())?;
        Ok(model)
    }

    /// Latent spatial sizes must halve cleanly at every down block.
    pub fn size_multiple(&self) -> i64 {
        1 << (self.config.block_out_channels.len() - 1)
    }

    /// Noise (or v) prediction: `sample` [b, in, h, w], `timesteps` [b] or [1]
    /// (float), `context` [b, tokens, cross_attention_dim]; `added` for SDXL.
    pub fn forward(&self, sample: &Tensor, timesteps: &Tensor, context: &Tensor, added: Option<AddedCond>) -> Result<Tensor, GeneratorError> {
        let c = &self.config;
        let (b, ci, h, w) = sample.size4().map_err(|_| GeneratorError::Input(format!("sample must be [b, c, h, w], got {:?}", sample.size())))?;
        let m = self.size_multiple();
        if ci != c.in_channels || h % m != 0 || w % m != 0 || h == 0 || w == 0 {
            return Err(GeneratorError::Input(format!("sample {:?}: needs {} channels and sides a multiple of {m}", sample.size(), c.in_channels)));
        }
        if context.dim() != 3 || context.size()[0] != b || context.size()[2] != c.cross_attention_dim {
            return Err(GeneratorError::Input(format!("context {:?}: needs [{b}, tokens, {}]", context.size(), c.cross_attention_dim)));
        }
        let kind = self.conv_in.ws.kind();
        let dev = self.vs.device();
        let (x, ctx) = (sample.to_device(dev).to_kind(kind), context.to_device(dev).to_kind(kind));
        let t = timesteps.to_device(dev).flatten(0, -1).expand([b], false);
        tch::no_grad(|| -> Result<Tensor, GeneratorError> {
            let t_emb = timestep_embedding(&t, c.block_out_channels[0], c.flip_sin_to_cos, c.freq_shift).to_kind(kind);
            let mut emb = self.time_embedding.forward(&t_emb);
            match (&self.add_embedding, added) {
                (Some(add), Some(a)) => {
                    let dim = c.addition_time_embed_dim.unwrap_or(0);
                    let ids = a.time_ids.to_device(dev);
                    let want = c.projection_class_embeddings_input_dim.unwrap_or(0);
                    let got = a.text_embeds.size().last().copied().unwrap_or(0) + ids.size().last().copied().unwrap_or(0) * dim;
                    if ids.dim() != 2 || ids.size()[0] != b || a.text_embeds.size().first() != Some(&b) || got != want {
                        return Err(GeneratorError::Input(format!(
                            "SDXL conditioning: text_embeds {:?} + time_ids {:?} x {dim} must give [{b}, {want}]",
                            a.text_embeds.size(),
                            ids.size()
                        )));
                    }
                    let time = timestep_embedding(&ids.flatten(0, -1), dim, c.flip_sin_to_cos, c.freq_shift).reshape([b, -1]);
                    let add_in = Tensor::cat(&[a.text_embeds.to_device(dev).to_kind(Kind::Float), time], -1).to_kind(kind);
                    emb += add.forward(&add_in);
                }
                (Some(_), None) => return Err(GeneratorError::Input("an SDXL UNet needs text_embeds and time_ids".into())),
                (None, _) => {}
            }
            let mut x = x.apply(&self.conv_in);
            let mut skips = vec![x.shallow_clone()];
            for d in &self.down {
                x = d.forward(&x, &emb, &ctx, &mut skips);
            }
            x = self.mid.forward(&x, &emb, &ctx);
            for u in &self.up {
                x = u.forward(&x, &emb, &ctx, &mut skips);
            }
            Ok(x.apply(&self.conv_norm_out).silu().apply(&self.conv_out))
        })
    }
}
