//! CLIP text encoders (Radford et al. 2021) as Hugging Face `CLIPTextModel`
//! and `CLIPTextModelWithProjection`: OpenAI CLIP-L (SD 1.x, SDXL's first
//! encoder, quick-GELU) and OpenCLIP ViT-H/bigG (SD 2.x, SDXL's second
//! encoder, GELU), pre-norm transformer with a causal mask.
//!
//! Returns what the pipelines read: the final-norm hidden states (SD),
//! the penultimate layer's hidden states before any norm (SDXL), the pooled
//! state at the first end-of-text token and its projection (SDXL's pooled
//! conditioning). Checkpoint keys are accepted with and without the
//! `text_model.` prefix (transformers 5 saves `CLIPTextModel` without it,
//! real checkpoints have it). Parity: tests/generator_parity.rs.

use super::{read_config, GeneratorError};
use crate::weights::{self, Leniency};
use serde::Deserialize;
use std::path::Path;
use tch::{nn, Device, Kind, Tensor};

/// The fields of a transformers `CLIPTextConfig` that shape the model.
#[derive(Debug, Clone, Deserialize)]
pub struct ClipTextConfig {
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub intermediate_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    pub max_position_embeddings: i64,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_eos")]
    pub eos_token_id: i64,
    #[serde(default)]
    pub projection_dim: Option<i64>,
}

fn default_act() -> String {
    "quick_gelu".into()
}
fn default_eps() -> f64 {
    1e-5
}
fn default_eos() -> i64 {
    2
}

impl ClipTextConfig {
    fn validate(&self) -> Result<(), String> {
        let sizes = [self.vocab_size, self.hidden_size, self.intermediate_size, self.num_hidden_layers, self.num_attention_heads, self.max_position_embeddings];
        if sizes.iter().any(|&s| s <= 0) {
            return Err("sizes must be positive".into());
        }
        if self.hidden_size % self.num_attention_heads != 0 {
            return Err(format!("hidden_size {} not divisible by {} heads", self.hidden_size, self.num_attention_heads));
        }
        if !["quick_gelu", "gelu"].contains(&self.hidden_act.as_str()) {
            return Err(format!("hidden_act {:?} unsupported (quick_gelu, gelu)", self.hidden_act));
        }
        Ok(())
    }
}

/// Outputs for a batch of token ids [batch, len].
#[derive(Debug)]
pub struct ClipTextOutput {
    /// After the final layer norm: [batch, len, hidden] (SD 1.x/2.x conditioning).
    pub last: Tensor,
    /// Output of the second-to-last layer, no norm: [batch, len, hidden] (SDXL conditioning).
    pub penultimate: Tensor,
    /// `last` at the end-of-text token: [batch, hidden].
    pub pooled: Tensor,
    /// `pooled` through `text_projection` (WithProjection models only): [batch, projection_dim].
    pub text_embeds: Option<Tensor>,
}

#[derive(Debug)]
struct Layer {
    layer_norm1: nn::LayerNorm,
    q: nn::Linear,
    k: nn::Linear,
    v: nn::Linear,
    out: nn::Linear,
    layer_norm2: nn::LayerNorm,
    fc1: nn::Linear,
    fc2: nn::Linear,
    heads: i64,
    quick_gelu: bool,
}

impl Layer {
    fn new(p: &nn::Path, c: &ClipTextConfig) -> Self {
        let (d, ln) = (c.hidden_size, nn::LayerNormConfig { eps: c.layer_norm_eps, ..Default::default() });
        let a = p / "self_attn";
        Self {
            layer_norm1: nn::layer_norm(p / "layer_norm1", vec![d], ln),
            q: nn::linear(&a / "q_proj", d, d, Default::default()),
            k: nn::linear(&a / "k_proj", d, d, Default::default()),
            v: nn::linear(&a / "v_proj", d, d, Default::default()),
            out: nn::linear(&a / "out_proj", d, d, Default::default()),
            layer_norm2: nn::layer_norm(p / "layer_norm2", vec![d], ln),
            fc1: nn::linear(p / "mlp" / "fc1", d, c.intermediate_size, Default::default()),
            fc2: nn::linear(p / "mlp" / "fc2", c.intermediate_size, d, Default::default()),
            heads: c.num_attention_heads,
            quick_gelu: c.hidden_act == "quick_gelu",
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let (b, n, d) = x.size3().unwrap_or((1, 0, 0));
        let h = x.apply(&self.layer_norm1);
        let split = |t: Tensor| t.view([b, n, self.heads, d / self.heads]).transpose(1, 2);
        let (q, k, v) = (split(h.apply(&self.q)), split(h.apply(&self.k)), split(h.apply(&self.v)));
        // causal: a token sees only itself and earlier tokens
        let a = Tensor::scaled_dot_product_attention(&q, &k, &v, None::<Tensor>, 0.0, true, None, false);
        let x = x + a.transpose(1, 2).reshape([b, n, d]).apply(&self.out);
        let h = x.apply(&self.layer_norm2).apply(&self.fc1);
        let h = if self.quick_gelu { &h * (&h * 1.702).sigmoid() } else { h.gelu("none") };
        x + h.apply(&self.fc2)
    }
}

#[derive(Debug)]
pub struct ClipTextModel {
    pub config: ClipTextConfig,
    pub vs: nn::VarStore,
    token_embedding: Tensor,
    position_embedding: Tensor,
    layers: Vec<Layer>,
    final_layer_norm: nn::LayerNorm,
    text_projection: Option<nn::Linear>,
}

impl ClipTextModel {
    /// Untrained model; `projection` adds `text_projection` (WithProjection).
    pub fn new(config: ClipTextConfig, projection: bool, device: Device) -> Result<Self, GeneratorError> {
        config.validate().map_err(|reason| GeneratorError::Config { path: "<clip text config>".into(), reason })?;
        let proj_dim = match (projection, config.projection_dim) {
            (false, _) => None,
            (true, Some(p)) if p > 0 => Some(p),
            (true, _) => return Err(GeneratorError::Config { path: "<clip text config>".into(), reason: "projection needs projection_dim > 0".into() }),
        };
        let vs = nn::VarStore::new(device);
        let p = vs.root();
        let d = config.hidden_size;
        let e = &p / "embeddings";
        let token_embedding = (&e / "token_embedding").zeros("weight", &[config.vocab_size, d]);
        let position_embedding = (&e / "position_embedding").zeros("weight", &[config.max_position_embeddings, d]);
        let layers = (0..config.num_hidden_layers).map(|i| Layer::new(&(&p / "encoder" / "layers" / i), &config)).collect();
        let ln = nn::LayerNormConfig { eps: config.layer_norm_eps, ..Default::default() };
        let final_layer_norm = nn::layer_norm(&p / "final_layer_norm", vec![d], ln);
        let text_projection = proj_dim.map(|pd| nn::linear(&p / "text_projection", d, pd, nn::LinearConfig { bias: false, ..Default::default() }));
        Ok(Self { config, vs, token_embedding, position_embedding, layers, final_layer_norm, text_projection })
    }

