//! Runs a detector over KITTI-format frames and scores it with the KITTI
//! protocol (the evaluation the training curves and the model card use).

use super::data::DataError;
use crate::dataset::kitti::fov::cut_to_camera_view;
use crate::dataset::kitti::{KittiDataset, ObjectLabel};
use crate::detect::detector::{Detector, DetectorError, StageTimings};
use crate::detect::kitti_output::detections_to_labels;
use crate::eval::{evaluate, EvalConfig, EvalError, EvalReport};

#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Detector(#[from] DetectorError),
    #[error(transparent)]
    Eval(#[from] EvalError),
}

/// Detections of every frame (as labels) and the summed stage timings.
pub struct Predictions {
    pub ids: Vec<String>,
    pub ground_truth: Vec<Vec<ObjectLabel>>,
    pub detections: Vec<Vec<ObjectLabel>>,
    pub timings: Vec<StageTimings>,
}

/// Detects on `ids` of `dataset` (field-of-view cloud, as in training);
/// `progress` is called after each frame.
pub fn predict(det: &Detector, dataset: &KittiDataset, ids: &[String], mut progress: impl FnMut(usize)) -> Result<Predictions, ValidateError> {
    let names = det.config.class_names();
    let mut out = Predictions { ids: ids.to_vec(), ground_truth: Vec::new(), detections: Vec::new(), timings: Vec::new() };
    for (i, id) in ids.iter().enumerate() {
        let mut frame = dataset.frame(id).map_err(DataError::from)?;
        let (w, h) = cut_to_camera_view(&mut frame);
        let result = det.detect(&frame.points)?;
        out.detections.push(detections_to_labels(&result.detections, &names, &frame.calib, w, h));
        out.ground_truth.push(frame.labels);
        out.timings.push(result.timings);
        progress(i + 1);
    }
    Ok(out)
}

impl Predictions {
    pub fn evaluate(&self, config: &EvalConfig) -> Result<EvalReport, ValidateError> {
        Ok(evaluate(&self.ground_truth, &self.detections, config)?)
    }
}
