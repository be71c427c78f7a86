//! A replayable drive made from one KITTI object frame: its LiDAR cloud, and
//! optionally its left colour image with a CameraInfo from the P2
//! calibration, repeated at a fixed rate into a rosbag2 MCAP. Used by the
//! demo and tests until the simulator writes real drives.
//!
//! The bag starts with one `/tf_static` message (recorded transient-local,
//! as tf2's static broadcaster offers it) so a replay brings its frames:
//!
//! * `base_frame` → `lidar_frame`: the Velodyne 1.73 m above the road
//!   ([`KITTI_LIDAR_HEIGHT_M`], KITTI's set-up), axes aligned (x forward,
//!   z up), so `base_frame` sits on the ground below the LiDAR;
//! * `lidar_frame` → `camera_frame` (when the image is written): the inverse
//!   of `R0_rect · Tr_velo_to_cam`, i.e. KITTI's *rectified camera 0* frame
//!   (x right, y down, z forward). That is the frame the CameraInfo's P
//!   (= KITTI's P2, whose 4th column holds camera 2's offset from camera 0)
//!   projects from, so `camera_frame` names it in the Image, the CameraInfo
//!   and tf alike. The extrinsic comes from `--calib` when that is a full
//!   KITTI calib file; a file with only P2 has none, and KITTI's
//!   2011_09_26 calibration (the node's `camera.lidar_to_camera` default)
//!   is used, with a warning.
//!
//! Sensor topics are recorded as rclcpp's `QoS(10)` (reliable, volatile),
//! which both reliable and best-effort subscribers match.

use super::messages::{CameraInfo, Header, Image, PointCloud2, RosMessage, Time};
use super::qos::OfferedQos;
use super::tf::{Quaternion, TFMessage, Transform, TransformStamped, Vector3};
use super::BagWriter;
use anyhow::{bail, Context as _};
use crate::cloud::{kitti_bin, pointcloud2};
use crate::dataset::kitti::{Calibration, KITTI_LIDAR_HEIGHT_M};
use std::path::Path;

pub const TOPIC_POINTS: &str = "/kitti/points";
pub const TOPIC_IMAGE: &str = "/kitti/image";
pub const TOPIC_CAMERA_INFO: &str = "/kitti/camera_info";
pub const TOPIC_TF_STATIC: &str = "/tf_static";
/// Depth the sensor topics are recorded with (rclcpp's `QoS(10)`).
const SENSOR_DEPTH: u32 = 10;
/// First stamp of a drive (2023-11-14T22:13:20Z): any fixed, realistic epoch.
const START_NS: i64 = 1_700_000_000_000_000_000;

#[derive(Debug, Clone)]
pub struct DriveSpec {
    pub frames: u32,
    pub hz: f64,
    /// The vehicle frame on the ground below the LiDAR, e.g. `base_link`.
    pub base_frame: String,
    pub lidar_frame: String,
    /// The rectified camera-0 optical frame (see the module docs).
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

/// The LiDAR → rectified-camera-0 extrinsic `R0_rect · Tr_velo_to_cam`
/// (3x4 row-major) of a full KITTI calib file, or `None` for a file that
/// holds only P2 (12 or 16 bare numbers, or just a `P2:` line).
pub fn read_extrinsic(path: &Path) -> anyhow::Result<Option<[f64; 12]>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let has_extrinsic = text.lines().any(|l| l.trim_start().starts_with("Tr_velo"));
    if !has_extrinsic {
        return Ok(None);
    }
    let calib = Calibration::parse(&text).with_context(|| format!("{}: not a KITTI calib file", path.display()))?;
    Ok(Some(calib.lidar_to_cam_matrix()))
}

