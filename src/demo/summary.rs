//! What the demo's watcher (`scripts/demo_watch.py`, an rclpy peer) recorded
//! while the story's bag played through the node, matched to the story's
//! frames by stamp, and the summary a user reads: frames in / processed /
//! dropped, detections per frame, latency per stage, the alarm intervals
//! against the fault's true frames, GDC labels per class.

use super::story::Story;
use anyhow::Context as _;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// One published detection (annotated_detections), in the cloud's frame.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RecordedDetection {
    pub id: u32,
    pub class_name: String,
    pub score: f64,
    pub center: [f64; 3],
    pub size: [f64; 3],
    pub yaw: f64,
    pub has_gdc: bool,
    pub gdc_label: String,
    /// Probability of the GDC label (0 when unknown or unlabelled).
    #[serde(default)]
    pub gdc_probability: f64,
    /// The open-set test of the GDC answer: unknown, the nearest bank class,
    /// the crop's distance to it (None without calibration data) and
    /// whether that distance exceeds the class's threshold.
    #[serde(default)]
    pub gdc_unknown: bool,
    #[serde(default)]
    pub gdc_nearest_class: String,
    #[serde(default)]
    pub gdc_nearest_distance: Option<f64>,
    #[serde(default)]
    pub gdc_beyond_threshold: bool,
}

impl RecordedDetection {
    pub fn to_box(&self) -> crate::geometry::Box3D {
        crate::geometry::Box3D { center: self.center, size: self.size, yaw: self.yaw }
    }
}

/// The node's Eloss report of one frame.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RecordedEloss {
    pub score: f64,
    pub threshold: f64,
    pub eloss: f64,
    pub deviation_factor: f64,
    pub anomaly: bool,
    pub anomalous_frame: bool,
    #[serde(default)]
    pub anomaly_type: String,
}

/// Everything the node published for one cloud stamp.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RecordedFrame {
    pub stamp_ns: i64,
    pub eloss: Option<RecordedEloss>,
    pub detections: Option<Vec<RecordedDetection>>,
}

/// The one `~/relabel` call by detection id.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RecordedRelabel {
    pub stamp_ns: i64,
    pub detection_ids: Vec<u32>,
    pub success: bool,
    pub error: String,
    /// Per label: object id, valid, error, label, (class, probability) pairs.
    pub labels: Vec<serde_json::Value>,
    pub call_ms: f64,
}

/// The watcher's JSON file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Record {
    pub frames: Vec<RecordedFrame>,
    /// The node's last diagnostics: status name → key → value.
    pub diagnostics: BTreeMap<String, BTreeMap<String, String>>,
    pub relabel: Option<RecordedRelabel>,
    pub replay_s: f64,
}

impl Record {
    pub fn load(path: &Path) -> anyhow::Result<Record> {
        let text = crate::untrusted_file::read_text(path, 256 << 20).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{}: not a demo record", path.display()))
    }
}

/// A stretch of frames `[start, end)` (`end` = None: still raised at the end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    pub start: usize,
    pub end: Option<usize>,
}

/// The record matched to the story.
#[derive(Debug, Clone)]
pub struct Matched {
    /// Story frame index → what the node published for it.
    pub frames: BTreeMap<usize, RecordedFrame>,
    /// Records whose stamp is no story frame.
    pub unmatched: usize,
}

pub fn match_frames(story: &Story, record: &Record) -> Matched {
    let mut frames = BTreeMap::new();
    let mut unmatched = 0;
    for f in &record.frames {
        match story.frame_of_stamp(f.stamp_ns) {
            Some(i) => {
                frames.insert(i, f.clone());
            }
            None => unmatched += 1,
        }
    }
    Matched { frames, unmatched }
}

/// Alarm intervals over the frames that have an Eloss report: raised at the
/// first report with `anomaly`, cleared at the first later report without.
pub fn alarm_intervals(m: &Matched) -> Vec<Interval> {
    let mut out = Vec::new();
    let mut open: Option<usize> = None;
    for (&i, f) in &m.frames {
        let Some(e) = &f.eloss else { continue };
        match (open, e.anomaly) {
            (None, true) => open = Some(i),
            (Some(s), false) => {
                out.push(Interval { start: s, end: Some(i) });
                open = None;
            }
            _ => {}
        }
    }
    if let Some(s) = open {
        out.push(Interval { start: s, end: None });
    }
    out
}

