//! Pillar feature net (PointPillars' simplified PointNet): a shared
//! Linear (no bias) + BatchNorm + ReLU over each point's 10 features, max over
//! the pillar's points, then the pillar vectors scattered onto the BEV grid.
//! Padded point slots are zeroed before the linear layer, as OpenPCDet does.

use crate::detect::pillars::{Pillars, POINT_FEATURES};
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

#[derive(Debug)]
pub struct PillarEncoder {
    linear: nn::Linear,
    norm: nn::BatchNorm,
    channels: i64,
}

impl PillarEncoder {
    /// `p` is the model root; variables live under `vfe.pfn_layers.0`.
    pub fn new(p: &nn::Path, channels: i64) -> Self {
        let layer = p / "vfe" / "pfn_layers" / 0;
        let linear = nn::linear(&layer / "linear", POINT_FEATURES as i64, channels, nn::LinearConfig { bias: false, ..Default::default() });
        let norm = nn::batch_norm1d(&layer / "norm", channels, nn::BatchNormConfig { eps: 1e-3, momentum: 0.01, ..Default::default() });
        Self { linear, norm, channels }
    }

    pub fn channels(&self) -> i64 {
        self.channels
    }

    /// [pillars, channels] pillar features.
    pub fn encode(&self, pillars: &Pillars, device: Device, train: bool) -> Tensor {
        let (p, m) = (pillars.len() as i64, pillars.max_points_per_pillar as i64);
        if p == 0 {
            return Tensor::zeros([0, self.channels], (Kind::Float, device));
        }
        let x = Tensor::from_slice(&pillars.features).view([p, m, POINT_FEATURES as i64]).to_device(device);
        let counts: Vec<i64> = pillars.num_points.iter().map(|&n| n as i64).collect();
        let counts = Tensor::from_slice(&counts).to_device(device).unsqueeze(1);
        let mask = Tensor::arange(m, (Kind::Int64, device)).unsqueeze(0).lt_tensor(&counts).unsqueeze(2).to_kind(Kind::Float);
        let x = (x * mask).apply(&self.linear); // [P, M, C]
        let x = self.norm.forward_t(&x.permute([0, 2, 1]), train).relu(); // [P, C, M]
        x.amax([2i64].as_slice(), false)
    }

    /// Scatters [pillars, C] features to a [1, C, height, width] BEV map.
    pub fn scatter(&self, features: &Tensor, pillars: &Pillars) -> Tensor {
        let (w, h) = (pillars.grid.0 as i64, pillars.grid.1 as i64);
        let device = features.device();
        let mut canvas = Tensor::zeros([self.channels, h * w], (features.kind(), device));
        if !pillars.is_empty() {
            let idx: Vec<i64> = pillars.coords.iter().map(|&(y, x)| y as i64 * w + x as i64).collect();
            let idx = Tensor::from_slice(&idx).to_device(device);
            canvas = canvas.index_put(&[None, Some(idx)], &features.transpose(0, 1), false);
        }
        canvas.view([1, self.channels, h, w])
    }
}
