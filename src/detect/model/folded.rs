//! The inference graph: the network with every batch-norm folded into the
//! layer before it, built from a loaded model's weights.
//!
//! In eval mode a batch-norm is an affine map per channel,
//! `y = x·s + t` with `s = γ / √(σ² + ε)` and `t = β − μ·s`, so it folds
//! into the preceding linear map: the pillar net's Linear (`W·s`, bias `t`),
//! each backbone Conv2d (output channel `o` of the weight scaled by `s[o]`)
//! and each neck ConvTranspose2d (its weight is `[in, out, k, k]`: dim 1 is
//! scaled). Scale and shift are computed in f64 and rounded once to f32.
//! The forward pass is then conv (+ bias) + ReLU per layer, one kernel
//! fewer per layer and no batch-norm reads, and it still returns every
//! Conv-BN-ReLU output the Eloss monitor reads (the same tensors as the
//! unfolded eval-mode network, up to float rounding: see the parity test in
//! `detect::detector`).
//!
//! Training never uses this graph: it keeps the unfolded modules
//! (`Detector::forward_train*`), whose batch-norms learn. A folded graph is a
//! snapshot of the weights it was built from.
//!
//! [`MemoryFormat::ChannelsLast`] keeps activations and weights in NHWC
//! order (the layout oneDNN's convolutions prefer); the BEV map is then
//! scattered straight into NHWC rows. Which format is faster is a measured
//! choice (`eloss bench-detector --memory-format`, docs/benchmarks.md).

use super::backbone::LayerOutputs;
use crate::detect::pillars::Pillars;
use tch::nn;
use tch::{Device, Kind, Tensor};

/// ε of every batch-norm of the detector (OpenPCDet's PointPillars).
pub const BN_EPS: f64 = 1e-3;

/// Activation layout of the folded network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MemoryFormat {
    /// NCHW, as the training graph.
    #[default]
    Contiguous,
    /// NHWC strides (PyTorch's `channels_last`).
    ChannelsLast,
}

impl std::str::FromStr for MemoryFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "contiguous" => Ok(Self::Contiguous),
            "channels-last" => Ok(Self::ChannelsLast),
            _ => Err(format!("memory format {s:?}: expected contiguous or channels-last")),
        }
    }
}

/// Per-channel `(scale, shift)` of an eval-mode batch-norm, in f64.
fn batch_norm_affine(bn: &nn::BatchNorm) -> (Tensor, Tensor) {
    let var = bn.running_var.to_kind(Kind::Double);
    let mean = bn.running_mean.to_kind(Kind::Double);
    let gamma = bn.ws.as_ref().map_or_else(|| var.ones_like(), |w| w.to_kind(Kind::Double));
    let beta = bn.bs.as_ref().map_or_else(|| var.zeros_like(), |b| b.to_kind(Kind::Double));
    let scale = gamma / (var + BN_EPS).sqrt();
    let shift = beta - mean * &scale;
    (scale, shift)
}

