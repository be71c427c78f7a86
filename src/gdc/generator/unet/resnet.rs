//! The convolutional pieces diffusers' UNet and VAE share: `ResnetBlock2D`
//! (GroupNorm → SiLU → conv, timestep embedding added between the convs),
//! stride-2 `Downsample2D`, nearest-neighbour `Upsample2D`, and the
//! sinusoidal timestep embedding (`get_timestep_embedding`).

use tch::{nn, Kind, Tensor};

fn conv(p: nn::Path, i: i64, o: i64, k: i64, stride: i64) -> nn::Conv2D {
    nn::conv2d(p, i, o, k, nn::ConvConfig { padding: k / 2, stride, ..Default::default() })
}

pub(crate) fn group_norm(p: nn::Path, groups: i64, channels: i64, eps: f64) -> nn::GroupNorm {
    nn::group_norm(p, groups, channels, nn::GroupNormConfig { eps, ..Default::default() })
}

#[derive(Debug)]
pub(crate) struct ResnetBlock2D {
    norm1: nn::GroupNorm,
    conv1: nn::Conv2D,
    time_emb_proj: Option<nn::Linear>,
    norm2: nn::GroupNorm,
    conv2: nn::Conv2D,
    conv_shortcut: Option<nn::Conv2D>,
}

impl ResnetBlock2D {
    /// `temb`: width of the timestep embedding (UNet), `None` in the VAE.
    pub fn new(p: &nn::Path, i: i64, o: i64, temb: Option<i64>, groups: i64, eps: f64) -> Self {
        Self {
            norm1: group_norm(p / "norm1", groups, i, eps),
            conv1: conv(p / "conv1", i, o, 3, 1),
            time_emb_proj: temb.map(|t| nn::linear(p / "time_emb_proj", t, o, Default::default())),
            norm2: group_norm(p / "norm2", groups, o, eps),
            conv2: conv(p / "conv2", o, o, 3, 1),
            conv_shortcut: (i != o).then(|| conv(p / "conv_shortcut", i, o, 1, 1)),
        }
    }

    pub fn forward(&self, x: &Tensor, temb: Option<&Tensor>) -> Tensor {
        let mut h = x.apply(&self.norm1).silu().apply(&self.conv1);
        if let (Some(proj), Some(t)) = (&self.time_emb_proj, temb) {
            h += t.silu().apply(proj).unsqueeze(-1).unsqueeze(-1);
        }
        let h = h.apply(&self.norm2).silu().apply(&self.conv2);
        match &self.conv_shortcut {
            Some(c) => x.apply(c) + h,
            None => x + h,
        }
    }
}

/// `downsamplers.0.conv`: 3x3, stride 2, padding 1.
pub(crate) fn downsample(p: &nn::Path, c: i64) -> nn::Conv2D {
    conv(p / "downsamplers" / 0 / "conv", c, c, 3, 2)
}

/// `upsamplers.0.conv` after a nearest-neighbour 2x resize.
#[derive(Debug)]
pub(crate) struct Upsample2D {
    conv: nn::Conv2D,
}

impl Upsample2D {
    pub fn new(p: &nn::Path, c: i64) -> Self {
        Self { conv: conv(p / "upsamplers" / 0 / "conv", c, c, 3, 1) }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        let (_, _, h, w) = x.size4().unwrap_or((0, 0, 0, 0));
        x.upsample_nearest2d([2 * h, 2 * w], None, None).apply(&self.conv)
    }
}

/// diffusers' `get_timestep_embedding` (float32, as the reference computes
/// it before casting): `t` [n] → [n, dim], sin then cos unless `flip`.
pub(crate) fn timestep_embedding(t: &Tensor, dim: i64, flip_sin_to_cos: bool, freq_shift: f64) -> Tensor {
    let half = dim / 2;
    let exponent = Tensor::arange(half, (Kind::Float, t.device())) * (-(10000f64.ln())) / (half as f64 - freq_shift);
    let args = t.to_kind(Kind::Float).unsqueeze(1) * exponent.exp().unsqueeze(0);
    let (sin, cos) = (args.sin(), args.cos());
    let emb = if flip_sin_to_cos { Tensor::cat(&[cos, sin], -1) } else { Tensor::cat(&[sin, cos], -1) };
    if dim % 2 == 1 {
        emb.constant_pad_nd([0, 1, 0, 0])
    } else {
        emb
    }
}

/// `TimestepEmbedding`: linear_1 → SiLU → linear_2.
#[derive(Debug)]
pub(crate) struct TimestepMlp {
    linear_1: nn::Linear,
    linear_2: nn::Linear,
}

impl TimestepMlp {
    pub fn new(p: &nn::Path, i: i64, o: i64) -> Self {
        Self { linear_1: nn::linear(p / "linear_1", i, o, Default::default()), linear_2: nn::linear(p / "linear_2", o, o, Default::default()) }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.apply(&self.linear_1).silu().apply(&self.linear_2)
    }
}
