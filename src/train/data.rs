//! Training frames from a KITTI-format folder (real KITTI or the simulator's):
//! the cloud cut to the camera's field of view and the labelled objects of
//! the model's classes as LiDAR-frame boxes with class indices.

use crate::cloud::Points;
use crate::dataset::kitti::fov::cut_to_camera_view;
use crate::dataset::kitti::{KittiDataset, KittiError, ObjectClass};
use crate::geometry::Box3D;
use std::str::FromStr;

#[derive(Debug, Clone)]
pub struct TrainFrame {
    pub id: String,
    pub points: Points,
    /// Ground truth: box and index into the model's classes.
    pub gts: Vec<(Box3D, usize)>,
}

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error(transparent)]
    Kitti(#[from] KittiError),
    #[error("model class `{0}` is not a KITTI object type")]
    Class(String),
}

pub struct FrameSource {
    pub dataset: KittiDataset,
    classes: Vec<ObjectClass>,
}

impl FrameSource {
    pub fn new(dataset: KittiDataset, class_names: &[String]) -> Result<Self, DataError> {
        let classes = class_names.iter().map(|n| ObjectClass::from_str(n).map_err(|_| DataError::Class(n.clone()))).collect::<Result<_, _>>()?;
        Ok(Self { dataset, classes })
    }

    pub fn load(&self, id: &str) -> Result<TrainFrame, DataError> {
        let mut frame = self.dataset.frame(id)?;
        cut_to_camera_view(&mut frame);
        let gts = frame
            .labels
            .iter()
            .filter_map(|l| Some((l.to_lidar_box(&frame.calib), self.classes.iter().position(|c| *c == l.class)?)))
            .collect();
        Ok(TrainFrame { id: id.to_owned(), points: frame.points, gts })
    }
}

/// Boxes whose centre lies inside the detector's x/y range (after
/// augmentation some leave it; anchors cannot reach them).
pub fn gts_in_range(gts: &[(Box3D, usize)], range: &[f64; 6]) -> Vec<(Box3D, usize)> {
    gts.iter()
        .filter(|(b, _)| b.center[0] >= range[0] && b.center[0] < range[3] && b.center[1] >= range[1] && b.center[1] < range[4])
        .cloned()
        .collect()
}
