//! The cloud worker's per-frame work after decoding: the cloud into the
//! model's frame (the LiDAR mounting from tf, see node_frames.rs), detection
//! (front or 360 degrees), and everything published from the one forward
//! pass: the standard detections, our annotated detections (with GDC labels
//! under `gdc.auto_relabel`), Autoware objects on request, RViz markers and
//! the Eloss report; and the detector and Eloss statistics.

use crate::ros::detections::{autoware_objects, detection_array, eloss_report, marker_array, vision_detections};
use super::{convert, frames, gdc, lock, Outputs, Shared};
use crate::cloud::Points;
use crate::eloss::on_alarm;
use crate::frames::Mounting;
use crate::gdc::frame_history::FrameRecord;
use crate::geometry::Box3D;
use crate::perception::{Coverage, FramePipeline};
use crate::ros::params::NodeParams;
use std::time::Instant;

/// The frame detections are published in, and how the cloud gets into the
/// model's frame from the cloud's own; `Err` = this cloud cannot be placed
/// (logged and counted as a frame error by the caller's diagnostics).
fn placement(sh: &Shared, pipe: &FramePipeline, p: &NodeParams, header: &r2r::std_msgs::msg::Header) -> Result<(String, Mounting), String> {
    let (frame, mounting) = if p.detector.frame.is_empty() {
        // the cloud's own frame is the model's (a KITTI-mounted, x-forward LiDAR)
        (header.frame_id.clone(), Ok(Mounting::identity()))
    } else {
        let base_from_sensor = frames::mounting(sh, p, &header.frame_id, convert::stamp_ns(&header.stamp))?;
        (p.detector.frame.clone(), Mounting::new(base_from_sensor, p.detector.ground_z_m, pipe.trained_sensor_height_m()))
    };
    // the intensity scale is applied in the mounting's one pass over the points
    let mounting = mounting.and_then(|m| m.with_intensity_scale(p.cloud.intensity_scale as f32)).map_err(|e| {
        let e = format!("LiDAR mounting of '{}' in '{frame}': {e}", crate::log_limit::printable(&header.frame_id));
        lock(&sh.stats).frames.record_error(&e);
        e
    })?;
    Ok((frame, mounting))
}

/// Detects and publishes; the frame's boxes (index = detection id) enter the
/// history before the detections are published, so a client that saw them
/// can relabel them at once.
pub(super) fn detect_and_publish(sh: &Shared, pipe: &mut FramePipeline, p: &NodeParams, header: &r2r::std_msgs::msg::Header, points: &Points, out: &Outputs) {
    let t = Instant::now();
    let (frame, mounting) = match placement(sh, pipe, p, header) {
        Ok(x) => x,
        Err(e) => {
            if let Some(n) = sh.log_limit.allow("cloud frame") {
                tracing::error!("{e}{}", crate::log_limit::suppressed_note(n));
            }
            lock(&sh.stats).detector.failures += 1;
            return;
        }
    };
    lock(&sh.stats).frames.output_frame = frame.clone();
    let coverage = if p.detector.coverage == "full" { Coverage::Full } else { Coverage::Front };
    pipe.set_monitor_enabled(p.eloss.enabled);
    let mut result = match pipe.process_in(points, &mounting, coverage, p.detector.score_threshold as f32) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("detector failed on a cloud of {} points: {e}", points.len());
            let mut stats = lock(&sh.stats);
            stats.detector.failures += 1;
            stats.detector.last_error = Some(e.to_string());
            return;
        }
    };
    let header = r2r::std_msgs::msg::Header { stamp: header.stamp.clone(), frame_id: frame };
    // the alarm's context travels with the boxes; eloss.on_alarm decides what
    // happens to them (parameters are validated on set, so this cannot fail
    // but for a race with a refused set: then the boxes are published as is)
    let (score, alarm) = match &result.eloss {
        Some(Ok(r)) => (r.anomaly_score, r.anomaly),
        _ => (f64::NAN, false),
    };
    let policy = p.eloss.on_alarm().unwrap_or_default();
    let action = on_alarm::apply(policy, alarm, p.detector.score_threshold as f32, &mut result.detections);
    let names = pipe.class_names();
    let boxes: Vec<Box3D> = result.detections.iter().map(|d| d.bbox).collect();
    let stamp_ns = convert::stamp_ns(&header.stamp);
    let mut array = detection_array(&header, pipe.model_id(), &result.detections, &names);
    (array.anomaly_score, array.anomaly, array.on_alarm, array.score_factor) = (score, alarm, action.action.to_string(), action.score_factor);
    if p.gdc.auto_relabel {
        gdc::auto_relabel(sh, p, stamp_ns, &header.frame_id, &boxes, &mut array);
    }
    {
        let mut history = lock(&sh.history);
        history.set_capacity(usize::try_from(p.gdc.history_frames).unwrap_or(1));
        history.push_frame(FrameRecord { stamp_ns, frame_id: header.frame_id.clone(), boxes });
    }
    let published = [
        ("detections", out.detections.publish(&vision_detections(&array))),
        ("annotated detections", out.annotated.publish(&array)),
        ("markers", out.markers.publish(&marker_array(&header, &result.detections, &names, p.detector.marker_lifetime_s))),
    ];
    for (what, r) in published {
        if let Err(e) = r {
            tracing::warn!("publishing {what} failed: {e}");
        }
    }
    if let Some(autoware) = &out.autoware {
        if let Err(e) = autoware.publish(&autoware_objects(&array)) {
            tracing::warn!("publishing Autoware objects failed: {e}");
        }
    }
    if let Some(Ok(report)) = &result.eloss {
        if let Err(e) = out.eloss.publish(&eloss_report(&header, pipe.model_id(), report)) {
            tracing::warn!("publishing the Eloss report failed: {e}");
        }
    }
    let mut stats = lock(&sh.stats);
    let s = &mut stats.eloss;
    s.disabled = result.eloss.is_none();
    match &result.eloss {
        None => s.alarm = false,
        Some(Ok(r)) => {
            s.frames += 1;
            if r.anomaly && !s.alarm {
                s.alarms_raised += 1;
                tracing::warn!(score = r.anomaly_score, threshold = r.threshold, kind = %r.anomaly_type, "Eloss anomaly alarm raised");
            }
            (s.last_eloss, s.last_score, s.threshold, s.alarm) = (r.eloss, r.anomaly_score, r.threshold, r.anomaly);
            s.alarm_type = r.anomaly_type.clone();
            s.on_alarm = policy.name();
            if alarm && action.action != "publish" {
                s.frames_acted_on += 1;
                s.boxes_withheld += action.dropped as u64;
            }
            s.compute.record(r.compute_time);
        }
        Some(Err(e)) => {
            tracing::warn!("Eloss failed: {e}");
            s.failures += 1;
            s.last_error = Some(e.clone());
        }
    }
    let d = &mut stats.detector;
    d.frames += 1;
    d.last_detections = result.detections.len() as u64;
    d.pillarize.record(result.timings.pillarize);
    d.network.record(result.timings.network);
    d.postprocess.record(result.timings.postprocess);
    d.total.record(t.elapsed());
}
