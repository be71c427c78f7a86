//! Which ΔH transitions form one variance term of the Eloss
//! (docs/entropy_loss.md, "Grouping").
//!
//! The layers are numbered 0..N−1 in forward order over all backbone blocks
//! and a group is a run of consecutive layers; its transitions are
//! ΔH_i = H_{i+1} − H_i for consecutive layers of the run, and the Eloss is
//! Σ_groups Var(ΔH) (a group with fewer than two ΔH adds 0).
//!
//! - [`Grouping::PerBlock`] (ours so far): one group per backbone block,
//!   every transition inside a block, none across blocks.
//! - [`Grouping::Reference`]: the grouping of the reference repository's
//!   `EntropyLoss` (yhbcode000/Eloss-Interpretability, `xnet_loss.py`), which
//!   splits the flat list of N layer outputs in two halves by index, with
//!   h = ⌊N/2⌋: group A = transitions i → i+1 for i = 1 … h−2 (layers 1 … h−1;
//!   the transition 0 → 1 is left out), group B = transitions i → i+1 for
//!   i = h−1 … 2h−2 (layers h−1 … 2h−1). For the reference's two blocks of
//!   6 layers (N = 12): 1→2 … 4→5 and 5→6 … 10→11, the second group
//!   starting with the transition across the block boundary. The split does
//!   not look at the blocks: for our compact backbone (blocks of 4, 6 and 6
//!   layers, N = 16) it gives 1→2 … 6→7 and 7→8 … 14→15, so group A spans
//!   block 0 and most of block 1 and group B the end of block 1 and block 2.
//!   For odd N the last transition (N−2 → N−1) is left out, as by the
//!   reference's index arithmetic.

use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::str::FromStr;

/// Serialised as `per_block` / `reference` (training config, calibration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grouping {
    /// One group per backbone block (what models and calibrations made
    /// before the option existed used; the default when a file has no field).
    #[default]
    PerBlock,
    /// The reference repository's two index halves (see the module docs).
    Reference,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("unknown Eloss grouping `{0}` (per_block or reference)")]
pub struct UnknownGrouping(pub String);

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TrainedGroupingError {
    #[error("the checkpoint's training grouping {0} is not per_block or reference")]
    Unreadable(String),
    #[error("asked for the {requested} grouping but the model was trained with {trained}")]
    Mismatch { requested: &'static str, trained: &'static str },
}

impl FromStr for Grouping {
    type Err = UnknownGrouping;
    fn from_str(s: &str) -> Result<Self, UnknownGrouping> {
        match s.trim() {
            "per_block" => Ok(Self::PerBlock),
            "reference" => Ok(Self::Reference),
            other => Err(UnknownGrouping(other.to_string())),
        }
    }
}