/// GDC answers of every published detection: label → count (`unknown`
/// included; `(none)` for detections without an answer).
pub fn gdc_counts<'a>(frames: impl Iterator<Item = &'a RecordedFrame>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for d in frames.filter_map(|f| f.detections.as_ref()).flatten() {
        let key = if d.has_gdc { d.gdc_label.clone() } else { "(none)".to_string() };
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

/// GDC answers on simulated frames against the story's truth: detections
/// with an answer that overlap a true object (BEV IoU ≥ 0.3), by answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GdcAgainstTruth {
    pub right: usize,
    pub wrong: usize,
    pub unknown: usize,
}

pub fn gdc_against_truth(story: &Story, m: &Matched) -> GdcAgainstTruth {
    let mut g = GdcAgainstTruth::default();
    for (&i, f) in &m.frames {
        let truth = &story.frames[i].objects;
        for d in f.detections.iter().flatten().filter(|d| d.has_gdc) {
            let b = d.to_box();
            let best = truth.iter().map(|t| (crate::detect::iou::iou_bev(&b, &t.to_box()), t)).max_by(|a, b| a.0.total_cmp(&b.0));
            let Some((iou, t)) = best else { continue };
            if iou < 0.3 {
                continue;
            }
            match d.gdc_label.as_str() {
                "unknown" => g.unknown += 1,
                l if l == t.class => g.right += 1,
                _ => g.wrong += 1,
            }
        }
    }
    g
}

fn diag<'a>(r: &'a Record, status: &str, key: &str) -> Option<&'a str> {
    r.diagnostics.iter().find(|(n, _)| n.ends_with(status)).and_then(|(_, kv)| kv.get(key)).map(String::as_str)
}

