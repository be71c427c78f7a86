//! DINOv2 (Oquab et al. 2023, arXiv 2304.07193) and DINOv2 with registers
//! (Darcet et al. 2023, arXiv 2309.16588) as a plain ViT in tch.
//!
//! Variable paths equal the Hugging Face `Dinov2Model` /
//! `Dinov2WithRegistersModel` checkpoint keys (`embeddings.cls_token`,
//! `encoder.layer.N.attention.attention.query`, `...mlp.fc1` or the SwiGLU
//! `...mlp.weights_in/weights_out` of ViT-g, `layernorm`), so a real
//! `model.safetensors` + `config.json` (e.g. facebook/dinov2-small) loads
//! as is. Position embeddings are interpolated bicubically for any input
//! size, exactly as the reference (plain: no antialiasing; registers:
//! antialiased). Parity with `transformers` on random small configs:
//! tests/dinov2_parity.rs.
//!
//! ```no_run
//! # use eloss_perception::gdc::backbone::{dinov2::Dinov2, EmbeddingRecipe};
//! let model = Dinov2::load("dinov2-small/", tch::Device::Cpu).unwrap();
//! let pixels = tch::Tensor::zeros([1, 3, 224, 224], (tch::Kind::Float, tch::Device::Cpu));
//! let embedding = model.embed(&pixels, EmbeddingRecipe::Cls).unwrap(); // [1, 384]
//! ```

use super::EmbeddingRecipe;
use crate::weights::{self, Leniency, WeightsError};
use serde::Deserialize;
use std::path::Path;
use tch::nn;
use tch::{Device, Kind, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum Dinov2Error {
    #[error("{path}: {reason}")]
    Config { path: String, reason: String },
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error("input must be [batch, {channels}, H, W] with H, W >= {patch}, got {shape:?}")]
    Input { channels: i64, patch: i64, shape: Vec<i64> },
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    #[error("a ViT has no {0:?} embedding (use cls or cls+meanpatch)")]
    Recipe(&'static str),
}

/// The fields of a Hugging Face DINOv2 `config.json` that shape the model.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Dinov2Config {
    #[serde(default = "default_model_type")]
    pub model_type: String,
    pub hidden_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    #[serde(default = "default_mlp_ratio")]
    pub mlp_ratio: f64,
    pub patch_size: i64,
    pub image_size: i64,
    #[serde(default = "default_channels")]
    pub num_channels: i64,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub use_swiglu_ffn: bool,
    #[serde(default = "default_true")]
    pub qkv_bias: bool,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default)]
    pub num_register_tokens: i64,
}

fn default_model_type() -> String {
    "dinov2".into()
}
fn default_mlp_ratio() -> f64 {
    4.0
}
fn default_channels() -> i64 {
    3
}
fn default_eps() -> f64 {
    1e-6
}
fn default_true() -> bool {
    true
}
fn default_act() -> String {
    "gelu".into()
}

impl Dinov2Config {
    fn preset(hidden: i64, layers: i64, heads: i64, swiglu: bool, registers: i64) -> Self {
        Self {
            model_type: if registers > 0 {
                "dinov2_with_registers"
            } else {
                "dinov2"
            }
            .into(),
            hidden_size: hidden,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            mlp_ratio: 4.0,
            patch_size: 14,
            image_size: 518,
            num_channels: 3,
            layer_norm_eps: 1e-6,
            use_swiglu_ffn: swiglu,
            qkv_bias: true,
            hidden_act: "gelu".into(),
            num_register_tokens: registers,
        }
    }
    /// facebook/dinov2-small (ViT-S/14, 384-d).
    pub fn vit_s14() -> Self {
        Self::preset(384, 12, 6, false, 0)
    }
    /// facebook/dinov2-base (ViT-B/14, 768-d).
    pub fn vit_b14() -> Self {
        Self::preset(768, 12, 12, false, 0)
    }
    /// facebook/dinov2-large (ViT-L/14, 1024-d).
    pub fn vit_l14() -> Self {
        Self::preset(1024, 24, 16, false, 0)
    }
    /// facebook/dinov2-giant (ViT-g/14, 1536-d, SwiGLU MLP).
    pub fn vit_g14() -> Self {
        Self::preset(1536, 40, 24, true, 0)
    }
    /// A preset with 4 register tokens (facebook/dinov2-with-registers-*).
    pub fn with_registers(mut self) -> Self {
        self.num_register_tokens = 4;
        self.model_type = "dinov2_with_registers".into();
        self
    }

