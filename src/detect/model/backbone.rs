//! The SECOND-style 2D backbone over the BEV pseudo-image — the
//! "feature-compression network" whose layer-by-layer entropy the Entropy
//! Loss regularises and the Eloss monitor watches. Each block is a strided
//! 3x3 Conv-BN-ReLU followed by `layer_nums[i]` stride-1 Conv-BN-ReLU layers;
//! the forward pass returns every layer's output, grouped by block, next to
//! the block outputs the neck consumes.
//!
//! Paths follow OpenPCDet's `BaseBEVBackbone` (`blocks.I.K` in an
//! nn.Sequential of ZeroPad2d, Conv, BN, ReLU, Conv, BN, ReLU, ...): the k-th
//! Conv-BN pair of a block sits at indices 3k+1 and 3k+2.

use tch::nn::{self, ModuleT};
use tch::Tensor;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BackboneConfig {
    pub in_channels: i64,
    /// Extra stride-1 layers after each block's strided layer (OpenPCDet KITTI PointPillars: [3, 5, 5]).
    pub layer_nums: Vec<usize>,
    pub layer_strides: Vec<i64>,
    pub num_filters: Vec<i64>,
}

impl BackboneConfig {
    /// OpenPCDet's KITTI PointPillars backbone.
    pub fn pointpillars() -> Self {
        Self { in_channels: 64, layer_nums: vec![3, 5, 5], layer_strides: vec![2, 2, 2], num_filters: vec![64, 128, 256] }
    }
}

/// Every Conv-BN-ReLU output of the forward pass, in order, grouped by block.
#[derive(Debug)]
pub struct LayerOutputs {
    pub blocks: Vec<Vec<Tensor>>,
    /// The backbone's input (the BEV pseudo-image, [B, C, H, W]; zero where
    /// no pillar is): the Eloss monitor's occupied-cell masks start from it
    /// (`eloss::cells`). A view, no copy.
    pub input: Option<Tensor>,
}

impl LayerOutputs {
    pub fn num_layers(&self) -> usize {
        self.blocks.iter().map(Vec::len).sum()
    }
}

#[derive(Debug)]
struct ConvBnRelu {
    conv: nn::Conv2D,
    bn: nn::BatchNorm,
    stride: i64,
}

#[derive(Debug)]
pub struct Backbone {
    blocks: Vec<Vec<ConvBnRelu>>,
}

impl Backbone {
    /// `p` is the model root; variables live under `backbone_2d.blocks`.
    pub fn new(p: &nn::Path, cfg: &BackboneConfig) -> Self {
        let root = p / "backbone_2d" / "blocks";
        let mut c_in = cfg.in_channels;
        let blocks = cfg
            .num_filters
            .iter()
            .zip(&cfg.layer_strides)
            .zip(&cfg.layer_nums)
            .enumerate()
            .map(|(i, ((&c, &stride), &n))| {
                let block = &root / i;
                let layers = (0..=n)
                    .map(|k| {
                        let layer_stride = if k == 0 { stride } else { 1 };
                        let conv_cfg = nn::ConvConfig { stride: layer_stride, padding: 1, bias: false, ..Default::default() };
                        let bn_cfg = nn::BatchNormConfig { eps: super::folded::BN_EPS, momentum: 0.01, ..Default::default() };
                        let input = if k == 0 { c_in } else { c };
                        ConvBnRelu {
                            conv: nn::conv2d(&block / (3 * k + 1), input, c, 3, conv_cfg),
                            bn: nn::batch_norm2d(&block / (3 * k + 2), c, bn_cfg),
                            stride: layer_stride,
                        }
                    })
                    .collect();
                c_in = c;
                layers
            })
            .collect();
        Self { blocks }
    }

    /// Every layer with its batch-norm folded in, grouped by block (the inference graph).
    pub fn folded(&self) -> Vec<Vec<super::folded::FoldedConv>> {
        self.blocks.iter().map(|b| b.iter().map(|l| super::folded::FoldedConv::conv_bn(&l.conv, &l.bn, l.stride, 1)).collect()).collect()
    }