impl Grouping {
    pub fn name(&self) -> &'static str {
        match self {
            Self::PerBlock => "per_block",
            Self::Reference => "reference",
        }
    }

    /// The grouping to calibrate a model with: the one its checkpoint's
    /// training config (`training["config"]["grouping"]`) records — per
    /// block when it records none, as every model before the option —
    /// and `requested`, when given, must be that one: the monitor then
    /// reads the quantity the model was trained to keep small.
    pub fn of_checkpoint(training: &serde_json::Value, requested: Option<Grouping>) -> Result<Grouping, TrainedGroupingError> {
        let trained = match training["config"].get("grouping") {
            None | Some(serde_json::Value::Null) => Grouping::PerBlock,
            Some(v) => serde_json::from_value(v.clone()).map_err(|_| TrainedGroupingError::Unreadable(crate::log_limit::printable(&v.to_string())))?,
        };
        match requested {
            Some(r) if r != trained => Err(TrainedGroupingError::Mismatch { requested: r.name(), trained: trained.name() }),
            _ => Ok(trained),
        }
    }

    /// Serde's `skip_serializing_if` for fields added after per-block files existed.
    pub fn is_per_block(&self) -> bool {
        *self == Self::PerBlock
    }

    /// The groups as ranges of flat layer indices (each range's consecutive
    /// layers give the group's transitions), for blocks of the given layer counts.
    pub fn layer_groups(&self, block_layer_counts: &[u32]) -> Vec<Range<usize>> {
        match self {
            Self::PerBlock => {
                let mut start = 0usize;
                block_layer_counts
                    .iter()
                    .map(|&n| {
                        let r = start..start + n as usize;
                        start = r.end;
                        r
                    })
                    .collect()
            }
            Self::Reference => {
                let total: usize = block_layer_counts.iter().map(|&n| n as usize).sum();
                let h = total / 2;
                if h == 0 {
                    return vec![0..total];
                }
                vec![1.min(h)..h, h - 1..2 * h]
            }
        }
    }

    /// ΔH of every group: [`Self::layer_groups`] applied to `entropies`
    /// (forward order; layers beyond the list are ignored).
    pub fn deltas(&self, entropies: &[f64], block_layer_counts: &[u32]) -> Vec<Vec<f64>> {
        self.layer_groups(block_layer_counts)
            .into_iter()
            .map(|r| {
                let r = r.start.min(entropies.len())..r.end.min(entropies.len());
                entropies[r].windows(2).map(|w| w[1] - w[0]).collect()
            })
            .collect()
    }

    /// Every transition (layer i, i+1) of every group, as the index i.
    pub fn transitions(&self, block_layer_counts: &[u32]) -> Vec<usize> {
        self.layer_groups(block_layer_counts).into_iter().flat_map(|r| r.start..r.end.saturating_sub(1).max(r.start)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_groups_of_the_reference_network() {
        // two blocks of 6 layers: 1→2 … 4→5 and 5→6 … 10→11 (xnet_loss.py)
        let g = Grouping::Reference.layer_groups(&[6, 6]);
        assert_eq!(g, vec![1..6, 5..12]);
        assert_eq!(Grouping::Reference.transitions(&[6, 6]), vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        assert_eq!(Grouping::PerBlock.layer_groups(&[6, 6]), vec![0..6, 6..12]);
        assert_eq!(Grouping::PerBlock.transitions(&[6, 6]), vec![0, 1, 2, 3, 4, 6, 7, 8, 9, 10]);
    }

    #[test]
    fn reference_groups_of_our_compact_backbone() {
        // blocks of 4, 6, 6 layers: 1→2 … 6→7 and 7→8 … 14→15
        assert_eq!(Grouping::Reference.layer_groups(&[4, 6, 6]), vec![1..8, 7..16]);
        assert_eq!(Grouping::PerBlock.layer_groups(&[4, 6, 6]), vec![0..4, 4..10, 10..16]);
        // odd N: the last transition is left out, as by the reference's indices
        assert_eq!(Grouping::Reference.layer_groups(&[3, 4]), vec![1..3, 2..6]);
        // degenerate layouts give groups without transitions, not panics
        assert_eq!(Grouping::Reference.transitions(&[1]), Vec::<usize>::new());
        assert_eq!(Grouping::Reference.deltas(&[1.0], &[1]), vec![Vec::<f64>::new()]);
    }

    #[test]
    fn deltas_by_hand() {
        let h = [0.0, 1.0, 3.0, 6.0, 10.0, 15.0];
        // reference, N = 6, h = 3: layers 1..3 and 2..6
        assert_eq!(Grouping::Reference.deltas(&h, &[3, 3]), vec![vec![2.0], vec![3.0, 4.0, 5.0]]);
        assert_eq!(Grouping::PerBlock.deltas(&h, &[3, 3]), vec![vec![1.0, 2.0], vec![4.0, 5.0]]);
    }

    #[test]
    fn calibration_takes_the_trained_grouping() {
        use serde_json::json;
        let reference = json!({"config": {"grouping": "reference", "estimator": "knn"}});
        assert_eq!(Grouping::of_checkpoint(&reference, None), Ok(Grouping::Reference));
        assert_eq!(Grouping::of_checkpoint(&reference, Some(Grouping::Reference)), Ok(Grouping::Reference));
        assert_eq!(
            Grouping::of_checkpoint(&reference, Some(Grouping::PerBlock)),
            Err(TrainedGroupingError::Mismatch { requested: "per_block", trained: "reference" })
        );
        // models trained before the option (or not by the trainer) are per block
        for old in [json!({"config": {"estimator": "knn"}}), json!({}), json!(null)] {
            assert_eq!(Grouping::of_checkpoint(&old, None), Ok(Grouping::PerBlock));
            assert!(Grouping::of_checkpoint(&old, Some(Grouping::Reference)).is_err());
        }
        assert!(matches!(Grouping::of_checkpoint(&json!({"config": {"grouping": "halves"}}), None), Err(TrainedGroupingError::Unreadable(_))));
    }

    #[test]
    fn parse_and_serialise() {
        assert_eq!("reference".parse::<Grouping>().unwrap(), Grouping::Reference);
        assert_eq!(" per_block".parse::<Grouping>().unwrap(), Grouping::PerBlock);
        assert!("per-block".parse::<Grouping>().is_err());
        assert_eq!(serde_json::to_string(&Grouping::Reference).unwrap(), "\"reference\"");
        assert_eq!(serde_yaml::from_str::<Grouping>("per_block").unwrap(), Grouping::PerBlock);
    }
}