/// `[N, C, H, W]` with NHWC strides (same values, same shape).
pub fn to_channels_last(x: &Tensor) -> Tensor {
    x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// A Conv2d or ConvTranspose2d with its batch-norm folded in, then ReLU.
#[derive(Debug)]
pub struct FoldedConv {
    weight: Tensor,
    bias: Tensor,
    stride: i64,
    padding: i64,
    transposed: bool,
}

impl FoldedConv {
    /// Conv2d `[out, in, k, k]` (bias-free or not) followed by `bn`.
    pub fn conv_bn(conv: &nn::Conv2D, bn: &nn::BatchNorm, stride: i64, padding: i64) -> Self {
        let (scale, shift) = batch_norm_affine(bn);
        let weight = conv.ws.to_kind(Kind::Double) * scale.view([-1, 1, 1, 1]);
        let bias = match &conv.bs {
            Some(b) => b.to_kind(Kind::Double) * &scale + shift,
            None => shift,
        };
        Self { weight: weight.to_kind(Kind::Float), bias: bias.to_kind(Kind::Float), stride, padding, transposed: false }
    }

    /// ConvTranspose2d `[in, out, k, k]` followed by `bn`.
    pub fn deconv_bn(conv: &nn::ConvTranspose2D, bn: &nn::BatchNorm, stride: i64) -> Self {
        let (scale, shift) = batch_norm_affine(bn);
        let weight = conv.ws.to_kind(Kind::Double) * scale.view([1, -1, 1, 1]);
        let bias = match &conv.bs {
            Some(b) => b.to_kind(Kind::Double) * &scale + shift,
            None => shift,
        };
        Self { weight: weight.to_kind(Kind::Float), bias: bias.to_kind(Kind::Float), stride, padding: 0, transposed: true }
    }

    fn with_format(mut self, format: MemoryFormat) -> Self {
        if format == MemoryFormat::ChannelsLast {
            self.weight = to_channels_last(&self.weight);
        }
        self
    }

    pub fn forward_relu(&self, x: &Tensor) -> Tensor {
        let (s, p) = ([self.stride, self.stride], [self.padding, self.padding]);
        let mut y = if self.transposed {
            x.conv_transpose2d(&self.weight, Some(&self.bias), s, p, [0, 0], 1, [1, 1])
        } else {
            x.conv2d(&self.weight, Some(&self.bias), s, p, [1, 1], 1)
        };
        y.relu_()
    }
}

/// The pillar net's Linear with its batch-norm folded in, then ReLU and max.
#[derive(Debug)]
pub struct FoldedPillarNet {
    /// `[channels, POINT_FEATURES]`
    weight: Tensor,
    bias: Tensor,
}

impl FoldedPillarNet {
    pub fn linear_bn(linear: &nn::Linear, bn: &nn::BatchNorm) -> Self {
        let (scale, shift) = batch_norm_affine(bn);
        let weight = linear.ws.to_kind(Kind::Double) * scale.view([-1, 1]);
        let bias = match &linear.bs {
            Some(b) => b.to_kind(Kind::Double) * &scale + shift,
            None => shift,
        };
        Self { weight: weight.to_kind(Kind::Float), bias: bias.to_kind(Kind::Float) }
    }

    fn channels(&self) -> i64 {
        self.weight.size()[0]
    }

    /// `[pillars, channels]`: max over each pillar's (masked) points.
    pub fn encode(&self, pillars: &Pillars, device: Device) -> Tensor {
        if pillars.is_empty() {
            return Tensor::zeros([0, self.channels()], (Kind::Float, device));
        }
        let x = super::pillar_encoder::masked_points(&pillars.features, &pillars.num_points, pillars.max_points_per_pillar, device);
        x.linear(&self.weight, Some(&self.bias)).relu_().amax([1i64].as_slice(), false)
    }

    /// `[1, channels, height, width]` BEV map in `format`.
    pub fn scatter(&self, features: &Tensor, pillars: &Pillars, format: MemoryFormat) -> Tensor {
        let (w, h, c) = (pillars.grid.0 as i64, pillars.grid.1 as i64, self.channels());
        let device = features.device();
        let idx: Vec<i64> = pillars.coords.iter().map(|&(y, x)| y as i64 * w + x as i64).collect();
        let idx = Tensor::from_slice(&idx).to_device(device);
        match format {
            MemoryFormat::Contiguous => {
                let mut canvas = Tensor::zeros([c, h * w], (Kind::Float, device));
                if !pillars.is_empty() {
                    canvas = canvas.index_put(&[None, Some(idx)], &features.transpose(0, 1), false);
                }
                canvas.view([1, c, h, w])
            }
            MemoryFormat::ChannelsLast => {
                // one contiguous row of C values per cell: NHWC directly
                let mut canvas = Tensor::zeros([h * w, c], (Kind::Float, device));
                if !pillars.is_empty() {
                    canvas = canvas.index_put(&[Some(idx)], features, false);
                }
                canvas.view([1, h, w, c]).permute([0, 3, 1, 2])
            }
        }
    }
}

/// Backbone + neck with batch-norms folded (the head has none and is shared
/// with the training graph).
#[derive(Debug)]
pub struct FoldedNetwork {
    pub pillar_net: FoldedPillarNet,
    blocks: Vec<Vec<FoldedConv>>,
    deblocks: Vec<FoldedConv>,
    format: MemoryFormat,
}

impl FoldedNetwork {
    pub fn new(pillar_net: FoldedPillarNet, blocks: Vec<Vec<FoldedConv>>, deblocks: Vec<FoldedConv>, format: MemoryFormat) -> Self {
        let blocks = blocks.into_iter().map(|b| b.into_iter().map(|l| l.with_format(format)).collect()).collect();
        let deblocks = deblocks.into_iter().map(|l| l.with_format(format)).collect();
        Self { pillar_net, blocks, deblocks, format }
    }

    pub fn format(&self) -> MemoryFormat {
        self.format
    }

    /// BEV map of one frame's pillars, in this network's format.
    pub fn bev(&self, pillars: &Pillars, device: Device) -> Tensor {
        self.pillar_net.scatter(&self.pillar_net.encode(pillars, device), pillars, self.format)
    }

    /// The backbone's layer outputs and the neck's output (input of the head).
    pub fn forward(&self, bev: &Tensor) -> (LayerOutputs, Tensor) {
        let mut x = bev.shallow_clone();
        let mut layers = Vec::with_capacity(self.blocks.len());
        let mut ups = Vec::with_capacity(self.blocks.len());
        for (block, deblock) in self.blocks.iter().zip(&self.deblocks) {
            let mut outs = Vec::with_capacity(block.len());
            for layer in block {
                x = layer.forward_relu(&x);
                outs.push(x.shallow_clone());
            }
            ups.push(deblock.forward_relu(&x));
            layers.push(outs);
        }
        (LayerOutputs { blocks: layers, input: Some(bev.shallow_clone()) }, Tensor::cat(&ups, 1))
    }

    /// The layers of backbone block `i` alone on its input (benchmarks).
    pub fn block(&self, i: usize, x: &Tensor) -> Tensor {
        self.blocks[i].iter().fold(x.shallow_clone(), |x, l| l.forward_relu(&x))
    }
}
