//! A replayable drive made from one KITTI object frame: its LiDAR cloud, and
//! optionally its left colour image with a CameraInfo from the P2
//! calibration, repeated at a fixed rate into a rosbag2 MCAP. Used by the
//! demo and tests until the simulator writes real drives.

use super::messages::{CameraInfo, Header, Image, PointCloud2, Time};
use super::BagWriter;
use anyhow::{bail, Context as _};
use crate::cloud::{kitti_bin, pointcloud2};
use std::path::Path;

pub const TOPIC_POINTS: &str = "/kitti/points";
pub const TOPIC_IMAGE: &str = "/kitti/image";
pub const TOPIC_CAMERA_INFO: &str = "/kitti/camera_info";
/// First stamp of a drive (2023-11-14T22:13:20Z): any fixed, realistic epoch.
const START_NS: i64 = 1_700_000_000_000_000_000;

#[derive(Debug, Clone)]
pub struct DriveSpec {
    pub frames: u32,
    pub hz: f64,
    pub lidar_frame: String,
    pub camera_frame: String,
}

/// Reads P2 (3x4, row-major) from a file holding its 12 numbers (or 16: the
/// 4x4 padded form, last row 0 0 0 1), or from a KITTI calib file's `P2:` line.
pub fn read_p2(path: &Path) -> anyhow::Result<[f64; 12]> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let numbers = text
        .lines()
        .find_map(|l| l.strip_prefix("P2:"))
        .unwrap_or(&text)
        .split_whitespace()
        .map(|t| t.parse::<f64>())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: not a P2 matrix", path.display()))?;
    match numbers.len() {
        12 => {}
        16 if numbers[12..] == [0.0, 0.0, 0.0, 1.0] => {}
        n => bail!("{}: P2 needs 12 numbers (or 16 with last row 0 0 0 1), found {n}", path.display()),
    }
    let mut p = [0.0; 12];
    p.copy_from_slice(&numbers[..12]);
    Ok(p)
}

/// A rectified camera's CameraInfo from KITTI's P2: K is P2's left 3x3, no distortion.
pub fn camera_info_from_p2(p: [f64; 12], width: u32, height: u32, header: Header) -> CameraInfo {
    CameraInfo {
        header,
        width,
        height,
        distortion_model: "plumb_bob".into(),
        d: vec![0.0; 5],
        k: [p[0], p[1], p[2], p[4], p[5], p[6], p[8], p[9], p[10]],
        r: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        p,
        ..Default::default()
    }
}

/// Writes the drive; returns the number of messages written.
pub fn write(bin: &Path, image: Option<&Path>, calib: Option<&Path>, spec: &DriveSpec, out: &Path) -> anyhow::Result<u64> {
    if spec.frames == 0 || !(spec.hz.is_finite() && spec.hz > 0.0) {
        bail!("need frames > 0 and hz > 0 (got {} at {} Hz)", spec.frames, spec.hz);
    }
    let points = kitti_bin::read(bin).with_context(|| format!("reading {}", bin.display()))?;
    let (fields, point_step, data) = pointcloud2::encode_xyzi(&points);
    let cloud = PointCloud2 {
        header: Header { stamp: Time::default(), frame_id: spec.lidar_frame.clone() },
        height: 1,
        width: points.len() as u32,
        fields,
        is_bigendian: false,
        point_step,
        row_step: point_step * points.len() as u32,
        data,
        is_dense: true,
    };
    let camera = match image {
        None => None,
        Some(path) => {
            let rgb = ::image::open(path).with_context(|| format!("reading {}", path.display()))?.to_rgb8();
            let (w, h) = rgb.dimensions();
            let img = Image {
                header: Header { stamp: Time::default(), frame_id: spec.camera_frame.clone() },
                height: h,
                width: w,
                encoding: "rgb8".into(),
                is_bigendian: 0,
                step: 3 * w,
                data: rgb.into_raw(),
            };
            let info = match calib {
                Some(c) => Some(camera_info_from_p2(read_p2(c)?, w, h, img.header.clone())),
                None => None,
            };
            Some((img, info))
        }
    };

    let mut bag = BagWriter::create(out)?;
    let mut written = 0;
    for i in 0..spec.frames {
        let t = START_NS + (i as f64 * 1e9 / spec.hz).round() as i64;
        let stamp = Time::from_nanos(t);
        let mut c = cloud.clone();
        c.header.stamp = stamp;
        bag.write(TOPIC_POINTS, t as u64, &c)?;
        written += 1;
        if let Some((img, info)) = &camera {
            let mut img = img.clone();
            img.header.stamp = stamp;
            bag.write(TOPIC_IMAGE, t as u64, &img)?;
            written += 1;
            if let Some(info) = info {
                let mut info = info.clone();
                info.header.stamp = stamp;
                bag.write(TOPIC_CAMERA_INFO, t as u64, &info)?;
                written += 1;
            }
        }
    }
    bag.finish()?;
    Ok(written)
}
