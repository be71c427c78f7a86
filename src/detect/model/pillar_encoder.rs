//! Pillar feature net (PointPillars' simplified PointNet): a shared
//! Linear (no bias) + BatchNorm + ReLU over each point's 10 features, max over
//! the pillar's points, then the pillar vectors scattered onto the BEV grid.
//! Padded point slots are zeroed before the linear layer, as OpenPCDet does.

use crate::detect::pillars::{PillarBatch, Pillars, POINT_FEATURES};
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
        let norm = nn::batch_norm1d(&layer / "norm", channels, nn::BatchNormConfig { eps: super::folded::BN_EPS, momentum: 0.01, ..Default::default() });
        Self { linear, norm, channels }
    }

    pub fn channels(&self) -> i64 {
        self.channels
    }

    /// [pillars, channels] pillar features.
    pub fn encode(&self, pillars: &Pillars, device: Device, train: bool) -> Tensor {
        self.encode_points(&pillars.features, &pillars.num_points, pillars.max_points_per_pillar, device, train)
    }

    /// [pillars, channels] features of every frame's pillars in one pass
    /// (batch-norm statistics over the whole batch, as OpenPCDet's `PillarVFE`).
    pub fn encode_batch(&self, batch: &PillarBatch, device: Device, train: bool) -> Tensor {
        self.encode_points(&batch.features, &batch.num_points, batch.max_points_per_pillar, device, train)
    }

    /// `features` [P, m, POINT_FEATURES] row-major, `num_points` [P].
    fn encode_points(&self, features: &[f32], num_points: &[u32], m: usize, device: Device, train: bool) -> Tensor {
        if num_points.is_empty() {
            return Tensor::zeros([0, self.channels], (Kind::Float, device));
        }
        let x = masked_points(features, num_points, m, device).apply(&self.linear); // [P, M, C]
        let x = self.norm.forward_t(&x.permute([0, 2, 1]), train).relu(); // [P, C, M]
        x.amax([2i64].as_slice(), false)
    }

    /// This layer with its batch-norm folded in, for the inference graph.
    pub fn folded(&self) -> super::folded::FoldedPillarNet {
        super::folded::FoldedPillarNet::linear_bn(&self.linear, &self.norm)
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

    /// Scatters [pillars, C] features of a batch to [B, C, height, width]
    /// maps, each pillar into its frame's map. For B = 1 the same tensor as
    /// [`scatter`](Self::scatter).
    pub fn scatter_batch(&self, features: &Tensor, batch: &PillarBatch) -> Tensor {
        let (w, h, b) = (batch.grid.0 as i64, batch.grid.1 as i64, batch.batch_size as i64);
        let device = features.device();
        let mut canvas = Tensor::zeros([self.channels, b * h * w], (features.kind(), device));
        if !batch.is_empty() {
            let idx: Vec<i64> = batch.coords.iter().map(|&(f, y, x)| (f as i64 * h + y as i64) * w + x as i64).collect();
            let idx = Tensor::from_slice(&idx).to_device(device);
            canvas = canvas.index_put(&[None, Some(idx)], &features.transpose(0, 1), false);
        }
        canvas.view([self.channels, b, h, w]).permute([1, 0, 2, 3]).contiguous()
    }
}

/// `[P, m, POINT_FEATURES]` point features with the padded slots (index >=
/// the pillar's point count) zeroed, as OpenPCDet does before the linear layer.
pub(crate) fn masked_points(features: &[f32], num_points: &[u32], m: usize, device: Device) -> Tensor {
    let (p, m) = (num_points.len() as i64, m as i64);
    let f = POINT_FEATURES as i64;
    let x = if features.is_empty() || features.len() as i64 != p * m * f {
        // (a wrong length panics in `view` with the shapes, as before)
        Tensor::from_slice(features).view([p, m, f]).to_device(device)
    } else {
        // No copy into a tensor first: a view of the slice, read once by the
        // multiply below (CPU) or by the upload (CUDA); the full config's
        // pillars of a 64-beam sweep are ~9 MB a frame.
        // SAFETY: `features` is borrowed for the whole call and holds exactly
        // p * m * f floats laid out row-major (checked above). The view is
        // consumed inside this function: on the CPU `x * mask` writes a new
        // tensor (and nothing requires grad, so autograd keeps no reference
        // to the view); on CUDA `to_device` copies synchronously from
        // pageable memory. No handle to it outlives the borrow.
        let view = unsafe { Tensor::from_blob(features.as_ptr().cast::<u8>(), &[p, m, f], &[m * f, f, 1], Kind::Float, Device::Cpu) }; // cpu: the host slice itself
        view.to_device(device)
    };
    let counts: Vec<i64> = num_points.iter().map(|&n| n as i64).collect();
    let counts = Tensor::from_slice(&counts).to_device(device).unsqueeze(1);
    let mask = Tensor::arange(m, (Kind::Int64, device)).unsqueeze(0).lt_tensor(&counts).unsqueeze(2).to_kind(Kind::Float);
    x * mask
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tensor is built over the slice without copying it first: the result
    /// must still be its own memory (changing the slice afterwards changes
    /// nothing), padded slots zeroed, real points kept bit for bit.
    #[test]
    fn masked_points_zero_the_padding_and_do_not_alias_the_slice() {
        let (m, f) = (3usize, POINT_FEATURES);
        let mut features: Vec<f32> = (0..2 * m * f).map(|i| i as f32 + 0.5).collect();
        let counts = [2u32, 1];
        let x = masked_points(&features, &counts, m, Device::Cpu); // cpu: the host path under test
        features.iter_mut().for_each(|v| *v = -7.0);
        assert_eq!(x.size(), [2, m as i64, f as i64]);
        for (p, &n) in counts.iter().enumerate() {
            for k in 0..m {
                for d in 0..f {
                    let got = x.double_value(&[p as i64, k as i64, d as i64]);
                    let want = if k < n as usize { ((p * m + k) * f + d) as f64 + 0.5 } else { 0.0 };
                    assert_eq!(got, want, "pillar {p} slot {k} feature {d}");
                }
            }
        }
        assert_eq!(masked_points(&[], &[], m, Device::Cpu).size(), [0, m as i64, f as i64]); // cpu: the empty frame
    }
}