    /// Loads a transformers folder (`config.json` + `model[.fp16].safetensors`).
    /// The projection is built when the checkpoint has `text_projection.weight`.
    pub fn load(dir: &Path, device: Device, kind: Kind) -> Result<Self, GeneratorError> {
        let (config, cfg_path): (ClipTextConfig, _) = read_config(&dir.join("config.json"))?;
        let file = super::weights_file(dir, "model", device)?;
        let source = file.display().to_string();
        let tensors = Tensor::read_safetensors(&file).map_err(|e| GeneratorError::Weights(weights::WeightsError::Unreadable { path: source.clone(), reason: e.to_string() }))?;
        let tensors: Vec<(String, Tensor)> =
            tensors.into_iter().map(|(k, t)| (k.strip_prefix("text_model.").map(str::to_owned).unwrap_or(k), t)).collect();
        let projection = tensors.iter().any(|(k, _)| k == "text_projection.weight");
        let mut model = Self::new(config, projection, device).map_err(|e| match e {
            GeneratorError::Config { reason, .. } => GeneratorError::Config { path: cfg_path.clone(), reason },
            e => e,
        })?;
        model.vs.set_kind(kind);
        // older checkpoints carry the position-id buffer; it is just arange(max_len)
        weights::load_tensors(&mut model.vs, &source, tensors, &Leniency { ignore_unused: &["embeddings.position_ids"] })?;
        Ok(model)
    }

    /// Encodes token ids [batch, len] (len ≤ max_position_embeddings).
    pub fn forward(&self, ids: &Tensor) -> Result<ClipTextOutput, GeneratorError> {
        let (b, n) = ids.size2().map_err(|_| GeneratorError::Input(format!("token ids must be [batch, len], got {:?}", ids.size())))?;
        if n < 1 || n > self.config.max_position_embeddings {
            return Err(GeneratorError::Input(format!("{n} tokens, the model has {} positions", self.config.max_position_embeddings)));
        }
        let ids = ids.to_device(self.vs.device()).to_kind(Kind::Int64);
        let (lo, hi) = (ids.min().int64_value(&[]), ids.max().int64_value(&[]));
        if lo < 0 || hi >= self.config.vocab_size {
            return Err(GeneratorError::Input(format!("token ids {lo}..={hi} outside the vocabulary of {}", self.config.vocab_size)));
        }
        Ok(tch::no_grad(|| {
            let mut x = self.token_embedding.index_select(0, &ids.flatten(0, 1)).view([b, n, -1]) + self.position_embedding.narrow(0, 0, n);
            let mut penultimate = x.shallow_clone();
            for layer in &self.layers {
                penultimate = x;
                x = layer.forward(&penultimate);
            }
            let last = x.apply(&self.final_layer_norm);
            // transformers: legacy configs (eos id 2) pool at the highest id, others at the first eos
            let eos = if self.config.eos_token_id == 2 { ids.argmax(-1, false) } else { ids.eq(self.config.eos_token_id).to_kind(Kind::Int).argmax(-1, false) };
            let rows = Tensor::arange(b, (Kind::Int64, ids.device()));
            let pooled = last.index(&[Some(rows), Some(eos)]);
            let text_embeds = self.text_projection.as_ref().map(|p| pooled.apply(p));
            ClipTextOutput { last, penultimate, pooled, text_embeds }
        }))
    }
}
