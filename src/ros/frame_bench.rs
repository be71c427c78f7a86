//! The node's whole frame on one cloud, timed stage by stage, without the
//! transport (`eloss bench-frame`, docs/benchmarks.md "The whole frame"):
//! the `sensor_msgs/PointCloud2` as it arrives from DDS → decode → range
//! filter → pillarize → network → box decode + NMS → Eloss profile → the
//! messages the node publishes (vision_msgs Detection3DArray, our annotated
//! array, RViz markers, the Eloss report). The same calls, in the same order,
//! as the node's cloud worker (`node::cloud_worker`, `node_detect`); only
//! the publishing itself (serialisation into DDS) is left out.

use crate::cloud::pointcloud2::encode_xyzi;
use crate::cloud::Points;
use crate::detect::postprocess::Detection;
use crate::frames::mounting::Mounting;
use crate::perception::{Coverage, FramePipeline};
use crate::ros::convert::decode_cloud;
use crate::ros::detections::{detection_array, eloss_report, marker_array, vision_detections};
use r2r::sensor_msgs::msg::{PointCloud2, PointField};
use r2r::std_msgs::msg::Header;
use std::time::{Duration, Instant};

/// One frame's stages, in the node's order.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FrameTimes {
    pub decode: Duration,
    pub range_filter: Duration,
    pub pillarize: Duration,
    pub network: Duration,
    /// Box decode, score threshold, NMS.
    pub postprocess: Duration,
    /// Entropy profile + anomaly score (zero with the monitor off).
    pub eloss: Duration,
    /// Building every message the node publishes for the frame.
    pub messages: Duration,
    /// From the received message to the last message built.
    pub total: Duration,
}

impl FrameTimes {
    /// `(name, duration)` in the node's order, `total` last.
    pub fn stages(&self) -> [(&'static str, Duration); 8] {
        [
            ("decode", self.decode),
            ("range_filter", self.range_filter),
            ("pillarize", self.pillarize),
            ("network", self.network),
            ("postprocess", self.postprocess),
            ("eloss", self.eloss),
            ("messages", self.messages),
            ("total", self.total),
        ]
    }
}

/// The cloud as a driver would send it: `x y z intensity` float32, one row.
pub fn cloud_message(points: &Points, frame_id: &str) -> PointCloud2 {
    let (fields, point_step, data) = encode_xyzi(points);
    let width = u32::try_from(points.len()).unwrap_or(u32::MAX);
    PointCloud2 {
        header: Header { frame_id: frame_id.to_string(), ..Default::default() },
        height: 1,
        width,
        fields: fields.into_iter().map(|f| PointField { name: f.name, offset: f.offset, datatype: f.datatype, count: f.count }).collect(),
        is_bigendian: false,
        point_step,
        row_step: point_step.saturating_mul(width),
        data,
        is_dense: true,
    }
}

/// The node's settings that shape a frame.
#[derive(Debug, Clone)]
pub struct FrameSettings {
    pub min_range_m: f32,
    pub max_range_m: f32,
    pub score_threshold: f32,
    pub marker_lifetime_s: f64,
    pub mounting: Mounting,
    pub coverage: Coverage,
}

/// Runs `msg` through the node's frame once; the detections in the mounting's
/// base frame and the stage times.
pub fn run_frame(pipe: &mut FramePipeline, msg: &PointCloud2, s: &FrameSettings) -> Result<(Vec<Detection>, FrameTimes), String> {
    let start = Instant::now();
    let (mut points, _) = decode_cloud(msg).map_err(|e| e.to_string())?;
    let decoded = Instant::now();
    points.retain_range(s.min_range_m, s.max_range_m);
    let filtered = Instant::now();
    let result = pipe.process_in(&points, &s.mounting, s.coverage, s.score_threshold).map_err(|e| e.to_string())?;
    let detected = Instant::now();
    let header = Header { stamp: msg.header.stamp.clone(), frame_id: msg.header.frame_id.clone() };
    let names = pipe.class_names();
    let mut array = detection_array(&header, pipe.model_id(), &result.detections, &names);
    if let Some(Ok(r)) = &result.eloss {
        (array.anomaly_score, array.anomaly) = (r.anomaly_score, r.anomaly);
    }
    let built = (
        vision_detections(&array),
        marker_array(&header, &result.detections, &names, s.marker_lifetime_s),
        result.eloss.as_ref().and_then(|r| r.as_ref().ok()).map(|r| eloss_report(&header, pipe.model_id(), r)),
    );
    std::hint::black_box((&array, &built));
    let end = Instant::now();
    let t = result.timings;
    let times = FrameTimes {
        decode: decoded - start,
        range_filter: filtered - decoded,
        pillarize: t.pillarize,
        network: t.network,
        postprocess: t.postprocess,
        // process_in's own total stops before the monitor
        eloss: (detected - filtered).saturating_sub(result.total),
        messages: end - detected,
        total: end - start,
    };
    Ok((result.detections, times))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_gives_the_pipelines_boxes_and_adds_up() {
        let Some(dir) = crate::cloud::test_data::kitti_dir() else { return };
        let points = crate::cloud::kitti_bin::read(dir.join("000008.bin")).unwrap();
        let mut pipe = FramePipeline::load("", tch::Device::Cpu, &Default::default()).unwrap();
        let msg = cloud_message(&points, "velodyne");
        let s = FrameSettings { min_range_m: 0.0, max_range_m: 200.0, score_threshold: 0.3, marker_lifetime_s: 0.5, mounting: Mounting::identity(), coverage: Coverage::Front };
        let (dets, t) = run_frame(&mut pipe, &msg, &s).unwrap();
        let direct = pipe.process_in(&points, &Mounting::identity(), Coverage::Front, 0.3).unwrap();
        assert_eq!(dets.len(), direct.detections.len());
        for (a, b) in dets.iter().zip(&direct.detections) {
            assert_eq!((a.class, a.score), (b.class, b.score));
        }
        let parts = t.decode + t.range_filter + t.pillarize + t.network + t.postprocess + t.eloss + t.messages;
        assert!(parts <= t.total && t.network > Duration::ZERO && t.eloss > Duration::ZERO, "{t:?}");
        pipe.set_monitor_enabled(false);
        let (_, off) = run_frame(&mut pipe, &msg, &s).unwrap();
        assert!(off.eloss < t.eloss, "{off:?} vs {t:?}");
    }
}