/// The summary text.
pub fn summary(story: &Story, record: &Record) -> String {
    let m = match_frames(story, record);
    let mut s = String::new();
    let n = story.frames.len();
    let processed = m.frames.values().filter(|f| f.eloss.is_some() || f.detections.is_some()).count();
    let _ = writeln!(s, "== demo summary ==");
    let _ = writeln!(s, "drive: {n} frames at {} Hz ({} real KITTI 000008, {} simulated), replayed in {:.1} s", story.config.hz, story.config.kitti_frames, n - story.config.kitti_frames, record.replay_s);
    let _ = writeln!(s, "anomaly: {}", story.anomaly);
    let _ = writeln!(s, "         true frames {}..{} (t = {:.1}..{:.1} s)", story.anomaly_start, story.anomaly_end - 1, story.anomaly_start as f64 / story.config.hz, story.anomaly_end as f64 / story.config.hz);
    let input = |k: &str| diag(record, "point cloud input", k).unwrap_or("?").to_string();
    let _ = writeln!(
        s,
        "frames: {n} in the bag; node: received {}, processed {}, dropped {} (a newer cloud replaced it), malformed {}; {processed} frames published",
        input("frames_received"),
        input("frames_processed"),
        input("frames_dropped"),
        input("frames_malformed")
    );
    let dets: Vec<usize> = m.frames.values().filter_map(|f| f.detections.as_ref().map(Vec::len)).collect();
    if !dets.is_empty() {
        let mean = dets.iter().sum::<usize>() as f64 / dets.len() as f64;
        let _ = writeln!(s, "detections per frame: mean {mean:.1}, min {}, max {}", dets.iter().min().unwrap_or(&0), dets.iter().max().unwrap_or(&0));
        for (name, lo, hi) in [("real KITTI", 0, story.config.kitti_frames), ("sim normal", story.config.kitti_frames, story.anomaly_start), ("sim fault", story.anomaly_start, story.anomaly_end), ("sim clear", story.anomaly_end, n)] {
            let d: Vec<usize> = m.frames.range(lo..hi).filter_map(|(_, f)| f.detections.as_ref().map(Vec::len)).collect();
            if !d.is_empty() {
                let _ = writeln!(s, "  {name:<10} {:>3} frames, {:.1} boxes/frame", d.len(), d.iter().sum::<usize>() as f64 / d.len() as f64);
            }
        }
    }
    let mut stages: Vec<(String, String)> = record
        .diagnostics
        .iter()
        .filter(|(n, _)| n.ends_with("detector"))
        .flat_map(|(_, kv)| kv.iter().filter(|(k, _)| k.ends_with("_mean_ms")).map(|(k, v)| (k.trim_end_matches("_mean_ms").to_string(), v.clone())))
        .collect();
    stages.sort_by_key(|(k, _)| k == "total");
    if !stages.is_empty() {
        let _ = writeln!(s, "latency per stage (mean ms): {}", stages.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "));
    }
    let scores: Vec<(usize, &super::summary::RecordedEloss)> = m.frames.iter().filter_map(|(&i, f)| f.eloss.as_ref().map(|e| (i, e))).collect();
    if let Some((_, e)) = scores.first() {
        let _ = writeln!(s, "Eloss monitor: threshold {:.2} on the anomaly score", e.threshold);
        for (name, lo, hi) in [("real KITTI", 0, story.config.kitti_frames), ("sim normal", story.config.kitti_frames, story.anomaly_start), ("sim fault", story.anomaly_start, story.anomaly_end), ("sim clear", story.anomaly_end, n)] {
            let v: Vec<&RecordedEloss> = scores.iter().filter(|(i, _)| (lo..hi).contains(i)).map(|(_, e)| *e).collect();
            if !v.is_empty() {
                let med = |f: fn(&RecordedEloss) -> f64| {
                    let mut x: Vec<f64> = v.iter().map(|e| f(e)).collect();
                    x.sort_by(f64::total_cmp);
                    x[x.len() / 2]
                };
                let over = v.iter().filter(|e| e.anomalous_frame).count();
                let _ = writeln!(s, "  {name:<10} median score {:>7.2}, Eloss factor {:>6.2}x, {over}/{} frames above the threshold", med(|e| e.score), med(|e| e.deviation_factor), v.len());
            }
        }
    }
    let alarms = alarm_intervals(&m);
    if alarms.is_empty() {
        let _ = writeln!(s, "ALARM: never raised");
    }
    for a in &alarms {
        let t = |i: usize| i as f64 / story.config.hz;
        match a.end {
            Some(e) => {
                let _ = writeln!(s, "ALARM raised at frame {} (t = {:.1} s), cleared at frame {e} (t = {:.1} s)  [fault: frames {}..{}]", a.start, t(a.start), t(e), story.anomaly_start, story.anomaly_end - 1);
            }
            None => {
                let _ = writeln!(s, "ALARM raised at frame {} (t = {:.1} s), still raised at the end  [fault: frames {}..{}]", a.start, t(a.start), story.anomaly_start, story.anomaly_end - 1);
            }
        }
    }
    for (name, lo, hi) in [("real KITTI", 0, story.config.kitti_frames), ("simulated", story.config.kitti_frames, n)] {
        let counts = gdc_counts(m.frames.range(lo..hi).map(|(_, f)| f));
        if !counts.is_empty() {
            let _ = writeln!(s, "GDC labels ({name}): {}", counts.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "));
        }
    }
    let g = gdc_against_truth(story, &m);
    let answered = g.right + g.wrong + g.unknown;
    if answered > 0 {
        let pct = |n: usize| 100.0 * n as f64 / answered as f64;
        let _ = writeln!(
            s,
            "GDC on simulated objects (detections on a true object, BEV IoU >= 0.3): {answered}, right {} ({:.0} %), wrong {} ({:.0} %), unknown {} ({:.0} %)",
            g.right,
            pct(g.right),
            g.wrong,
            pct(g.wrong),
            g.unknown,
            pct(g.unknown)
        );
    }
    let skipped = diag(record, "detector", "gdc_skipped").unwrap_or("0");
    let _ = writeln!(s, "  ((none) = published without a GDC answer: no crop (outside the image, smaller than gdc.min_crop_px), or a frame left unlabelled; frames left unlabelled: {skipped})");
    if skipped != "0" {
        let reason = diag(record, "detector", "gdc_last_skip").unwrap_or("");
        let _ = writeln!(s, "  last reason: {}", reason.chars().take(160).collect::<String>());
    }
    if let Some(r) = &record.relabel {
        let frame = story.frame_of_stamp(r.stamp_ns).map_or("?".to_string(), |i| i.to_string());
        let _ = writeln!(s, "~/relabel by id (frame {frame}, ids {:?}): success {} in {:.0} ms{}", r.detection_ids, r.success, r.call_ms, if r.error.is_empty() { String::new() } else { format!(", error: {}", r.error) });
        for l in &r.labels {
            let probs = l["probabilities"].as_array().map(|a| {
                a.iter().take(3).map(|p| format!("{} {:.2}", p[0].as_str().unwrap_or("?"), p[1].as_f64().unwrap_or(f64::NAN))).collect::<Vec<_>>().join(", ")
            });
            let _ = writeln!(s, "  id {}: {} ({})", l["object_id"], l["label"].as_str().unwrap_or("?"), probs.unwrap_or_default());
        }
    }
    if m.unmatched > 0 {
        let _ = writeln!(s, "({} published frames had stamps outside the story)", m.unmatched);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(stamp_ns: i64, anomaly: Option<bool>) -> RecordedFrame {
        RecordedFrame {
            stamp_ns,
            eloss: anomaly.map(|a| RecordedEloss { score: 1.0, threshold: 2.0, eloss: 0.0, deviation_factor: 1.0, anomaly: a, anomalous_frame: a, anomaly_type: String::new() }),
            detections: None,
        }
    }

    #[test]
    fn alarm_intervals_open_on_the_first_alarm_and_close_on_the_first_clear_report() {
        let m = |v: Vec<(usize, Option<bool>)>| Matched { frames: v.into_iter().map(|(i, a)| (i, frame(i as i64, a))).collect(), unmatched: 0 };
        let a = alarm_intervals(&m(vec![(0, Some(false)), (3, Some(true)), (4, None), (5, Some(true)), (9, Some(false)), (12, Some(true))]));
        assert_eq!(a, vec![Interval { start: 3, end: Some(9) }, Interval { start: 12, end: None }]);
        assert!(alarm_intervals(&m(vec![(0, Some(false)), (1, None)])).is_empty());
    }

    #[test]
    fn gdc_answers_are_scored_against_the_true_object_under_the_box() {
        use crate::demo::story::{StoryConfig, StoryFrame, TruthObject};
        let truth = |class: &str, x: f64| TruthObject { class: class.into(), center: [x, 0.0, -1.0], size: [4.0, 1.8, 1.5], yaw: 0.0 };
        let det = |x: f64, label: &str| RecordedDetection {
            id: 0,
            class_name: "Car".into(),
            score: 0.9,
            center: [x + 0.2, 0.1, -1.0],
            size: [4.0, 1.8, 1.5],
            yaw: 0.05,
            has_gdc: !label.is_empty(),
            gdc_label: label.into(),
            gdc_probability: 0.9,
            gdc_unknown: label == "unknown",
            gdc_nearest_class: "Car".into(),
            gdc_nearest_distance: Some(10.0),
            gdc_beyond_threshold: label == "unknown",
        };
        let story = Story {
            format: crate::demo::story::STORY_FORMAT,
            config: StoryConfig::small(),
            anomaly: String::new(),
            anomaly_start: 0,
            anomaly_end: 0,
            frames: vec![StoryFrame { index: 0, stamp_ns: 7, source: "sim".into(), anomalous: false, objects: vec![truth("Car", 10.0), truth("Van", 20.0), truth("Truck", 30.0)] }],
            shown: vec![],
            bag: String::new(),
            lidar_to_camera: [0.0; 12],
            p2_kitti: [0.0; 12],
            p2_sim: [0.0; 12],
        };
        let frame = RecordedFrame {
            stamp_ns: 7,
            eloss: None,
            // right, wrong, unknown, no answer, on no object
            detections: Some(vec![det(10.0, "Car"), det(20.0, "Car"), det(30.0, "unknown"), det(10.0, ""), det(50.0, "Car")]),
        };
        let m = Matched { frames: [(0, frame)].into_iter().collect(), unmatched: 0 };
        assert_eq!(gdc_against_truth(&story, &m), GdcAgainstTruth { right: 1, wrong: 1, unknown: 1 });
    }
}