/// The `/tf_static` message of a drive: `base_frame` → `lidar_frame` at
/// KITTI's mounting height and, given the LiDAR → camera extrinsic
/// (p_cam = R p_lidar + t, 3x4 row-major), `lidar_frame` → `camera_frame`.
pub fn static_transforms(spec: &DriveSpec, lidar_to_cam: Option<[f64; 12]>, stamp: Time) -> anyhow::Result<TFMessage> {
    let mut transforms = vec![TransformStamped {
        header: Header { stamp, frame_id: spec.base_frame.clone() },
        child_frame_id: spec.lidar_frame.clone(),
        transform: Transform { translation: Vector3 { x: 0.0, y: 0.0, z: KITTI_LIDAR_HEIGHT_M }, ..Default::default() },
    }];
    if let Some(m) = lidar_to_cam {
        // the camera's pose in the LiDAR frame: p_lidar = R⁻¹ p_cam - R⁻¹ t
        let r = [m[0], m[1], m[2], m[4], m[5], m[6], m[8], m[9], m[10]];
        let t = [m[3], m[7], m[11]];
        let inv = crate::geometry::mat3_inverse(&r).context("LiDAR → camera rotation is singular")?;
        let rotation = Quaternion::from_rotation(&inv).context("LiDAR → camera extrinsic is not a rotation")?;
        let p = |i: usize| -(inv[3 * i] * t[0] + inv[3 * i + 1] * t[1] + inv[3 * i + 2] * t[2]);
        transforms.push(TransformStamped {
            header: Header { stamp, frame_id: spec.lidar_frame.clone() },
            child_frame_id: spec.camera_frame.clone(),
            transform: Transform { translation: Vector3 { x: p(0), y: p(1), z: p(2) }, rotation },
        });
    }
    Ok(TFMessage { transforms })
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

    let extrinsic = match (&camera, calib) {
        (None, _) => None,
        (Some(_), Some(c)) => match read_extrinsic(c)? {
            Some(m) => Some(m),
            None => {
                tracing::warn!(
                    "{} holds no Tr_velo_to_cam: /tf_static gets KITTI's 2011_09_26 LiDAR → camera extrinsic",
                    c.display()
                );
                Some(Calibration::kitti_like_default().lidar_to_cam_matrix())
            }
        },
        (Some(_), None) => {
            tracing::warn!("no --calib: /tf_static gets KITTI's 2011_09_26 LiDAR → camera extrinsic");
            Some(Calibration::kitti_like_default().lidar_to_cam_matrix())
        }
    };
    let tf = static_transforms(spec, extrinsic, Time::from_nanos(START_NS))?;

    let mut bag = BagWriter::create(out)?;
    let sensor_qos = [OfferedQos::reliable(SENSOR_DEPTH)];
    bag.add_topic_with_qos(TOPIC_TF_STATIC, TFMessage::TYPE_NAME, &[OfferedQos::static_broadcaster()])?;
    bag.add_topic_with_qos(TOPIC_POINTS, PointCloud2::TYPE_NAME, &sensor_qos)?;
    if let Some((_, info)) = &camera {
        bag.add_topic_with_qos(TOPIC_IMAGE, Image::TYPE_NAME, &sensor_qos)?;
        if info.is_some() {
            bag.add_topic_with_qos(TOPIC_CAMERA_INFO, CameraInfo::TYPE_NAME, &sensor_qos)?;
        }
    }
    // once, at the start: a transient-local publisher hands it to late joiners
    bag.write(TOPIC_TF_STATIC, START_NS as u64, &tf)?;
    let mut written = 1;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> DriveSpec {
        DriveSpec {
            frames: 1,
            hz: 10.0,
            base_frame: "base_link".into(),
            lidar_frame: "velodyne".into(),
            camera_frame: "camera".into(),
        }
    }

    /// tf's camera pose in the LiDAR frame maps camera points where KITTI's
    /// calibration does, and base_link is 1.73 m below the LiDAR.
    #[test]
    fn static_transforms_agree_with_the_calibration() {
        let calib = Calibration::kitti_like_default();
        let tf = static_transforms(&spec(), Some(calib.lidar_to_cam_matrix()), Time::from_nanos(7)).unwrap();
        assert_eq!(tf.transforms.len(), 2);
        let base = &tf.transforms[0];
        assert_eq!((base.header.frame_id.as_str(), base.child_frame_id.as_str()), ("base_link", "velodyne"));
        assert_eq!(base.transform.translation, Vector3 { x: 0.0, y: 0.0, z: 1.73 });
        assert_eq!(base.transform.rotation, Quaternion::default());
        let cam = &tf.transforms[1];
        assert_eq!((cam.header.frame_id.as_str(), cam.child_frame_id.as_str()), ("velodyne", "camera"));
        assert_eq!(cam.header.stamp, Time::from_nanos(7));
        let r = cam.transform.rotation.to_rotation();
        let t = cam.transform.translation;
        for p_cam in [[0.0, 0.0, 0.0], [1.0, -2.0, 10.0], [-5.0, 1.5, 30.0]] {
            let via_tf = [0, 1, 2].map(|i| r[3 * i] * p_cam[0] + r[3 * i + 1] * p_cam[1] + r[3 * i + 2] * p_cam[2]);
            let via_tf = [via_tf[0] + t.x, via_tf[1] + t.y, via_tf[2] + t.z];
            let want = calib.cam_to_lidar(p_cam);
            assert!(via_tf.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-4), "{p_cam:?}: {via_tf:?} vs {want:?}");
        }
        // the camera looks along the LiDAR's x axis (optical z = forward)
        let forward = [r[2], r[5], r[8]];
        assert!(forward[0] > 0.99, "{forward:?}");
        assert!(static_transforms(&spec(), Some([0.0; 12]), Time::default()).is_err());
        assert_eq!(static_transforms(&spec(), None, Time::default()).unwrap().transforms.len(), 1);
    }

    #[test]
    fn extrinsic_only_from_full_calib_files() {
        let tmp = tempfile::tempdir().unwrap();
        let full = tmp.path().join("full.txt");
        Calibration::kitti_like_default().write(&full).unwrap();
        let m = read_extrinsic(&full).unwrap().unwrap();
        assert_eq!(m, Calibration::kitti_like_default().lidar_to_cam_matrix());
        let p2_only = tmp.path().join("p2.txt");
        std::fs::write(&p2_only, "721.5 0 609.6 44.9 0 721.5 172.9 0.2 0 0 1 0.003\n").unwrap();
        assert_eq!(read_extrinsic(&p2_only).unwrap(), None);
        let broken = tmp.path().join("broken.txt");
        std::fs::write(&broken, "P2: 1 2 3\nTr_velo_to_cam: 1 2\n").unwrap();
        assert!(read_extrinsic(&broken).is_err());
    }
}
