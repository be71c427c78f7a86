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
    /// The frame's other labelled objects (classes the model does not
    /// detect, DontCare excluded): not taught, but ground-truth sampling
    /// pastes nothing onto them (OpenPCDet checks collisions against every
    /// labelled box but DontCare).
    pub others: Vec<Box3D>,
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

/// The KITTI object classes named by `class_names` (the model's), in order.
pub fn parse_classes(class_names: &[String]) -> Result<Vec<ObjectClass>, DataError> {
    class_names.iter().map(|n| ObjectClass::from_str(n).map_err(|_| DataError::Class(n.clone()))).collect()
}

impl FrameSource {
    pub fn new(dataset: KittiDataset, class_names: &[String]) -> Result<Self, DataError> {
        Ok(Self { dataset, classes: parse_classes(class_names)? })
    }

    pub fn load(&self, id: &str) -> Result<TrainFrame, DataError> {
        let mut frame = self.dataset.frame(id)?;
        cut_to_camera_view(&mut frame);
        let (mut gts, mut others) = (Vec::new(), Vec::new());
        for l in frame.labels.iter().filter(|l| l.class != ObjectClass::DontCare) {
            let b = l.to_lidar_box(&frame.calib);
            match self.classes.iter().position(|c| *c == l.class) {
                Some(k) => gts.push((b, k)),
                None => others.push(b),
            }
        }
        Ok(TrainFrame { id: id.to_owned(), points: frame.points, gts, others })
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
