//! Which cells of a layer output the monitor's entropies are estimated over
//! (issue 19, item 3). About 96 % of a KITTI frame's BEV cells hold no
//! pillar: their layer outputs are the same constant in every frame (the
//! network's response to zeros) and dominate both estimators, so the
//! profile moves little when the occupied part of the scene changes.
//!
//! * `all` (the default, what the model was trained on): every cell.
//! * `occupied`: only the cells whose receptive field holds a non-empty
//!   pillar. The mask starts from the backbone's input (a cell is occupied
//!   when its pseudo-image vector is not all zero) and follows each 3×3
//!   convolution: a 3×3 max-pool with the layer's stride (padding 1), so a
//!   layer's cell is kept when any input cell under its kernel was. The
//!   kNN estimator's samples (the channels) then have one dimension per
//!   kept cell; the Gaussian estimator's samples are the kept positions.
//!   Fewer cells also make the estimate cheaper.
//! * `subsampled`: every second cell in both directions (a quarter of the
//!   cells, a regular grid): the cheap profile of issue 19 item 5. The kNN
//!   estimator's cost is C² · cells per layer, so this is about 4x cheaper.

use crate::detect::model::backbone::LayerOutputs;
use serde::{Deserialize, Serialize};
use std::str::FromStr;
use tch::{Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cells {
    #[default]
    All,
    Occupied,
    Subsampled,
}

impl Cells {
    pub fn name(self) -> &'static str {
        match self {
            Cells::All => "all",
            Cells::Occupied => "occupied",
            Cells::Subsampled => "subsampled",
        }
    }

    pub fn is_all(&self) -> bool {
        *self == Cells::All
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("unknown cell selection `{0}` (all, occupied or subsampled)")]
pub struct UnknownCells(pub String);

impl FromStr for Cells {
    type Err = UnknownCells;
    fn from_str(s: &str) -> Result<Self, UnknownCells> {
        match s.trim() {
            "all" => Ok(Cells::All),
            "occupied" => Ok(Cells::Occupied),
            "subsampled" => Ok(Cells::Subsampled),
            other => Err(UnknownCells(other.to_string())),
        }
    }
}

/// Why the occupied cells could not be found.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CellsError {
    #[error("the layer outputs carry no backbone input to find the occupied cells from")]
    NoInput,
    #[error("layer {layer}: its {got:?} cells do not follow from the previous {previous:?} by a 3x3 convolution")]
    Geometry { layer: usize, previous: (i64, i64), got: (i64, i64) },
}

/// For every layer (forward order), the flat indices of its occupied cells
/// (batch element 0), as an i64 tensor on the layers' device.
pub fn occupied_indices(layers: &LayerOutputs) -> Result<Vec<Tensor>, CellsError> {
    let input = layers.input.as_ref().ok_or(CellsError::NoInput)?;
    let first = input.narrow(0, 0, 1);
    let mut mask = first.abs().sum_dim_intlist([1i64].as_slice(), true, Kind::Float).gt(0.0).to_kind(Kind::Float);
    let mut out = Vec::with_capacity(layers.num_layers());
    for (j, x) in layers.blocks.iter().flatten().enumerate() {
        let size = x.size();
        let (h, w) = (size[size.len() - 2], size[size.len() - 1]);
        let (ph, pw) = (mask.size()[2], mask.size()[3]);
        let stride = ((ph + h - 1) / h.max(1)).max(1);
        mask = mask.max_pool2d([3, 3], [stride, stride], [1, 1], [1, 1], false);
        if mask.size()[2..] != [h, w] {
            return Err(CellsError::Geometry { layer: j, previous: (ph, pw), got: (h, w) });
        }
        out.push(mask.reshape([-1]).nonzero().squeeze_dim(1));
    }
    Ok(out)
}

/// `x` ([B, C, H, W]) on every second row and column: [B, C, ⌈H/2⌉, ⌈W/2⌉].
pub fn subsample(x: &Tensor) -> Tensor {
    let size = x.size();
    let (h, w) = (size[size.len() - 2], size[size.len() - 1]);
    x.slice(2, 0, h, 2).slice(3, 0, w, 2)
}

/// `x` ([1, C, H, W]) restricted to the cells `indices`: [1, C, n, 1].
pub fn select(x: &Tensor, indices: &Tensor) -> Tensor {
    let size = x.size();
    x.reshape([size[0], size[1], -1]).index_select(2, indices).unsqueeze(-1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn the_mask_follows_the_receptive_field() {
        // an 8x8 input with one non-empty cell at (2, 5); layers: 3x3 stride 1, then stride 2, then stride 1
        let input = Tensor::zeros([1, 4, 8, 8], (Kind::Float, Device::Cpu));
        let _ = input.get(0).get(1).get(2).get(5).fill_(3.0);
        let z = |h, w| Tensor::zeros([1, 2, h, w], (Kind::Float, Device::Cpu));
        let layers = LayerOutputs { blocks: vec![vec![z(8, 8)], vec![z(4, 4), z(4, 4)]], input: Some(input) };
        let idx = occupied_indices(&layers).unwrap();
        let cells = |t: &Tensor| Vec::<i64>::try_from(t).unwrap();
        // layer 1: the 3x3 around (2, 5): rows 1..=3, columns 4..=6
        let want1: Vec<i64> = (1..=3).flat_map(|r| (4..=6).map(move |c| r * 8 + c)).collect();
        assert_eq!(cells(&idx[0]), want1);
        // layer 2 (stride 2): output (r, c) sees input rows 2r-1..=2r+1: rows 0..=2 → r 0..=1 (r=2 sees 3..5 → 3 is in), so r 0..=2; columns 4..=6 → c 2..=3
        let want2: Vec<i64> = (0..=2).flat_map(|r| (2..=3).map(move |c| r * 4 + c)).collect();
        assert_eq!(cells(&idx[1]), want2);
        // layer 3 grows by one cell each way, inside the 4x4 map
        let want3: Vec<i64> = (0..=3).flat_map(|r| (1..=3).map(move |c| r * 4 + c)).collect();
        assert_eq!(cells(&idx[2]), want3);
        // selection keeps the channels and the chosen cells
        let x = Tensor::arange(2 * 16, (Kind::Float, Device::Cpu)).reshape([1, 2, 4, 4]);
        let s = select(&x, &idx[1]);
        assert_eq!(s.size(), vec![1, 2, 6, 1]);
        assert_eq!(Vec::<f32>::try_from(s.reshape([-1])).unwrap()[..6], [2.0, 3.0, 6.0, 7.0, 10.0, 11.0]);
        assert_eq!(occupied_indices(&LayerOutputs { blocks: layers.blocks, input: None }).unwrap_err(), CellsError::NoInput);
        assert_eq!("occupied".parse::<Cells>().unwrap(), Cells::Occupied);
        assert_eq!("subsampled".parse::<Cells>().unwrap(), Cells::Subsampled);
        // every second row and column: (0,0) (0,2) (2,0) (2,2) of a 3x4 map → values 0, 2, 8, 10
        let y = Tensor::arange(12, (Kind::Float, Device::Cpu)).reshape([1, 1, 3, 4]);
        assert_eq!(Vec::<f32>::try_from(subsample(&y).reshape([-1])).unwrap(), [0.0, 2.0, 8.0, 10.0]);
        assert!("some".parse::<Cells>().is_err());
    }
}