    pub fn from_json(text: &str, path: &str) -> Result<Self, Dinov2Error> {
        let c: Self = serde_json::from_str(text).map_err(|e| Dinov2Error::Config {
            path: path.into(),
            reason: e.to_string(),
        })?;
        c.validate().map_err(|reason| Dinov2Error::Config {
            path: path.into(),
            reason,
        })?;
        Ok(c)
    }

    fn validate(&self) -> Result<(), String> {
        if !["dinov2", "dinov2_with_registers"].contains(&self.model_type.as_str()) {
            return Err(format!("model_type {:?} is not a DINOv2 model", self.model_type));
        }
        if self.hidden_act != "gelu" {
            return Err(format!(
                "hidden_act {:?} unsupported (DINOv2 uses gelu)",
                self.hidden_act
            ));
        }
        let positive = [
            self.hidden_size,
            self.num_hidden_layers,
            self.num_attention_heads,
            self.patch_size,
            self.image_size,
            self.num_channels,
        ];
        if positive.iter().any(|&v| v <= 0) || self.num_register_tokens < 0 || !(self.mlp_ratio > 0.0) {
            return Err("sizes must be positive".into());
        }
        if self.hidden_size % self.num_attention_heads != 0 {
            return Err(format!(
                "hidden_size {} not divisible by {} heads",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.image_size % self.patch_size != 0 {
            return Err(format!(
                "image_size {} not a multiple of patch_size {}",
                self.image_size, self.patch_size
            ));
        }
        Ok(())
    }

    fn mlp_hidden(&self) -> i64 {
        let h = (self.hidden_size as f64 * self.mlp_ratio) as i64;
        // SwiGLU keeps two thirds of the hidden width, rounded up to a multiple of 8
        if self.use_swiglu_ffn {
            (h * 2 / 3 + 7) / 8 * 8
        } else {
            h
        }
    }

    fn grid(&self) -> i64 {
        self.image_size / self.patch_size
    }
}

#[derive(Debug)]
struct Embeddings {
    cls_token: Tensor,
    position_embeddings: Tensor,
    register_tokens: Option<Tensor>,
    projection: nn::Conv2D,
    antialias: bool,
    patch: i64,
    grid: i64,
}

impl Embeddings {
    fn new(p: &nn::Path, c: &Dinov2Config) -> Self {
        let d = c.hidden_size;
        let n = c.grid() * c.grid();
        let conv = nn::ConvConfig {
            stride: c.patch_size,
            ..Default::default()
        };
        // mask_token is used only by masked-image pre-training; declared so real checkpoints load strictly
        let _ = p.zeros("mask_token", &[1, d]);
        Self {
            cls_token: p.zeros("cls_token", &[1, 1, d]),
            position_embeddings: p.zeros("position_embeddings", &[1, n + 1, d]),
            register_tokens: (c.num_register_tokens > 0)
                .then(|| p.zeros("register_tokens", &[1, c.num_register_tokens, d])),
            projection: nn::conv2d(
                p / "patch_embeddings" / "projection",
                c.num_channels,
                d,
                c.patch_size,
                conv,
            ),
            antialias: c.num_register_tokens > 0,
            patch: c.patch_size,
            grid: c.grid(),
        }
    }

    /// Patch position embeddings resized to an (h, w) patch grid; the
    /// reference skips the resize only for the trained square grid.
    fn positions(&self, h: i64, w: i64) -> Tensor {
        if h == self.grid && w == self.grid {
            return self.position_embeddings.shallow_clone();
        }
        let d = self.position_embeddings.size()[2];
        let cls = self.position_embeddings.narrow(1, 0, 1);
        let grid = self
            .position_embeddings
            .narrow(1, 1, self.grid * self.grid)
            .reshape([1, self.grid, self.grid, d])
            .permute([0, 3, 1, 2]);
        let kind = grid.kind();
        let grid = grid.to_kind(Kind::Float);
        let resized = if self.antialias {
            grid.internal_upsample_bicubic2d_aa([h, w], false, None, None)
        } else {
            grid.upsample_bicubic2d([h, w], false, None, None)
        };
        let resized = resized.to_kind(kind).permute([0, 2, 3, 1]).reshape([1, h * w, d]);
        Tensor::cat(&[cls, resized], 1)
    }

    fn forward(&self, pixels: &Tensor) -> Tensor {
        let (b, _, h, w) = pixels.size4().unwrap_or((1, 0, 0, 0));
        let x = pixels.apply(&self.projection).flatten(2, 3).transpose(1, 2);
        let x = Tensor::cat(&[self.cls_token.expand([b, -1, -1], false), x], 1);
        let x = x + self.positions(h / self.patch, w / self.patch);
        match &self.register_tokens {
            // registers go between CLS and the patches, after the position embeddings
            Some(r) => Tensor::cat(
                &[
                    x.narrow(1, 0, 1),
                    r.expand([b, -1, -1], false),
                    x.narrow(1, 1, x.size()[1] - 1),
                ],
                1,
            ),
            None => x,
        }
    }
}

#[derive(Debug)]
enum Mlp {
    Gelu {
        fc1: nn::Linear,
        fc2: nn::Linear,
    },
    SwiGlu {
        weights_in: nn::Linear,
        weights_out: nn::Linear,
    },
}

impl Mlp {
    fn new(p: &nn::Path, c: &Dinov2Config) -> Self {
        let (d, h) = (c.hidden_size, c.mlp_hidden());
        if c.use_swiglu_ffn {
            Self::SwiGlu {
                weights_in: nn::linear(p / "weights_in", d, 2 * h, Default::default()),
                weights_out: nn::linear(p / "weights_out", h, d, Default::default()),
            }
        } else {
            Self::Gelu {
                fc1: nn::linear(p / "fc1", d, h, Default::default()),
                fc2: nn::linear(p / "fc2", h, d, Default::default()),
            }
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        match self {
            Self::Gelu { fc1, fc2 } => x.apply(fc1).gelu("none").apply(fc2),
            Self::SwiGlu {
                weights_in,
                weights_out,
            } => {
                // the fused projection holds the gate, then the value
                let gv = x.apply(weights_in).chunk(2, -1);
                (gv[0].silu() * &gv[1]).apply(weights_out)
            }
        }
    }
}

#[derive(Debug)]
struct Layer {
    norm1: nn::LayerNorm,
    query: nn::Linear,
    key: nn::Linear,
    value: nn::Linear,
    out: nn::Linear,
    scale1: Tensor,
    norm2: nn::LayerNorm,
    mlp: Mlp,
    scale2: Tensor,
    heads: i64,
}

impl Layer {
    fn new(p: &nn::Path, c: &Dinov2Config) -> Self {
        let d = c.hidden_size;
        let ln = nn::LayerNormConfig {
            eps: c.layer_norm_eps,
            ..Default::default()
        };
        let qkv = nn::LinearConfig {
            bias: c.qkv_bias,
            ..Default::default()
        };
        let att = p / "attention";
        Self {
            norm1: nn::layer_norm(p / "norm1", vec![d], ln),
            query: nn::linear(&att / "attention" / "query", d, d, qkv),
            key: nn::linear(&att / "attention" / "key", d, d, qkv),
            value: nn::linear(&att / "attention" / "value", d, d, qkv),
            out: nn::linear(&att / "output" / "dense", d, d, Default::default()),
            scale1: (p / "layer_scale1").ones("lambda1", &[d]),
            norm2: nn::layer_norm(p / "norm2", vec![d], ln),
            mlp: Mlp::new(&(p / "mlp"), c),
            scale2: (p / "layer_scale2").ones("lambda1", &[d]),
            heads: c.num_attention_heads,
        }
    }

    fn attention(&self, x: &Tensor) -> Tensor {
        let (b, n, d) = x.size3().unwrap_or((1, 0, 0));
        let split = |t: Tensor| t.view([b, n, self.heads, d / self.heads]).transpose(1, 2);
        let (q, k, v) = (
            split(x.apply(&self.query)),
            split(x.apply(&self.key)),
            split(x.apply(&self.value)),
        );
        let a = Tensor::scaled_dot_product_attention(&q, &k, &v, None::<Tensor>, 0.0, false, None, false);
        a.transpose(1, 2).reshape([b, n, d]).apply(&self.out)
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let x = x + self.attention(&x.apply(&self.norm1)) * &self.scale1;
        let y = self.mlp.forward(&x.apply(&self.norm2)) * &self.scale2;
        x + y
    }
}

/// A DINOv2 image encoder with its own `VarStore`.
#[derive(Debug)]
pub struct Dinov2 {
    pub config: Dinov2Config,
    pub vs: nn::VarStore,
    embeddings: Embeddings,
    layers: Vec<Layer>,
    layernorm: nn::LayerNorm,
}

impl Dinov2 {
    /// Builds the model with untrained (zero/one/default-initialised) weights.
    pub fn new(config: Dinov2Config, device: Device) -> Result<Self, Dinov2Error> {
        config.validate().map_err(|reason| Dinov2Error::Config {
            path: "<preset>".into(),
            reason,
        })?;
        let vs = nn::VarStore::new(device);
        let p = vs.root();
        let embeddings = Embeddings::new(&(&p / "embeddings"), &config);
        let layers = (0..config.num_hidden_layers)
            .map(|i| Layer::new(&(&p / "encoder" / "layer" / i), &config))
            .collect();
        let ln = nn::LayerNormConfig {
            eps: config.layer_norm_eps,
            ..Default::default()
        };
        let layernorm = nn::layer_norm(&p / "layernorm", vec![config.hidden_size], ln);
        Ok(Self {
            config,
            vs,
            embeddings,
            layers,
            layernorm,
        })
    }

    /// Loads a Hugging Face model folder (`config.json` + `model.safetensors`).
    pub fn load(dir: impl AsRef<Path>, device: Device) -> Result<Self, Dinov2Error> {
        let dir = dir.as_ref();
        let cfg_path = dir.join("config.json");
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| Dinov2Error::Config {
            path: cfg_path.display().to_string(),
            reason: e.to_string(),
        })?;
        let mut model = Self::new(Dinov2Config::from_json(&text, &cfg_path.display().to_string())?, device)?;
        weights::load_strict(&mut model.vs, &dir.join("model.safetensors"), &Leniency::default())?;
        Ok(model)
    }

    /// Final hidden states after the last layer norm: [batch, 1 + registers + patches, hidden].
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor, Dinov2Error> {
        let shape = pixels.size();
        let c = &self.config;
        if shape.len() != 4 || shape[1] != c.num_channels || shape[2] < c.patch_size || shape[3] < c.patch_size {
            return Err(Dinov2Error::Input {
                channels: c.num_channels,
                patch: c.patch_size,
                shape,
            });
        }
        let pixels = pixels
            .to_device(self.vs.device())
            .to_kind(self.embeddings.cls_token.kind());
        Ok(tch::no_grad(|| {
            let x = self
                .layers
                .iter()
                .fold(self.embeddings.forward(&pixels), |x, l| l.forward(&x));
            x.apply(&self.layernorm)
        }))
    }

    /// One embedding per image: [batch, hidden] for `Cls`, [batch, 2·hidden] for `ClsMeanPatch`.
    pub fn embed(&self, pixels: &Tensor, recipe: EmbeddingRecipe) -> Result<Tensor, Dinov2Error> {
        if recipe == EmbeddingRecipe::Pooled {
            return Err(Dinov2Error::Recipe(recipe.id()));
        }
        let h = self.forward(pixels)?;
        let cls = h.select(1, 0);
        Ok(match recipe {
            EmbeddingRecipe::Cls => cls,
            EmbeddingRecipe::ClsMeanPatch => {
                let first_patch = 1 + self.config.num_register_tokens;
                let patches = h.narrow(1, first_patch, h.size()[1] - first_patch);
                Tensor::cat(&[cls, patches.mean_dim(1, false, None)], 1)
            }
            EmbeddingRecipe::Pooled => unreachable!("rejected above"),
        })
    }

    /// Output width of [`Self::embed`].
    pub fn embedding_dim(&self, recipe: EmbeddingRecipe) -> i64 {
        match recipe {
            EmbeddingRecipe::Cls | EmbeddingRecipe::Pooled => self.config.hidden_size,
            EmbeddingRecipe::ClsMeanPatch => 2 * self.config.hidden_size,
        }
    }
}
