//! Running a detector over a KITTI-format folder frame by frame, keeping
//! each frame's entropy profile (from the same forward pass as the
//! detections), its timings, its injected anomaly (the simulator's
//! `anomalies.json`, see src/dataset/sim/dataset_writer.rs) and, for
//! evaluation, its detections as KITTI label lines next to the ground truth.
//! Used by `eloss calibrate` and `eloss eloss-eval`.

use super::profile::{EntropyProfile, ProfileError, ProfileSpec};
use crate::dataset::kitti::{project_box_to_image, Calibration, KittiDataset, KittiError, ObjectClass, ObjectLabel, KITTI_IMAGE_HEIGHT, KITTI_IMAGE_WIDTH};
use crate::dataset::sim::dataset_writer::FrameAnomalies;
use crate::dataset::sim::AnomalyKind;
use crate::detect::detector::{Detector, DetectorError};
use crate::detect::postprocess::Detection;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Kitti(#[from] KittiError),
    #[error("frame {id}: {source}")]
    Detector { id: String, source: DetectorError },
    #[error("frame {id}: {source}")]
    Profile { id: String, source: ProfileError },
    #[error("{path}: {reason}")]
    Sidecar { path: PathBuf, reason: String },
}

/// What one frame gave.
#[derive(Debug, Clone)]
pub struct FrameRecord {
    pub id: String,
    pub profile: EntropyProfile,
    /// Pillarisation + network + postprocessing.
    pub detect_time: Duration,
    /// The injected LiDAR anomaly, if any.
    pub lidar_anomaly: Option<(AnomalyKind, f64)>,
    /// A camera-only anomaly (invisible to the LiDAR network).
    pub camera_anomaly: bool,
    /// With labels: ground truth and detections as KITTI label lines.
    pub labels: Option<(Vec<ObjectLabel>, Vec<ObjectLabel>)>,
}

impl FrameRecord {
    pub fn is_clean(&self) -> bool {
        self.lidar_anomaly.is_none() && !self.camera_anomaly
    }
}

/// The snake_case name of an anomaly kind (as in `--anomalies` and labels).
pub fn kind_name(kind: AnomalyKind) -> String {
    match serde_json::to_value(kind) {
        Ok(serde_json::Value::String(s)) => s,
        _ => format!("{kind:?}"),
    }
}

/// `ROOT/anomalies.json`, or an empty map when the folder has none (real data).
pub fn read_anomalies(root: &Path) -> Result<BTreeMap<String, Option<FrameAnomalies>>, RunError> {
    let path = root.join("anomalies.json");
    if !path.exists() {
        return Ok(BTreeMap::new());
    }
    let text = std::fs::read_to_string(&path).map_err(|e| RunError::Sidecar { path: path.clone(), reason: e.to_string() })?;
    serde_json::from_str(&text).map_err(|e| RunError::Sidecar { path, reason: e.to_string() })
}

/// Whether `anomalies.json` (as read by [`read_anomalies`]) lists an injected
/// LiDAR or camera anomaly for frame `id` (frames it does not list are clean).
pub fn is_anomalous(tags: &BTreeMap<String, Option<FrameAnomalies>>, id: &str) -> bool {
    tags.get(id).and_then(Option::as_ref).is_some_and(|t| t.lidar.is_some() || t.camera.is_some())
}

/// A detection as a KITTI result line (None when its box misses the image:
/// KITTI evaluates only what the camera sees).
pub fn detection_label(d: &Detection, class_names: &[String], calib: &Calibration) -> Option<ObjectLabel> {
    let class: ObjectClass = class_names.get(d.class)?.parse().ok()?;
    let p = project_box_to_image(&d.bbox, calib, KITTI_IMAGE_WIDTH, KITTI_IMAGE_HEIGHT)?;
    let mut label = ObjectLabel::from_lidar_box(class, &d.bbox, calib, p.bbox_clipped, p.truncation, 0);
    label.score = Some(d.score as f64);
    Some(label)
}

/// Runs `det` over `ids` of `ds`; `progress(done, total)` after every frame.
pub fn run_frames(
    det: &Detector,
    ds: &KittiDataset,
    ids: &[String],
    spec: ProfileSpec,
    with_labels: bool,
    mut progress: impl FnMut(usize, usize),
) -> Result<Vec<FrameRecord>, RunError> {
    let anomalies = read_anomalies(ds.root())?;
    let names = det.config.class_names();
    let mut out = Vec::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        let points = ds.points(id)?;
        let frame = det.detect(&points).map_err(|source| RunError::Detector { id: id.clone(), source })?;
        let t = frame.timings;
        let profile = EntropyProfile::compute_on(&frame.layers, spec).map_err(|source| RunError::Profile { id: id.clone(), source })?;
        let tag = anomalies.get(id).and_then(Option::as_ref);
        let labels = if with_labels {
            let calib = ds.calib(id)?;
            let dt = frame.detections.iter().filter_map(|d| detection_label(d, &names, &calib)).collect();
            Some((ds.labels(id)?, dt))
        } else {
            None
        };
        out.push(FrameRecord {
            id: id.clone(),
            profile,
            detect_time: t.pillarize + t.network + t.postprocess,
            lidar_anomaly: tag.and_then(|a| a.lidar).map(|l| (l.kind, l.severity)),
            camera_anomaly: tag.is_some_and(|a| a.camera.is_some()),
            labels,
        });
        progress(i + 1, ids.len());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What calibration treats as normal: frames `anomalies.json` does not
    /// list, lists as `null`, or lists without a LiDAR or camera anomaly.
    #[test]
    fn anomalies_sidecar_decides_which_frames_are_normal() {
        let dir = tempfile::tempdir().unwrap();
        // real data has no sidecar: every frame is normal
        let none = read_anomalies(dir.path()).unwrap();
        assert!(none.is_empty() && !is_anomalous(&none, "000000"));
        std::fs::write(
            dir.path().join("anomalies.json"),
            r#"{
              "000000": null,
              "000001": {"seed": 1, "split": "val", "lidar": null, "camera": null},
              "000002": {"seed": 2, "split": "val", "lidar": {"kind": "fog", "severity": 0.5}, "camera": null},
              "000003": {"seed": 3, "split": "train", "lidar": null, "camera": {"kind": "glare", "severity": 1.0}},
              "000004": {"seed": 4, "split": "val", "lidar": {"kind": "stale_frame", "severity": 1.0}, "camera": {"kind": "blur", "severity": 0.2}}
            }"#,
        )
        .unwrap();
        let tags = read_anomalies(dir.path()).unwrap();
        let flags: Vec<bool> = ["000000", "000001", "000002", "000003", "000004", "000009"].iter().map(|id| is_anomalous(&tags, id)).collect();
        assert_eq!(flags, [false, false, true, true, true, false]);
        // a broken sidecar is an error naming the file, not "all normal"
        std::fs::write(dir.path().join("anomalies.json"), "{\"000000\": {\"seed\": 1}").unwrap();
        let e = read_anomalies(dir.path()).unwrap_err().to_string();
        assert!(e.contains("anomalies.json"), "{e}");
    }
}
