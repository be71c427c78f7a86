//! diffusers' `Transformer2DModel` as Stable Diffusion uses it: GroupNorm,
//! `proj_in` (1x1 conv in SD 1.x, Linear in SD 2.x/SDXL), `BasicTransformerBlock`s
//! (self-attention, cross-attention to the text, GEGLU feed-forward; pre-LayerNorm),
//! `proj_out`, residual.

use super::resnet::group_norm;
use tch::{nn, Tensor};

/// `Attention` with q/k/v without bias and `to_out.0` with; `context` width may differ.
#[derive(Debug)]
pub(crate) struct Attention {
    to_q: nn::Linear,
    to_k: nn::Linear,
    to_v: nn::Linear,
    to_out: nn::Linear,
    heads: i64,
}

impl Attention {
    pub fn new(p: &nn::Path, dim: i64, context: i64, heads: i64, head_dim: i64) -> Self {
        let inner = heads * head_dim;
        let nb = nn::LinearConfig { bias: false, ..Default::default() };
        Self {
            to_q: nn::linear(p / "to_q", dim, inner, nb),
            to_k: nn::linear(p / "to_k", context, inner, nb),
            to_v: nn::linear(p / "to_v", context, inner, nb),
            to_out: nn::linear(p / "to_out" / 0, inner, dim, Default::default()),
            heads,
        }
    }

    pub fn forward(&self, x: &Tensor, context: Option<&Tensor>) -> Tensor {
        let ctx = context.unwrap_or(x);
        let split = |t: Tensor| {
            let (b, n, d) = t.size3().unwrap_or((1, 0, 0));
            t.view([b, n, self.heads, d / self.heads]).transpose(1, 2)
        };
        let (q, k, v) = (split(x.apply(&self.to_q)), split(ctx.apply(&self.to_k)), split(ctx.apply(&self.to_v)));
        let a = Tensor::scaled_dot_product_attention(&q, &k, &v, None::<Tensor>, 0.0, false, None, false);
        let (b, h, n, d) = a.size4().unwrap_or((1, 0, 0, 0));
        a.transpose(1, 2).reshape([b, n, h * d]).apply(&self.to_out)
    }
}

#[derive(Debug)]
struct TransformerBlock {
    norm1: nn::LayerNorm,
    attn1: Attention,
    norm2: nn::LayerNorm,
    attn2: Attention,
    norm3: nn::LayerNorm,
    ff_in: nn::Linear,
    ff_out: nn::Linear,
}

impl TransformerBlock {
    fn new(p: &nn::Path, dim: i64, context: i64, heads: i64, head_dim: i64) -> Self {
        let ln = |n: &str| nn::layer_norm(p / n, vec![dim], Default::default());
        let ff = p / "ff" / "net";
        Self {
            norm1: ln("norm1"),
            attn1: Attention::new(&(p / "attn1"), dim, dim, heads, head_dim),
            norm2: ln("norm2"),
            attn2: Attention::new(&(p / "attn2"), dim, context, heads, head_dim),
            norm3: ln("norm3"),
            // GEGLU: one projection to value and gate, 4x width
            ff_in: nn::linear(&ff / 0 / "proj", dim, dim * 8, Default::default()),
            ff_out: nn::linear(&ff / 2, dim * 4, dim, Default::default()),
        }
    }

    fn forward(&self, x: &Tensor, context: &Tensor) -> Tensor {
        let x = self.attn1.forward(&x.apply(&self.norm1), None) + x;
        let x = self.attn2.forward(&x.apply(&self.norm2), Some(context)) + x;
        let hg = x.apply(&self.norm3).apply(&self.ff_in).chunk(2, -1);
        (&hg[0] * hg[1].gelu("none")).apply(&self.ff_out) + x
    }
}

#[derive(Debug)]
enum Proj {
    Conv(nn::Conv2D),
    Linear(nn::Linear),
}

#[derive(Debug)]
pub(crate) struct Transformer2D {
    norm: nn::GroupNorm,
    proj_in: Proj,
    blocks: Vec<TransformerBlock>,
    proj_out: Proj,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Transformer2DSpec {
    pub channels: i64,
    pub heads: i64,
    pub layers: i64,
    pub context: i64,
    pub groups: i64,
    pub linear_projection: bool,
}

impl Transformer2D {
    pub fn new(p: &nn::Path, s: &Transformer2DSpec) -> Self {
        let c = s.channels;
        let proj = |n: &str| {
            if s.linear_projection {
                Proj::Linear(nn::linear(p / n, c, c, Default::default()))
            } else {
                Proj::Conv(nn::conv2d(p / n, c, c, 1, Default::default()))
            }
        };
        Self {
            norm: group_norm(p / "norm", s.groups, c, 1e-6),
            proj_in: proj("proj_in"),
            blocks: (0..s.layers).map(|i| TransformerBlock::new(&(p / "transformer_blocks" / i), c, s.context, s.heads, c / s.heads)).collect(),
            proj_out: proj("proj_out"),
        }
    }

    pub fn forward(&self, x: &Tensor, context: &Tensor) -> Tensor {
        let (b, c, h, w) = x.size4().unwrap_or((1, 0, 0, 0));
        let to_tokens = |t: Tensor| t.permute([0, 2, 3, 1]).reshape([b, h * w, c]);
        let to_map = |t: Tensor| t.reshape([b, h, w, c]).permute([0, 3, 1, 2]);
        let n = x.apply(&self.norm);
        let mut t = match &self.proj_in {
            Proj::Conv(conv) => to_tokens(n.apply(conv)),
            Proj::Linear(l) => to_tokens(n).apply(l),
        };
        for block in &self.blocks {
            t = block.forward(&t, context);
        }
        let out = match &self.proj_out {
            Proj::Conv(conv) => to_map(t).apply(conv),
            Proj::Linear(l) => to_map(t.apply(l)),
        };
        out + x
    }
}
