//! Frames for the node: `/tf` and `/tf_static` (tf2_msgs/TFMessage) fill a
//! [`TransformBuffer`]; the cloud worker asks it for the LiDAR mounting
//! (detector.frame ← cloud frame) and GDC for the camera extrinsic (camera
//! optical frame ← detections' frame). Where tf has no answer, the explicit
//! fallback parameters (`detector.sensor_pose`, `camera.lidar_to_camera`)
//! are used with a warning in the log and the frames diagnostics; where no
//! fallback applies, the frame is not processed (detections) or not cropped
//! (GDC) and the frames diagnostics show an ERROR, never a silent wrong frame.

use super::{lock, Shared};
use crate::stats::TransformSource;
use futures::StreamExt;
use nalgebra::{Isometry3, Translation3, UnitQuaternion};
use crate::frames::TransformBuffer;
use r2r::geometry_msgs::msg::TransformStamped;
use r2r::tf2_msgs::msg::TFMessage;
use r2r::QosProfile;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const TOPIC_TF: &str = "/tf";
pub const TOPIC_TF_STATIC: &str = "/tf_static";
/// Transforms taken from one TFMessage; the rest are counted as rejected.
pub const MAX_TRANSFORMS_PER_MESSAGE: usize = 1000;

/// Subscribes to `/tf` and `/tf_static` (tf2's QoS: reliable; static
/// transient-local, so a node started after the static broadcaster still
/// gets them).
pub(super) fn spawn(node: &mut r2r::Node, shared: &Arc<Shared>) -> anyhow::Result<()> {
    let dynamic_qos = QosProfile::default().reliable().keep_last(100);
    let static_qos = QosProfile::default().reliable().transient_local().keep_last(100);
    for (topic, qos, is_static) in [(TOPIC_TF, dynamic_qos, false), (TOPIC_TF_STATIC, static_qos, true)] {
        let mut stream = node.subscribe::<TFMessage>(topic, qos)?;
        let sh = shared.clone();
        let name = if is_static { "tf_static subscription" } else { "tf subscription" };
        super::spawn_watched(shared, name, async move {
            while let Some(msg) = stream.next().await {
                ingest(&sh, &msg, is_static);
            }
        });
    }
    Ok(())
}

/// A geometry_msgs/Transform as an isometry; non-finite values and
/// quaternions far from unit norm are errors (near-unit ones are normalised).
pub fn isometry(t: &r2r::geometry_msgs::msg::Transform) -> Result<Isometry3<f64>, crate::frames::FrameError> {
    let (v, q) = (&t.translation, &t.rotation);
    crate::frames::isometry_from_parts([v.x, v.y, v.z], [q.x, q.y, q.z, q.w])
}

/// Puts at most [`MAX_TRANSFORMS_PER_MESSAGE`] of one message's transforms
/// into `buffer`; returns how many were rejected (the rest beyond the cap,
/// and invalid ones) and the last rejection's reason.
fn ingest_transforms(buffer: &mut TransformBuffer, transforms: &[TransformStamped], is_static: bool) -> (u64, Option<String>) {
    let mut rejected = transforms.len().saturating_sub(MAX_TRANSFORMS_PER_MESSAGE) as u64;
    let mut last_error = None;
    for t in transforms.iter().take(MAX_TRANSFORMS_PER_MESSAGE) {
        let stamp_ns = super::convert::stamp_ns(&t.header.stamp);
        let set = isometry(&t.transform).and_then(|iso| buffer.set_transform(&t.header.frame_id, &t.child_frame_id, stamp_ns, iso, is_static));
        if let Err(e) = set {
            rejected += 1;
            last_error = Some(e.to_string());
        }
    }
    (rejected, last_error)
}

fn ingest(sh: &Shared, msg: &TFMessage, is_static: bool) {
    let (rejected, last_error) = ingest_transforms(&mut lock(&sh.tf), &msg.transforms, is_static);
    let mut stats = lock(&sh.stats);
    let f = &mut stats.frames;
    if is_static {
        f.tf_static_received += 1;
    } else {
        f.tf_received += 1;
    }
    f.tf_rejected += rejected;
    drop(stats);
    if let Some(e) = last_error {
        if let Some(n) = sh.log_limit.allow("tf rejected") {
            tracing::warn!("rejected transforms on {}: {e}{}", if is_static { TOPIC_TF_STATIC } else { TOPIC_TF }, crate::log_limit::suppressed_note(n));
        }
    }
}

