//! The UNet's stages: down blocks (`DownBlock2D`, `CrossAttnDownBlock2D`) that
//! keep every intermediate map as a skip, the cross-attention mid block, and
//! up blocks that concatenate the skips back in reverse order.

use super::attention::{Transformer2D, Transformer2DSpec};
use super::resnet::{downsample, ResnetBlock2D, Upsample2D};
use tch::{nn, Tensor};

/// What one block needs to know beyond its channel counts.
pub(crate) struct BlockSpec {
    pub layers: i64,
    pub temb: i64,
    pub groups: i64,
    pub eps: f64,
    /// `Some` for the cross-attention variants.
    pub attention: Option<Transformer2DSpec>,
    /// Down: a stride-2 conv at the end; up: a 2x upsample at the end.
    pub resample: bool,
}

#[derive(Debug)]
pub(crate) struct DownBlock {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<Transformer2D>,
    downsampler: Option<nn::Conv2D>,
}

impl DownBlock {
    pub fn new(p: &nn::Path, i: i64, o: i64, s: &BlockSpec) -> Self {
        let resnets = (0..s.layers).map(|j| ResnetBlock2D::new(&(p / "resnets" / j), if j == 0 { i } else { o }, o, Some(s.temb), s.groups, s.eps)).collect();
        let attentions = match &s.attention {
            Some(a) => (0..s.layers).map(|j| Transformer2D::new(&(p / "attentions" / j), &Transformer2DSpec { channels: o, ..*a })).collect(),
            None => Vec::new(),
        };
        Self { resnets, attentions, downsampler: s.resample.then(|| downsample(p, o)) }
    }

    pub fn forward(&self, x: &Tensor, temb: &Tensor, context: &Tensor, skips: &mut Vec<Tensor>) -> Tensor {
        let mut x = x.shallow_clone();
        for (j, r) in self.resnets.iter().enumerate() {
            x = r.forward(&x, Some(temb));
            if let Some(a) = self.attentions.get(j) {
                x = a.forward(&x, context);
            }
            skips.push(x.shallow_clone());
        }
        if let Some(d) = &self.downsampler {
            x = x.apply(d);
            skips.push(x.shallow_clone());
        }
        x
    }
}

/// `UNetMidBlock2DCrossAttn`: resnet, transformer, resnet.
#[derive(Debug)]
pub(crate) struct MidBlock {
    resnet0: ResnetBlock2D,
    attention: Transformer2D,
    resnet1: ResnetBlock2D,
}

impl MidBlock {
    pub fn new(p: &nn::Path, c: i64, temb: i64, groups: i64, eps: f64, attention: &Transformer2DSpec) -> Self {
        Self {
            resnet0: ResnetBlock2D::new(&(p / "resnets" / 0), c, c, Some(temb), groups, eps),
            attention: Transformer2D::new(&(p / "attentions" / 0), attention),
            resnet1: ResnetBlock2D::new(&(p / "resnets" / 1), c, c, Some(temb), groups, eps),
        }
    }

    pub fn forward(&self, x: &Tensor, temb: &Tensor, context: &Tensor) -> Tensor {
        let x = self.resnet0.forward(x, Some(temb));
        let x = self.attention.forward(&x, context);
        self.resnet1.forward(&x, Some(temb))
    }
}

#[derive(Debug)]
pub(crate) struct UpBlock {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<Transformer2D>,
    upsampler: Option<Upsample2D>,
}

impl UpBlock {
    /// `prev`: channels coming from below; `skip_in`: channels of the last skip
    /// this block takes (the input width of the matching down block).
    pub fn new(p: &nn::Path, prev: i64, o: i64, skip_in: i64, s: &BlockSpec) -> Self {
        let resnets = (0..s.layers)
            .map(|j| {
                let skip = if j == s.layers - 1 { skip_in } else { o };
                let from = if j == 0 { prev } else { o };
                ResnetBlock2D::new(&(p / "resnets" / j), from + skip, o, Some(s.temb), s.groups, s.eps)
            })
            .collect();
        let attentions = match &s.attention {
            Some(a) => (0..s.layers).map(|j| Transformer2D::new(&(p / "attentions" / j), &Transformer2DSpec { channels: o, ..*a })).collect(),
            None => Vec::new(),
        };
        Self { resnets, attentions, upsampler: s.resample.then(|| Upsample2D::new(p, o)) }
    }

    pub fn forward(&self, x: &Tensor, temb: &Tensor, context: &Tensor, skips: &mut Vec<Tensor>) -> Tensor {
        let mut x = x.shallow_clone();
        for (j, r) in self.resnets.iter().enumerate() {
            if let Some(skip) = skips.pop() {
                x = Tensor::cat(&[x, skip], 1);
            }
            x = r.forward(&x, Some(temb));
            if let Some(a) = self.attentions.get(j) {
                x = a.forward(&x, context);
            }
        }
        match &self.upsampler {
            Some(u) => u.forward(&x),
            None => x,
        }
    }
}
