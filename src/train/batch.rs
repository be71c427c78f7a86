//! Training samples and batches: one frame made ready for the network
//! (loaded, augmented, pillarized, its anchor targets assigned — all plain
//! CPU work, done on the loader's threads) and B of them collated into one
//! [`TrainBatch`] (pillars with a batch index, one target set per frame).

use super::augment::{AugmentConfig, GlobalTransform};
use super::data::{gts_in_range, DataError, FrameSource};
use super::gt_sampling::GtSampler;
use super::losses::DenseTargets;
use crate::cloud::Points;
use crate::dataset::sim::Rng;
use crate::detect::anchors::AnchorGrid;
use crate::detect::box_coder::DirectionBins;
use crate::detect::pillars::{pillarize, PillarBatch, PillarBatchError, PillarConfig, PillarError, Pillars};
use crate::detect::targets::{assign, MatchThresholds, TargetError};
use crate::geometry::Box3D;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Pillars(#[from] PillarError),
    #[error(transparent)]
    Targets(#[from] TargetError),
    #[error(transparent)]
    Collate(#[from] PillarBatchError),
    #[error("frame index {index} outside the {frames} training frames")]
    Index { index: usize, frames: usize },
}

/// One frame ready for a training step.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedFrame {
    pub id: String,
    pub pillars: Pillars,
    pub targets: DenseTargets,
    /// Ground truths inside the detector's range after augmentation.
    pub ground_truths: usize,
}

/// B prepared frames, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainBatch {
    pub ids: Vec<String>,
    pub pillars: PillarBatch,
    /// One per frame, in batch order.
    pub targets: Vec<DenseTargets>,
    pub ground_truths: usize,
}

impl TrainBatch {
    pub fn collate(frames: Vec<PreparedFrame>) -> Result<Self, BatchError> {
        let ids = frames.iter().map(|f| f.id.clone()).collect();
        let ground_truths = frames.iter().map(|f| f.ground_truths).sum();
        let (pillars, targets): (Vec<_>, Vec<_>) = frames.into_iter().map(|f| (f.pillars, f.targets)).unzip();
        Ok(Self { ids, pillars: PillarBatch::collate(pillars)?, targets, ground_truths })
    }

    pub fn len(&self) -> usize {
        self.targets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }
}

/// What the network's anchors need to turn boxes into targets.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetSpec {
    pub pillars: PillarConfig,
    pub anchors: AnchorGrid,
    pub thresholds: Vec<MatchThresholds>,
    pub bins: DirectionBins,
}

impl TargetSpec {
    /// The detector's pillar config, anchors and matching thresholds
    /// (KITTI's when its config has none) with KITTI's direction bins.
    pub fn kitti(det: &crate::detect::detector::Detector) -> Self {
        let thresholds = if det.config.match_thresholds.is_empty() { MatchThresholds::kitti().to_vec() } else { det.config.match_thresholds.clone() };
        Self { pillars: det.config.pillars.clone(), anchors: det.anchors().clone(), thresholds, bins: DirectionBins::kitti() }
    }

    /// Pillarizes `points` and assigns the anchor targets of `gts` (boxes
    /// outside the detector's x/y range are left out).
    pub fn prepare(&self, id: &str, points: &Points, gts: &[(Box3D, usize)]) -> Result<PreparedFrame, BatchError> {
        let gts = gts_in_range(gts, &self.pillars.range);
        let pillars = pillarize(points, &self.pillars)?;
        let targets = assign(&self.anchors, &gts, &self.thresholds, &self.bins)?;
        let dense = DenseTargets::new(&targets, self.anchors.len(), self.anchors.num_classes());
        Ok(PreparedFrame { id: id.to_owned(), pillars, targets: dense, ground_truths: gts.len() })
    }
}

/// Turns training frame `index` into sample number `sample` of the run: its
/// augmentation is drawn from the stream `sample` of the run's seed, so a
/// sample is the same whichever thread prepares it and whenever.
pub struct FramePreparer {
    pub source: FrameSource,
    pub ids: Vec<String>,
    pub augment: AugmentConfig,
    /// Ground-truth sampling, when the config enables it (pasted before the global transform).
    pub gt_sampler: Option<Arc<GtSampler>>,
    pub seed: u64,
    pub spec: TargetSpec,
}

impl FramePreparer {
    pub fn prepare(&self, index: usize, sample: u64) -> Result<PreparedFrame, BatchError> {
        let id = self.ids.get(index).ok_or(BatchError::Index { index, frames: self.ids.len() })?;
        let mut frame = self.source.load(id)?;
        if let Some(sampler) = &self.gt_sampler {
            sampler.paste(&mut frame, self.seed, sample);
        }
        let mut rng = Rng::stream(self.seed ^ 0x5eed, sample);
        let t = GlobalTransform::draw(&self.augment, &mut rng);
        t.apply_points(&mut frame.points);
        let boxes: Vec<_> = frame.gts.iter().map(|(b, c)| (t.apply_box(b), *c)).collect();
        self.spec.prepare(id, &frame.points, &boxes)
    }
}
