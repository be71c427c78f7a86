//! The upsampling neck of OpenPCDet's `BaseBEVBackbone` (`deblocks`): each
//! backbone block's output goes through a transposed conv (kernel = stride =
//! the block's upsample factor) + BN + ReLU to the first block's resolution,
//! and the results are concatenated along channels.

use tch::nn::{self, ModuleT};
use tch::Tensor;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NeckConfig {
    /// Channels of each backbone block output.
    pub in_channels: Vec<i64>,
    /// Upsample factor per block (KITTI PointPillars: [1, 2, 4]).
    pub upsample_strides: Vec<i64>,
    /// Output channels per block (KITTI PointPillars: [128, 128, 128]).
    pub upsample_filters: Vec<i64>,
}

impl NeckConfig {
    pub fn out_channels(&self) -> i64 {
        self.upsample_filters.iter().sum()
    }
}

#[derive(Debug)]
pub struct Neck {
    deblocks: Vec<(nn::ConvTranspose2D, nn::BatchNorm)>,
    strides: Vec<i64>,
}

impl Neck {
    /// `p` is the model root; variables live under `backbone_2d.deblocks.I.{0,1}`.
    pub fn new(p: &nn::Path, cfg: &NeckConfig) -> Self {
        let root = p / "backbone_2d" / "deblocks";
        let deblocks = (0..cfg.in_channels.len())
            .map(|i| {
                let s = cfg.upsample_strides[i];
                let conv = nn::ConvTransposeConfig { stride: s, bias: false, ..Default::default() };
                let bn = nn::BatchNormConfig { eps: super::folded::BN_EPS, momentum: 0.01, ..Default::default() };
                (
                    nn::conv_transpose2d(&root / i / 0, cfg.in_channels[i], cfg.upsample_filters[i], s, conv),
                    nn::batch_norm2d(&root / i / 1, cfg.upsample_filters[i], bn),
                )
            })
            .collect();
        Self { deblocks, strides: cfg.upsample_strides.clone() }
    }

    /// Each deblock with its batch-norm folded in (the inference graph).
    pub fn folded(&self) -> Vec<super::folded::FoldedConv> {
        self.deblocks.iter().zip(&self.strides).map(|((conv, bn), &s)| super::folded::FoldedConv::deconv_bn(conv, bn, s)).collect()
    }

    pub fn forward(&self, blocks: &[Tensor], train: bool) -> Tensor {
        let ups: Vec<Tensor> =
            blocks.iter().zip(&self.deblocks).map(|(x, (conv, bn))| bn.forward_t(&x.apply(conv), train).relu()).collect();
        Tensor::cat(&ups, 1)
    }
}