    /// Block outputs (for the neck) and every layer's output (for the entropy terms).
    pub fn forward(&self, bev: &Tensor, train: bool) -> (Vec<Tensor>, LayerOutputs) {
        let mut x = bev.shallow_clone();
        let mut block_outputs = Vec::with_capacity(self.blocks.len());
        let mut layers = Vec::with_capacity(self.blocks.len());
        for block in &self.blocks {
            let mut outs = Vec::with_capacity(block.len());
            for l in block {
                x = l.bn.forward_t(&x.apply(&l.conv), train).relu();
                outs.push(x.shallow_clone());
            }
            block_outputs.push(x.shallow_clone());
            layers.push(outs);
        }
        (block_outputs, LayerOutputs { blocks: layers, input: Some(bev.shallow_clone()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::anchors::{AnchorClass, AnchorConfig, AnchorGrid};
    use crate::detect::model::head::AnchorHead;
    use crate::detect::model::neck::{Neck, NeckConfig};
    use crate::detect::model::pillar_encoder::PillarEncoder;
    use crate::detect::pillars::{pillarize, PillarConfig};
    use tch::{Device, Kind};

    #[test]
    fn pillars_through_encoder_backbone_neck_and_head() {
        let vs = nn::VarStore::new(Device::Cpu);
        let enc = PillarEncoder::new(&vs.root(), 16);
        let cfg = BackboneConfig { in_channels: 16, layer_nums: vec![1, 2], layer_strides: vec![2, 2], num_filters: vec![16, 32] };
        let backbone = Backbone::new(&vs.root(), &cfg);
        let mut points = crate::cloud::Points::default();
        for (x, y) in [(0.5f32, -3.5f32), (5.5, 2.5), (5.6, 2.6)] {
            points.x.push(x);
            points.y.push(y);
            points.z.push(-1.0);
            points.intensity.push(0.5);
        }
        let pc = PillarConfig { range: [0.0, -4.0, -3.0, 8.0, 4.0, 1.0], pillar_size: [0.5, 0.5], max_points_per_pillar: 4, max_pillars: 100 };
        let pillars = pillarize(&points, &pc).unwrap();
        let feats = enc.encode(&pillars, Device::Cpu, false);
        assert_eq!(feats.size(), [2, 16]);
        let bev = enc.scatter(&feats, &pillars);
        assert_eq!(bev.size(), [1, 16, 16, 16]);
        // each pillar's vector sits at its (row, col); every other cell is zero
        for (p, &(row, col)) in pillars.coords.iter().enumerate() {
            assert!(bev.get(0).select(1, row as i64).select(1, col as i64).equal(&feats.get(p as i64)));
        }
        let mask_sum = bev.abs().sum(Kind::Float).double_value(&[]);
        let feat_sum = feats.abs().sum(Kind::Float).double_value(&[]);
        assert!((mask_sum - feat_sum).abs() < 1e-4 * feat_sum.max(1.0), "nothing else is written");
        let (blocks, layers) = backbone.forward(&bev, false);
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].size(), [1, 16, 8, 8]);
        assert_eq!(blocks[1].size(), [1, 32, 4, 4]);
        assert_eq!(layers.num_layers(), 2 + 3);
        assert_eq!(layers.blocks[1][2].size(), [1, 32, 4, 4]);
        // neck + head on top: every anchor of the grid gets one row of predictions
        let neck_cfg = NeckConfig { in_channels: vec![16, 32], upsample_strides: vec![1, 2], upsample_filters: vec![8, 8] };
        let neck = Neck::new(&vs.root(), &neck_cfg);
        let fused = neck.forward(&blocks, false);
        assert_eq!(fused.size(), [1, 16, 8, 8]);
        let head = AnchorHead::new(&vs.root(), neck_cfg.out_channels(), 6, 3, 2);
        let out = head.forward(&fused);
        let grid = AnchorGrid::new(&AnchorConfig::new([0.0, -4.0, -3.0, 8.0, 4.0, 1.0], (8, 8), AnchorClass::kitti())).unwrap();
        assert_eq!(out.cls.size(), [1, grid.len() as i64, 3]);
        assert_eq!(out.boxes.size(), [1, grid.len() as i64, 7]);
        assert_eq!(out.dir.size(), [1, grid.len() as i64, 2]);
        // row order is (y, x, anchor): the first 6 rows are the cell (0, 0) predictions
        let direct = fused.apply(head.conv_box_for_test()).get(0).select(1, 0).select(1, 0).view([6, 7]);
        assert!(out.boxes.get(0).narrow(0, 0, 6).allclose(&direct, 1e-6, 1e-6, false));
        // the names load OpenPCDet checkpoints: spot-check the key layout
        let names: std::collections::BTreeSet<String> = vs.variables().into_keys().collect();
        for k in [
            "vfe.pfn_layers.0.linear.weight",
            "vfe.pfn_layers.0.norm.running_var",
            "backbone_2d.blocks.0.1.weight",
            "backbone_2d.blocks.1.8.running_mean",
            "backbone_2d.deblocks.1.0.weight",
            "dense_head.conv_dir_cls.bias",
        ] {
            assert!(names.contains(k), "{k} missing from {names:?}");
        }
    }
}
