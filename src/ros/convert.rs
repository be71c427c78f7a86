//! Conversions between r2r message types and the ROS-free core structs.
//! Borrowing where the core takes slices, so a cloud's bytes are not copied.

use crate::camera::{CameraError, CameraInfoLayout, PinholeCamera};
use crate::cloud::pointcloud2::{self, CloudError, CloudLayout, DecodeReport};
use crate::cloud::Points;
use crate::image::{self, ImageError, ImageLayout, RgbImage};
use crate::stats::{DiagnosticStatus, Level};
use r2r::builtin_interfaces::msg::Time;
use r2r::diagnostic_msgs::msg as diag;
use r2r::sensor_msgs::msg::{CameraInfo, Image, PointCloud2};

pub fn decode_cloud(msg: &PointCloud2) -> Result<(Points, DecodeReport), CloudError> {
    let fields: Vec<pointcloud2::PointField> = msg
        .fields
        .iter()
        .map(|f| pointcloud2::PointField { name: f.name.clone(), offset: f.offset, datatype: f.datatype, count: f.count })
        .collect();
    pointcloud2::decode(&CloudLayout {
        height: msg.height,
        width: msg.width,
        fields: &fields,
        is_bigendian: msg.is_bigendian,
        point_step: msg.point_step,
        row_step: msg.row_step,
        data: &msg.data,
        is_dense: msg.is_dense,
    })
}

pub fn decode_image(msg: &Image) -> Result<RgbImage, ImageError> {
    image::decode_rgb(&ImageLayout {
        height: msg.height,
        width: msg.width,
        encoding: &msg.encoding,
        is_bigendian: msg.is_bigendian != 0,
        step: msg.step,
        data: &msg.data,
    })
}

/// Fixed-size matrices arrive as Vec in r2r; a wrong length is a malformed message.
fn fixed<const N: usize>(v: &[f64], name: &str) -> Result<[f64; N], String> {
    v.try_into().map_err(|_| format!("CameraInfo.{name} has {} elements, expected {N}", v.len()))
}

#[derive(Debug, thiserror::Error)]
pub enum CameraInfoError {
    #[error("{0}")]
    Shape(String),
    #[error(transparent)]
    Camera(#[from] CameraError),
}

pub fn decode_camera_info(msg: &CameraInfo) -> Result<PinholeCamera, CameraInfoError> {
    let layout = CameraInfoLayout {
        width: msg.width,
        height: msg.height,
        distortion_model: &msg.distortion_model,
        d: &msg.d,
        k: fixed::<9>(&msg.k, "k").map_err(CameraInfoError::Shape)?,
        r: fixed::<9>(&msg.r, "r").map_err(CameraInfoError::Shape)?,
        p: fixed::<12>(&msg.p, "p").map_err(CameraInfoError::Shape)?,
    };
    Ok(PinholeCamera::from_camera_info(&layout)?)
}

pub fn diagnostic_status(s: &DiagnosticStatus) -> diag::DiagnosticStatus {
    // r2r exposes the message constants as untyped bindgen integers
    let level = match s.level {
        Level::Ok => diag::DiagnosticStatus::OK as u8,
        Level::Warn => diag::DiagnosticStatus::WARN as u8,
        Level::Error => diag::DiagnosticStatus::ERROR as u8,
        Level::Stale => diag::DiagnosticStatus::STALE as u8,
    };
    diag::DiagnosticStatus {
        level,
        name: s.name.clone(),
        message: s.message.clone(),
        hardware_id: s.hardware_id.clone(),
        values: s.values.iter().map(|(k, v)| diag::KeyValue { key: k.clone(), value: v.clone() }).collect(),
    }
}

pub fn stamp_ns(t: &Time) -> i64 {
    t.sec as i64 * 1_000_000_000 + t.nanosec as i64
}
