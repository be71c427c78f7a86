//! mmdetection3d's info file of a KITTI frame (`info.json`, as in
//! `../shared/data/kitti_000008`): the calibration and the ground-truth
//! objects as [`Calibration`] and [`ObjectLabel`]s, so the real frame's
//! labelled objects can be cropped like any dataset's (GDC evaluation on
//! real crops, `eloss gdc eval --kitti`).
//!
//! Read from `data_list[0]`: `images.CAMi.cam2img` (4x4, padded P0..P3),
//! `images.R0_rect`, `lidar_points.Tr_velo_to_cam` and `Tr_imu_to_velo`
//! (4x4, top 3 rows taken); each of `instances[]`: `bbox` (2D box), `bbox_3d`
//! = x, y, z (bottom centre, rectified camera), **l, h, w** (mmdetection3d's
//! order, unlike the label file's h, w, l), rotation_y; `bbox_label_3d`
//! (0 Pedestrian, 1 Cyclist, 2 Car, −1 DontCare), `truncated`, `occluded`,
//! `alpha`. Anything missing or of the wrong type is an error naming it.

use super::{Calibration, ObjectClass, ObjectLabel};
use serde_json::Value;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum InfoError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: not JSON: {source}")]
    Json { path: String, source: serde_json::Error },
    #[error("info.json: {0}")]
    Field(String),
}

/// One frame of an info file.
#[derive(Debug, Clone, PartialEq)]
pub struct InfoFrame {
    pub calib: Calibration,
    /// Every instance in file order, DontCare regions included.
    pub labels: Vec<ObjectLabel>,
}

impl InfoFrame {
    /// `dir/info.json`'s first frame.
    pub fn read(dir: &Path) -> Result<Self, InfoError> {
        let path = dir.join("info.json");
        let text = std::fs::read_to_string(&path).map_err(|source| InfoError::Io { path: path.display().to_string(), source })?;
        let info: Value = serde_json::from_str(&text).map_err(|source| InfoError::Json { path: path.display().to_string(), source })?;
        Self::from_value(&info["data_list"][0])
    }

    /// From one entry of `data_list`.
    pub fn from_value(frame: &Value) -> Result<Self, InfoError> {
        let list = frame["instances"].as_array().ok_or_else(|| InfoError::Field("no instances array".into()))?;
        let labels = list.iter().enumerate().map(|(i, inst)| instance(inst).map_err(|e| InfoError::Field(format!("instance {i}: {e}")))).collect::<Result<_, _>>()?;
        Ok(Self { calib: calibration(frame)?, labels })
    }
}

fn num(v: &Value, what: &str) -> Result<f64, InfoError> {
    v.as_f64().ok_or_else(|| InfoError::Field(format!("{what}: not a number: {v}")))
}

/// The first `rows` rows of a JSON matrix, row-major.
fn matrix(v: &Value, rows: usize, cols: usize, what: &str) -> Result<Vec<f64>, InfoError> {
    (0..rows).flat_map(|r| (0..cols).map(move |c| (r, c))).map(|(r, c)| num(&v[r][c], &format!("{what}[{r}][{c}]"))).collect()
}

fn array12(v: Vec<f64>) -> [f64; 12] {
    let mut out = [0.0; 12];
    out.copy_from_slice(&v[..12]);
    out
}

fn calibration(frame: &Value) -> Result<Calibration, InfoError> {
    let p = |cam: &str| matrix(&frame["images"][cam]["cam2img"], 3, 4, &format!("images.{cam}.cam2img")).map(array12);
    let optional = |cam: &str| if frame["images"][cam].is_null() { Ok(None) } else { p(cam).map(Some) };
    let r0 = matrix(&frame["images"]["R0_rect"], 3, 4, "images.R0_rect")?;
    let imu = &frame["lidar_points"]["Tr_imu_to_velo"];
    Ok(Calibration {
        p0: optional("CAM0")?,
        p1: optional("CAM1")?,
        p2: p("CAM2")?,
        p3: optional("CAM3")?,
        r0_rect: [r0[0], r0[1], r0[2], r0[4], r0[5], r0[6], r0[8], r0[9], r0[10]],
        tr_velo_to_cam: array12(matrix(&frame["lidar_points"]["Tr_velo_to_cam"], 3, 4, "lidar_points.Tr_velo_to_cam")?),
        tr_imu_to_velo: if imu.is_null() { None } else { Some(array12(matrix(imu, 3, 4, "lidar_points.Tr_imu_to_velo")?)) },
    })
}

fn instance(inst: &Value) -> Result<ObjectLabel, InfoError> {
    let bbox: [f64; 4] = matrix(&Value::Array(vec![inst["bbox"].clone()]), 1, 4, "bbox")?.try_into().map_err(|_| InfoError::Field("bbox".into()))?;
    let class = match inst["bbox_label_3d"].as_i64() {
        Some(0) => ObjectClass::Pedestrian,
        Some(1) => ObjectClass::Cyclist,
        Some(2) => ObjectClass::Car,
        Some(-1) => return Ok(ObjectLabel::dont_care(bbox)),
        other => return Err(InfoError::Field(format!("unexpected bbox_label_3d {other:?}"))),
    };
    let b = matrix(&Value::Array(vec![inst["bbox_3d"].clone()]), 1, 7, "bbox_3d")?;
    let occluded = inst["occluded"].as_i64().and_then(|o| u8::try_from(o).ok()).filter(|o| *o <= 3);
    Ok(ObjectLabel {
        class,
        truncated: num(&inst["truncated"], "truncated")?,
        occluded: occluded.ok_or_else(|| InfoError::Field(format!("occluded {} not in 0..=3", inst["occluded"])))?,
        alpha: num(&inst["alpha"], "alpha")?,
        bbox,
        dimensions: [b[4], b[5], b[3]],
        location: [b[0], b[1], b[2]],
        rotation_y: b[6],
        score: None,
    })
}