/// `target ← source` at `stamp_ns`, waiting up to `timeout` for tf to catch
/// up with the stamp (dynamic transforms arrive a little after the data),
/// then the latest transform; the error of the stamped lookup otherwise.
pub(super) fn lookup(sh: &Shared, target: &str, source: &str, stamp_ns: i64, timeout: Duration) -> Result<Isometry3<f64>, String> {
    if target == source {
        return Ok(Isometry3::identity());
    }
    let end = Instant::now() + timeout;
    loop {
        let result = lock(&sh.tf).lookup(target, source, stamp_ns);
        match result {
            Ok(iso) => return Ok(iso),
            Err(e) if Instant::now() >= end || sh.stop.load(std::sync::atomic::Ordering::Relaxed) => {
                return lock(&sh.tf).lookup(target, source, 0).map_err(|_| format!("no transform from '{source}' to '{target}': {e}"));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// An isometry as the 3x4 row-major [R|t] the camera code takes.
pub fn matrix_3x4(iso: &Isometry3<f64>) -> [f64; 12] {
    let m = iso.to_homogeneous();
    let mut out = [0.0; 12];
    for r in 0..3 {
        for c in 0..4 {
            out[r * 4 + c] = m[(r, c)];
        }
    }
    out
}

/// [x, y, z, roll, pitch, yaw] (rotation applied as yaw · pitch · roll, as
/// tf2 and URDF do) as an isometry.
pub fn pose_isometry(p: [f64; 6]) -> Isometry3<f64> {
    Isometry3::from_parts(Translation3::new(p[0], p[1], p[2]), UnitQuaternion::from_euler_angles(p[3], p[4], p[5]))
}

/// Where the LiDAR sits in `detector.frame`: tf, else `detector.sensor_pose`.
pub(super) fn mounting(sh: &Shared, p: &super::NodeParams, cloud_frame: &str, stamp_ns: i64) -> Result<Isometry3<f64>, String> {
    let timeout = Duration::from_secs_f64(p.detector.tf_timeout_s.clamp(0.0, 1.0));
    let found = lookup(sh, &p.detector.frame, cloud_frame, stamp_ns, timeout);
    let (result, source) = match (found, p.detector.sensor_pose()) {
        (Ok(iso), _) => (Ok(iso), TransformSource::Tf),
        (Err(e), Ok(Some(pose))) => {
            if let Some(n) = sh.log_limit.allow("mounting fallback") {
                tracing::warn!("{e}; using detector.sensor_pose {pose:?}{}", crate::log_limit::suppressed_note(n));
            }
            (Ok(pose_isometry(pose)), TransformSource::Parameter { name: "detector.sensor_pose", why: e })
        }
        (Err(e), _) => (Err(format!("{e} (and detector.sensor_pose is not set): cloud not processed")), TransformSource::Unused),
    };
    let mut stats = lock(&sh.stats);
    match &result {
        Ok(_) => stats.frames.mounting = source,
        Err(e) => stats.frames.record_error(e),
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transforms_convert_to_isometries_and_matrices() {
        let mut t = r2r::geometry_msgs::msg::Transform::default();
        t.translation.x = 1.0;
        t.translation.z = 2.0;
        // 90 degrees about z
        let h = std::f64::consts::FRAC_1_SQRT_2;
        (t.rotation.z, t.rotation.w) = (h, h);
        let iso = isometry(&t).unwrap();
        let p = iso * nalgebra::Point3::new(1.0, 0.0, 0.0);
        assert!((p - nalgebra::Point3::new(1.0, 1.0, 2.0)).norm() < 1e-12);
        let m = matrix_3x4(&iso);
        assert!((m[1] + 1.0).abs() < 1e-12 && (m[3] - 1.0).abs() < 1e-12 && (m[11] - 2.0).abs() < 1e-12);
        let pose = pose_isometry([1.0, 0.0, 2.0, 0.0, 0.0, std::f64::consts::FRAC_PI_2]);
        assert!((pose.to_homogeneous() - iso.to_homogeneous()).norm() < 1e-12);
    }
    #[test]
    fn one_message_adds_at_most_the_cap_and_counts_the_rest_rejected() {
        let transform = |i: usize| {
            let mut t = TransformStamped::default();
            t.header.frame_id = "base_link".into();
            t.child_frame_id = format!("sensor_{i}");
            t.transform.rotation.w = 1.0;
            t
        };
        let mut transforms: Vec<TransformStamped> = (0..MAX_TRANSFORMS_PER_MESSAGE + 5).map(transform).collect();
        transforms[0].transform.rotation.w = f64::NAN;
        let mut buffer = TransformBuffer::default();
        let (rejected, last_error) = ingest_transforms(&mut buffer, &transforms, true);
        assert_eq!(rejected, 5 + 1, "5 beyond the cap, 1 invalid");
        assert!(last_error.is_some());
        let known = |i: usize| buffer.parent_of(&format!("sensor_{i}")).is_some();
        assert!(known(1) && known(MAX_TRANSFORMS_PER_MESSAGE - 1));
        assert!(!known(0) && !known(MAX_TRANSFORMS_PER_MESSAGE), "the invalid one and those beyond the cap are not stored");
    }
}
