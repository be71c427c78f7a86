//! Anchor head (OpenPCDet `AnchorHeadSingle`): three 1x1 convs over the neck
//! output predict, for each of the A anchors at every BEV cell, class logits,
//! the 7 box residuals (see `detect::box_coder`) and direction-bin logits.
//! Outputs are flattened in (y, x, anchor) order, the order of
//! `detect::anchors::AnchorGrid`, so row i belongs to anchor i.

use tch::nn;
use tch::Tensor;

#[derive(Debug)]
pub struct HeadOutput {
    /// [B, H·W·A, num_classes] logits.
    pub cls: Tensor,
    /// [B, H·W·A, 7] box residuals.
    pub boxes: Tensor,
    /// [B, H·W·A, num_dir_bins] logits.
    pub dir: Tensor,
}

#[derive(Debug)]
pub struct AnchorHead {
    conv_cls: nn::Conv2D,
    conv_box: nn::Conv2D,
    conv_dir: nn::Conv2D,
    num_classes: i64,
    num_dir_bins: i64,
}

impl AnchorHead {
    /// `p` is the model root; variables live under `dense_head.conv_{cls,box,dir_cls}`.
    pub fn new(p: &nn::Path, in_channels: i64, anchors_per_location: i64, num_classes: i64, num_dir_bins: i64) -> Self {
        let h = p / "dense_head";
        let a = anchors_per_location;
        // class bias starts at the logit of a 1% prior (focal-loss practice, as OpenPCDet):
        // otherwise the ~10^5 background anchors swamp the first steps
        let prior = 0.01f64;
        let cls_cfg = nn::ConvConfig { bs_init: nn::Init::Const(-((1.0 - prior) / prior).ln()), ..Default::default() };
        Self {
            conv_cls: nn::conv2d(&h / "conv_cls", in_channels, a * num_classes, 1, cls_cfg),
            conv_box: nn::conv2d(&h / "conv_box", in_channels, a * 7, 1, Default::default()),
            conv_dir: nn::conv2d(&h / "conv_dir_cls", in_channels, a * num_dir_bins, 1, Default::default()),
            num_classes,
            num_dir_bins,
        }
    }

    pub fn forward(&self, features: &Tensor) -> HeadOutput {
        let b = features.size()[0];
        // [B, A·C, H, W] → [B, H, W, A·C] → [B, H·W·A, C]
        let flat = |x: Tensor, c: i64| x.permute([0, 2, 3, 1]).contiguous().view([b, -1, c]);
        HeadOutput {
            cls: flat(features.apply(&self.conv_cls), self.num_classes),
            boxes: flat(features.apply(&self.conv_box), 7),
            dir: flat(features.apply(&self.conv_dir), self.num_dir_bins),
        }
    }
}

#[cfg(test)]
impl AnchorHead {
    pub(crate) fn conv_box_for_test(&self) -> &nn::Conv2D {
        &self.conv_box
    }
}
